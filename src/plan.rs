//! `platform-operator plan`: what the operator would do with a set of manifests, offline, like
//! `terraform plan`: startup waves, shutdown order, the critical chain, or the errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::graph::{Graph, NodeKey};
use crate::manifest::{ManifestError, Stack, check_documents, read_documents};
use crate::stack::{build_graph, effective_settings, key_of, membership};

/// The outcome of planning a set of manifests.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub platforms: usize,
    pub groups: Vec<GroupPlan>,
    /// Startup waves; each starts in parallel once the previous wave is Ready.
    pub waves: Vec<Vec<String>>,
    /// Dependents first.
    pub shutdown_order: Vec<String>,
    pub critical_chain: CriticalChain,
    /// Manifest problems: file, document, field and what is wrong.
    pub manifest_errors: Vec<ManifestProblem>,
    /// Dependency graph problems (cycles, missing platforms, group conflicts).
    pub graph_errors: Vec<String>,
    /// Platforms that cannot start, with why.
    pub blocked: BTreeMap<String, String>,
}

/// One group's members and their waves.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupPlan {
    pub name: String,
    pub members: Vec<String>,
    pub waves: Vec<Vec<String>>,
    pub max_concurrent_starts: u32,
}

/// The longest chain of startup timeouts: how long the stack can take to come up in the worst
/// case that is still a success.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CriticalChain {
    pub chain: Vec<String>,
    pub worst_case_seconds: u64,
}

/// A manifest problem in machine-readable form.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestProblem {
    pub file: String,
    pub document: usize,
    pub object: String,
    pub message: String,
    pub fields: Vec<crate::schema::FieldError>,
}

impl From<&ManifestError> for ManifestProblem {
    fn from(error: &ManifestError) -> Self {
        Self {
            file: error.origin.file.display().to_string(),
            document: error.origin.index,
            object: error.what.clone(),
            message: error.problem.clone(),
            fields: error.causes.clone(),
        }
    }
}

impl Plan {
    /// True when nothing is wrong: every manifest is valid and every platform can start.
    pub fn is_clean(&self) -> bool {
        self.manifest_errors.is_empty() && self.graph_errors.is_empty() && self.blocked.is_empty()
    }
}

/// Reads, checks and plans the manifests under `paths`.
pub fn plan_files(paths: &[PathBuf], default_namespace: &str) -> Plan {
    let (documents, mut read_errors) = read_documents(paths);
    let mut stack = check_documents(documents, default_namespace);
    read_errors.append(&mut stack.errors);
    stack.errors = read_errors;
    plan_stack(&stack)
}

/// Plans an already checked stack.
pub fn plan_stack(stack: &Stack) -> Plan {
    let platforms: Vec<_> = stack.platforms.iter().map(|(_, p)| p.clone()).collect();
    let groups: Vec<_> = stack.groups.iter().map(|(_, g)| g.clone()).collect();
    let graph = build_graph(&platforms, &groups);
    let members = membership(&platforms, &groups);
    let namespaces: std::collections::BTreeSet<&str> = platforms
        .iter()
        .filter_map(|p| p.metadata.namespace.as_deref())
        .collect();
    let show = |key: &NodeKey| -> String {
        if namespaces.len() <= 1 {
            key.name.clone()
        } else {
            key.to_string()
        }
    };

    let mut graph_errors: Vec<String> = graph.errors().iter().map(ToString::to_string).collect();
    for (platform, claimants) in &members.conflicts {
        let names: Vec<String> = claimants.iter().map(&show).collect();
        graph_errors.push(format!(
            "platform {} is selected by several groups: {}",
            show(platform),
            names.join(", ")
        ));
    }
    for (group, reason) in &members.invalid_selectors {
        graph_errors.push(format!(
            "group {} has an invalid selector: {reason}",
            show(group)
        ));
    }

    let defaults_of = |key: &NodeKey| {
        members
            .group_of
            .get(key)
            .and_then(|g| groups.iter().find(|group| key_of(*group) == *g))
            .and_then(|group| group.spec.defaults.as_ref())
    };
    let timeouts: BTreeMap<NodeKey, Duration> = platforms
        .iter()
        .map(|p| {
            let key = key_of(p);
            let seconds = effective_settings(p, defaults_of(&key)).startup_timeout_seconds;
            (key, Duration::from_secs(u64::from(seconds)))
        })
        .collect();
    let critical = graph.critical_path(|key| timeouts.get(key).copied().unwrap_or_default());

    let group_plans = groups
        .iter()
        .map(|group| {
            let key = key_of(group);
            let member_keys = members.members.get(&key).cloned().unwrap_or_default();
            GroupPlan {
                name: show(&key),
                members: member_keys.iter().map(&show).collect(),
                waves: waves_within(&graph, &member_keys)
                    .iter()
                    .map(|w| w.iter().map(&show).collect())
                    .collect(),
                max_concurrent_starts: group
                    .spec
                    .startup
                    .as_ref()
                    .map_or(0, |s| s.max_concurrent_starts),
            }
        })
        .collect();

    Plan {
        platforms: platforms.len(),
        groups: group_plans,
        waves: graph
            .waves()
            .iter()
            .map(|w| w.iter().map(&show).collect())
            .collect(),
        shutdown_order: graph.shutdown_order().iter().map(&show).collect(),
        critical_chain: CriticalChain {
            chain: critical.chain.iter().map(&show).collect(),
            worst_case_seconds: critical.total.as_secs(),
        },
        manifest_errors: stack.errors.iter().map(ManifestProblem::from).collect(),
        graph_errors,
        blocked: graph
            .blocked()
            .iter()
            .map(|(k, reason)| (show(k), reason.message()))
            .collect(),
    }
}

/// The global waves restricted to `members` (empty waves dropped).
fn waves_within(graph: &Graph, members: &[NodeKey]) -> Vec<Vec<NodeKey>> {
    graph
        .waves()
        .iter()
        .map(|wave| {
            wave.iter()
                .filter(|k| members.contains(k))
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|wave| !wave.is_empty())
        .collect()
}

/// The plan for people.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    for problem in &plan.manifest_errors {
        let origin = format!(
            "{} (document {}): {}",
            problem.file, problem.document, problem.object
        );
        if problem.fields.is_empty() {
            line(format!("error: {origin}: {}", problem.message));
        } else {
            line(format!("error: {origin} is invalid:"));
            for field in &problem.fields {
                line(format!("  - {field}"));
            }
        }
    }
    for error in &plan.graph_errors {
        line(format!("error: {error}"));
    }
    for (name, reason) in &plan.blocked {
        line(format!("blocked: {name}: {reason}"));
    }
    if !plan.is_clean() {
        line(String::new());
    }
    line(format!(
        "{} platforms, {} groups",
        plan.platforms,
        plan.groups.len()
    ));
    if plan.waves.is_empty() {
        return out;
    }
    line(String::new());
    line("Startup waves (each wave starts in parallel once the previous one is Ready):".into());
    for (index, wave) in plan.waves.iter().enumerate() {
        line(format!("  wave {index}: {}", wave.join(", ")));
    }
    line(String::new());
    line("Shutdown order (dependents first):".into());
    for (index, name) in plan.shutdown_order.iter().enumerate() {
        line(format!("  {:>3}. {name}", index + 1));
    }
    line(String::new());
    line(format!(
        "Critical chain (worst case by startupTimeoutSeconds, {} s): {}",
        plan.critical_chain.worst_case_seconds,
        plan.critical_chain.chain.join(" → ")
    ));
    for group in &plan.groups {
        let limit = match group.max_concurrent_starts {
            0 => "no start limit".to_string(),
            n => format!("at most {n} starting at once"),
        };
        line(format!(
            "Group {}: {} members in {} waves, {limit}",
            group.name,
            group.members.len(),
            group.waves.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests;
