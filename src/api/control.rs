//! `POST .../control`: what a request asks for, and the plan that carries it out, as a pure
//! function of the request and one snapshot of the caches. The plan is a list of merge patches
//! to Platform objects (the REST API keeps no state: the operator acts on what the patches
//! change, as it would on `kubectl patch`), the platforms affected in the order they will
//! change, and the config change for the audit trail.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::controller::Topology;
use crate::controller::model::{
    REQUESTED_AT_ANNOTATION, REQUESTED_BY_ANNOTATION, RESTART_ANNOTATION,
    RESTART_DEPENDENTS_ANNOTATION, StopCause,
};
use crate::crd::{DesiredState, Phase, Platform};
use crate::graph::{BlockReason, NodeKey};

use super::problem::ApiError;

/// The actions a platform accepts.
pub const PLATFORM_ACTIONS: [&str; 3] = ["start", "stop", "restart"];
/// The fields a control request may have.
pub const CONTROL_FIELDS: [&str; 4] = ["action", "config", "withDependencies", "withDependents"];

/// A control request, as legacy callers send it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControlRequest {
    /// `start`, `stop` or `restart`.
    #[schema(example = "stop")]
    pub action: String,
    /// Settings merged over the platform's `spec.config` (persisted on the Platform, applied by
    /// a rolling restart). Values must be strings.
    #[serde(default)]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub config: Option<BTreeMap<String, Value>>,
    /// `start` only: also start the stopped platforms it depends on (default true).
    #[serde(default)]
    pub with_dependencies: Option<bool>,
    /// `restart` only: restart its dependents too, each after this one is Ready again
    /// (default false).
    #[serde(default)]
    pub with_dependents: Option<bool>,
}

/// A platform's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    pub fn parse(action: &str, allowed: &[&str]) -> Result<Action, ApiError> {
        let parsed = match action {
            "start" => Some(Action::Start),
            "stop" => Some(Action::Stop),
            "restart" => Some(Action::Restart),
            _ => None,
        };
        match parsed {
            Some(parsed) if allowed.contains(&action) => Ok(parsed),
            _ => Err(ApiError::Invalid {
                message: format!(
                    "unknown action {action:?}: use one of {}",
                    allowed.join(", ")
                ),
                allowed: json!({"action": allowed}),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }

    /// The action as an Event names it.
    pub fn event_action(self) -> &'static str {
        match self {
            Action::Start => "Start",
            Action::Stop => "Stop",
            Action::Restart => "Restart",
        }
    }
}

/// Reads a control request body: 400 when it is not JSON, 422 when it is JSON of the wrong
/// shape (naming the field and what is allowed).
pub fn parse_request(body: &[u8]) -> Result<ControlRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        ApiError::Invalid {
            message: format!("{at}{}", error.inner()),
            allowed: json!({
                "fields": CONTROL_FIELDS,
                "action": PLATFORM_ACTIONS,
                "config": "an object of string values",
            }),
        }
    })
}

/// The longest ConfigMap key the API server accepts.
const MAX_CONFIG_KEY: usize = 253;

/// The config override as strings, with keys a ConfigMap accepts.
pub fn config_override(
    config: Option<&BTreeMap<String, Value>>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut strings = BTreeMap::new();
    let invalid = |message: String| ApiError::Invalid {
        message,
        allowed: json!({"config": "keys of letters, digits, '-', '_' and '.' (at most 253); string values"}),
    };
    for (key, value) in config.into_iter().flatten() {
        let key_ok = !key.is_empty()
            && key.len() <= MAX_CONFIG_KEY
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !key_ok {
            return Err(invalid(format!(
                "config key {key:?} is not a valid ConfigMap key"
            )));
        }
        let Value::String(value) = value else {
            return Err(invalid(format!(
                "config.{key}: must be a string, got {value}"
            )));
        };
        strings.insert(key.clone(), value.clone());
    }
    Ok(strings)
}

/// One snapshot of the caches.
pub struct Snapshot {
    pub platforms: HashMap<NodeKey, Arc<Platform>>,
    pub topology: Arc<Topology>,
}

impl Snapshot {
    fn platform(&self, key: &NodeKey) -> Option<&Platform> {
        self.platforms.get(key).map(AsRef::as_ref)
    }

    fn phase(&self, key: &NodeKey) -> Option<Phase> {
        self.platform(key)
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase)
    }

    fn stop_cause(&self, key: &NodeKey) -> Option<&StopCause> {
        self.topology.stop_causes.get(key)
    }

    /// Whether the platform has pods or is meant to (so a stop or restart reaches it).
    fn is_up(&self, key: &NodeKey) -> bool {
        !matches!(
            self.phase(key),
            None | Some(Phase::Stopped) | Some(Phase::Pending)
        )
    }
}

/// A platform a request affects, in the order it changes.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Affected {
    pub namespace: String,
    pub name: String,
    /// What happens to it: `start`, `stop` (its own), `cascade-stop` (a dependent stopped
    /// first), `restart`, `reset` (a Failed platform restarted), `wait` (starts by itself once
    /// its dependencies are Ready).
    pub change: String,
}

/// One key's change, values redacted where the key looks secret.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigChange {
    pub key: String,
    pub old: Option<String>,
    pub new: String,
}

/// What carrying out a request means.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlPlan {
    pub action: Action,
    pub target: NodeKey,
    /// Merge patches to Platforms, applied in this order.
    pub patches: Vec<(NodeKey, Value)>,
    pub affected: Vec<Affected>,
    pub config_changes: Vec<ConfigChange>,
    /// The restart request written (`restart`, or the reset of a Failed platform).
    pub restart_request: Option<String>,
}

/// Options of a request, resolved.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub action: Action,
    pub config: BTreeMap<String, String>,
    pub with_dependencies: bool,
    pub with_dependents: bool,
    /// `api:<user>`.
    pub actor: String,
    /// RFC 3339, also the restart request's value.
    pub now: String,
}

/// Plans a platform's control request.
pub fn plan_control(
    snapshot: &Snapshot,
    target: &NodeKey,
    options: &ControlOptions,
) -> Result<ControlPlan, ApiError> {
    let platform = snapshot
        .platform(target)
        .ok_or_else(|| ApiError::UnknownPlatform {
            id: target.name.clone(),
        })?;
    let mut plan = ControlPlan {
        action: options.action,
        target: target.clone(),
        patches: Vec::new(),
        affected: Vec::new(),
        config_changes: config_changes(platform, &options.config),
        restart_request: None,
    };
    let mut target_patch = PatchBuilder::default();
    match options.action {
        Action::Start => plan_start(snapshot, target, options, &mut plan, &mut target_patch)?,
        Action::Stop => plan_stop(snapshot, target, &mut plan, &mut target_patch),
        Action::Restart => plan_restart(snapshot, target, options, &mut plan, &mut target_patch)?,
    }
    if !plan.config_changes.is_empty() {
        target_patch.config(&options.config);
    }
    if !target_patch.is_empty() {
        target_patch.requested(options);
        plan.patches
            .push((target.clone(), target_patch.into_value()));
    }
    Ok(plan)
}

fn plan_start(
    snapshot: &Snapshot,
    target: &NodeKey,
    options: &ControlOptions,
    plan: &mut ControlPlan,
    target_patch: &mut PatchBuilder,
) -> Result<(), ApiError> {
    let graph = &snapshot.topology.graph;
    if let Some(message) = graph.block_message(target) {
        let cycle = match graph.root_cause(target) {
            Some((_, BlockReason::InCycle { path })) => {
                Some(path.iter().map(|k| k.name.clone()).collect::<Vec<_>>())
            }
            _ => None,
        };
        return Err(ApiError::Conflict {
            message: format!("{} cannot start: {message}", target.name),
            facts: json!({"reason": message, "cycle": cycle}),
        });
    }
    let mut starting: BTreeSet<NodeKey> = BTreeSet::from([target.clone()]);
    if options.with_dependencies {
        starting.extend(graph.dependency_closure(target));
    }
    let by_group: Vec<String> = starting
        .iter()
        .filter_map(|key| match snapshot.stop_cause(key) {
            Some(StopCause::Group(group)) => Some(format!("{} (group {})", key.name, group.name)),
            _ => None,
        })
        .collect();
    if !by_group.is_empty() {
        return Err(ApiError::Conflict {
            message: format!(
                "stopped by their group: {}; start the group instead \
                 (POST /api/v1/groups/<name>/control)",
                by_group.join(", ")
            ),
            facts: json!({"stoppedByGroup": by_group}),
        });
    }
    for key in graph.startup_order() {
        if !starting.contains(&key) {
            continue;
        }
        let own_stop = snapshot
            .platform(&key)
            .is_some_and(|p| p.spec.desired_state == DesiredState::Stopped);
        let will_run = own_stop || snapshot.phase(&key) != Some(Phase::Running);
        if &key == target {
            if own_stop {
                target_patch.desired_state(DesiredState::Running);
            }
            if snapshot.phase(&key) == Some(Phase::Failed) {
                // An explicit start is how a user resets a platform that failed.
                target_patch.restart(&options.now, None);
                plan.restart_request = Some(options.now.clone());
                plan.affected.push(affected(&key, "reset"));
            } else if will_run {
                let waits = !options.with_dependencies
                    && graph
                        .dependency_closure(&key)
                        .iter()
                        .any(|d| snapshot.phase(d) != Some(Phase::Running));
                plan.affected
                    .push(affected(&key, if waits { "wait" } else { "start" }));
            }
        } else if own_stop {
            let mut patch = PatchBuilder::default();
            patch.desired_state(DesiredState::Running);
            patch.requested(options);
            plan.patches.push((key.clone(), patch.into_value()));
            plan.affected.push(affected(&key, "start"));
        } else if will_run {
            plan.affected.push(affected(&key, "start"));
        }
    }
    Ok(())
}

fn plan_stop(
    snapshot: &Snapshot,
    target: &NodeKey,
    plan: &mut ControlPlan,
    target_patch: &mut PatchBuilder,
) {
    let already = snapshot
        .platform(target)
        .is_some_and(|p| p.spec.desired_state == DesiredState::Stopped);
    if !already {
        target_patch.desired_state(DesiredState::Stopped);
    }
    let graph = &snapshot.topology.graph;
    let dependents = graph.dependents_closure(target);
    for key in graph.shutdown_order() {
        if dependents.contains(&key) && snapshot.is_up(&key) {
            plan.affected.push(affected(&key, "cascade-stop"));
        }
    }
    if snapshot.is_up(target) {
        plan.affected.push(affected(target, "stop"));
    }
}

fn plan_restart(
    snapshot: &Snapshot,
    target: &NodeKey,
    options: &ControlOptions,
    plan: &mut ControlPlan,
    target_patch: &mut PatchBuilder,
) -> Result<(), ApiError> {
    let running = snapshot.stop_cause(target).is_none()
        && matches!(
            snapshot.phase(target),
            Some(Phase::Running | Phase::Degraded | Phase::Starting | Phase::Failed)
        );
    if !running {
        let phase = snapshot.phase(target).map_or("Pending", Phase::as_str);
        return Err(ApiError::Conflict {
            message: format!(
                "{} is {phase}, not running: only a running platform can be restarted; \
                 start it instead",
                target.name
            ),
            facts: json!({"phase": phase}),
        });
    }
    target_patch.restart(&options.now, Some(options.with_dependents));
    plan.restart_request = Some(options.now.clone());
    plan.affected.push(affected(target, "restart"));
    if options.with_dependents {
        let graph = &snapshot.topology.graph;
        let dependents = graph.dependents_closure(target);
        for key in graph.startup_order() {
            if dependents.contains(&key) && snapshot.is_up(&key) {
                plan.affected.push(affected(&key, "restart"));
            }
        }
    }
    Ok(())
}

fn affected(key: &NodeKey, change: &str) -> Affected {
    Affected {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        change: change.to_string(),
    }
}

/// The keys whose value the override changes, redacted where the key looks secret.
fn config_changes(platform: &Platform, config: &BTreeMap<String, String>) -> Vec<ConfigChange> {
    config
        .iter()
        .filter(|(key, value)| platform.spec.config.get(*key) != Some(*value))
        .map(|(key, value)| {
            let shown = |v: &String| {
                if looks_secret(key) {
                    "<redacted>".to_string()
                } else {
                    v.clone()
                }
            };
            ConfigChange {
                key: key.clone(),
                old: platform.spec.config.get(key).map(shown),
                new: shown(value),
            }
        })
        .collect()
}

/// Whether a config key probably holds a secret, so its values stay out of the audit trail.
pub fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    const MARKERS: [&str; 9] = [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "apikey",
        "api_key",
        "api-key",
        "private",
    ];
    MARKERS.iter().any(|m| key.contains(m))
        || key.ends_with("_key")
        || key.ends_with("-key")
        || key.ends_with(".key")
        || key == "key"
}

/// A merge patch to one Platform, built field by field.
#[derive(Default)]
struct PatchBuilder {
    spec: serde_json::Map<String, Value>,
    annotations: serde_json::Map<String, Value>,
}

impl PatchBuilder {
    fn is_empty(&self) -> bool {
        self.spec.is_empty() && self.annotations.is_empty()
    }

    fn desired_state(&mut self, state: DesiredState) {
        let state = match state {
            DesiredState::Running => "Running",
            DesiredState::Stopped => "Stopped",
        };
        self.spec.insert("desiredState".into(), state.into());
    }

    fn config(&mut self, config: &BTreeMap<String, String>) {
        self.spec.insert("config".into(), json!(config));
    }

    /// A restart request; `dependents` sets (or clears) the cascading restart.
    fn restart(&mut self, request: &str, dependents: Option<bool>) {
        self.annotations
            .insert(RESTART_ANNOTATION.into(), request.into());
        if let Some(dependents) = dependents {
            let value = if dependents {
                json!("true")
            } else {
                Value::Null
            };
            self.annotations
                .insert(RESTART_DEPENDENTS_ANNOTATION.into(), value);
        }
    }

    fn requested(&mut self, options: &ControlOptions) {
        self.annotations
            .insert(REQUESTED_BY_ANNOTATION.into(), options.actor.clone().into());
        self.annotations
            .insert(REQUESTED_AT_ANNOTATION.into(), options.now.clone().into());
    }

    fn into_value(self) -> Value {
        let mut patch = serde_json::Map::new();
        if !self.annotations.is_empty() {
            patch.insert("metadata".into(), json!({"annotations": self.annotations}));
        }
        if !self.spec.is_empty() {
            patch.insert("spec".into(), Value::Object(self.spec));
        }
        Value::Object(patch)
    }
}

#[cfg(test)]
mod tests;
