//! `start`, `stop`, `restart`: the REST API's plan (`plan_control`) from one snapshot, its merge
//! patches applied in order under our own field manager, the affected platforms printed in the
//! order they change, and with `--wait` the REST API's own test of "done" (`target_reached`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use platform_operator::api::control::{Action, ControlOptions, ControlPlan, plan_control};
use platform_operator::api::platforms::{target_reached, watched_platforms};
use platform_operator::api::views::summary;
use platform_operator::crd::Platform;
use platform_operator::graph::NodeKey;

use crate::cluster::{Cluster, FIELD_MANAGER, Loaded};
use crate::error::CliError;
use crate::lookup::find_platform;

/// How often `--wait` lists the platforms again.
const POLL: Duration = Duration::from_millis(250);

pub struct Request {
    pub action: Action,
    pub name: String,
    pub with_dependencies: bool,
    pub with_dependents: bool,
    pub wait: Option<Duration>,
}

pub async fn run(cluster: &Cluster, request: &Request) -> Result<(), CliError> {
    let loaded = cluster.load(false).await?;
    let target = find_platform(&loaded, &request.name, &cluster.namespace)?;
    let requester = cluster.requester().await;
    let options = ControlOptions {
        action: request.action,
        config: BTreeMap::new(),
        with_dependencies: request.with_dependencies,
        with_dependents: request.with_dependents,
        actor: requester.actor,
        now: requester.now,
    };
    let plan = plan_control(&loaded.snapshot, &target, &options).map_err(CliError::from_plan)?;
    apply(cluster, &plan).await?;
    print!("{}", describe(&plan, &options.actor));
    if let Some(limit) = request.wait {
        wait(cluster, &plan, limit).await?;
    }
    Ok(())
}

async fn apply(cluster: &Cluster, plan: &ControlPlan) -> Result<(), CliError> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    for (key, patch) in &plan.patches {
        let api: Api<Platform> = Api::namespaced(cluster.client.clone(), &key.namespace);
        api.patch(&key.name, &params, &Patch::Merge(patch))
            .await
            .map_err(|e| CliError::kube(e, &format!("patch platform {key}")))?;
    }
    Ok(())
}

/// Names relative to the target's namespace, as kubectl shows them.
fn shown(key: &NodeKey, home: &str) -> String {
    if key.namespace == home {
        key.name.clone()
    } else {
        key.to_string()
    }
}

/// What the request does, in the order the platforms change.
pub fn describe(plan: &ControlPlan, actor: &str) -> String {
    let home = &plan.target.namespace;
    let mut out = format!(
        "platform {}: {} requested by {actor}\n",
        plan.target,
        plan.action.as_str()
    );
    if plan.affected.is_empty() {
        out.push_str("nothing changes: it is already there\n");
        return out;
    }
    let width = plan
        .affected
        .iter()
        .map(|a| shown(&NodeKey::new(&a.namespace, &a.name), home).len())
        .max()
        .unwrap_or(0)
        .max("PLATFORM".len());
    let _ = writeln!(out, "{:<5}  {:<width$}  CHANGE", "ORDER", "PLATFORM");
    for (i, affected) in plan.affected.iter().enumerate() {
        let key = NodeKey::new(&affected.namespace, &affected.name);
        let _ = writeln!(
            out,
            "{:<5}  {:<width$}  {}",
            i + 1,
            shown(&key, home),
            affected.change
        );
    }
    out
}

async fn wait(cluster: &Cluster, plan: &ControlPlan, limit: Duration) -> Result<(), CliError> {
    let watched = watched_platforms(plan);
    let started = Instant::now();
    loop {
        let loaded = cluster.load(false).await?;
        if target_reached(&loaded.snapshot, plan, &watched) {
            println!(
                "done in {:.1}s: {}",
                started.elapsed().as_secs_f64(),
                state(&loaded, &watched, &plan.target.namespace)
            );
            return Ok(());
        }
        if started.elapsed() >= limit {
            return Err(CliError::NotPossible(format!(
                "timed out after {}s waiting for the {} to complete; now: {}",
                limit.as_secs_f64(),
                plan.action.as_str(),
                state(&loaded, &watched, &plan.target.namespace)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `name Phase (ready)` of each watched platform.
fn state(loaded: &Loaded, watched: &[NodeKey], home: &str) -> String {
    watched
        .iter()
        .map(|key| match loaded.snapshot.platforms.get(key) {
            Some(platform) => {
                let summary = summary(&loaded.snapshot, platform);
                format!("{} {} ({})", shown(key, home), summary.phase, summary.ready)
            }
            None => format!("{} gone", shown(key, home)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use platform_operator::api::control::Affected;

    use super::*;

    fn affected(namespace: &str, name: &str, change: &str) -> Affected {
        Affected {
            namespace: namespace.into(),
            name: name.into(),
            change: change.into(),
        }
    }

    #[test]
    fn the_description_lists_the_affected_in_order_with_foreign_namespaces_spelt_out() {
        let plan = ControlPlan {
            action: Action::Stop,
            target: NodeKey::new("trading", "market-data"),
            patches: Vec::new(),
            affected: vec![
                affected("risk", "limits", "cascade-stop"),
                affected("trading", "orders", "cascade-stop"),
                affected("trading", "market-data", "stop"),
            ],
            config_changes: Vec::new(),
            restart_request: None,
        };
        assert_eq!(
            describe(&plan, "kubectl:alice"),
            "platform trading/market-data: stop requested by kubectl:alice\n\
             ORDER  PLATFORM     CHANGE\n\
             1      risk/limits  cascade-stop\n\
             2      orders       cascade-stop\n\
             3      market-data  stop\n"
        );
    }
}
