//! The PlatformGroup controller. Members act on their group themselves (its desired state and
//! defaults are read in the Platform reconcile); this controller only reports the group's
//! status, computed by a pure function of the group, the topology and the members.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;

use crate::crd::{
    DesiredState, Phase, Platform, PlatformGroup, PlatformGroupStatus, condition, group_condition,
};
use crate::graph::{GraphError, NodeKey};
use crate::stack::key_of;

use super::apply::apply_status;
use super::context::{Context, Topology};
use super::error::Error;
use super::observe::whole_seconds;
use super::status::set_condition;

#[tracing::instrument(skip_all, fields(namespace = group.namespace(), group = group.name_any()))]
pub async fn reconcile(group: Arc<PlatformGroup>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    if !ctx.stores.synced() {
        return Ok(Requeue::requeue(std::time::Duration::from_millis(100)));
    }
    let topology = ctx.topology();
    let key = key_of(group.as_ref());
    let members: Vec<(NodeKey, Option<Arc<Platform>>)> = topology
        .membership
        .members
        .get(&key)
        .into_iter()
        .flatten()
        .map(|member| (member.clone(), ctx.stores.platform(member)))
        .collect();
    let now = whole_seconds(ctx.clock.now());
    let status = group_status(&group, &topology, &members, now);
    if group.status.as_ref() != Some(&status) {
        apply_status(
            &ctx,
            group.as_ref(),
            &status,
            "write the PlatformGroup status",
        )
        .await?;
    }
    Ok(Requeue::await_change())
}

pub fn error_policy(_group: Arc<PlatformGroup>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    Requeue::requeue(error.retry_after())
}

/// The group's status from its members' observed state.
pub fn group_status(
    group: &PlatformGroup,
    topology: &Topology,
    members: &[(NodeKey, Option<Arc<Platform>>)],
    now: Timestamp,
) -> PlatformGroupStatus {
    let key = key_of(group);
    let member_keys: Vec<&NodeKey> = members.iter().map(|(k, _)| k).collect();
    let mut graph_errors = Vec::new();
    for (platform, others) in topology.membership.conflicts_of(&key) {
        let names: Vec<&str> = others.iter().map(|g| g.name.as_str()).collect();
        graph_errors.push(format!(
            "platform {} is also selected by group {}; it ignores both groups",
            platform.name,
            names.join(", ")
        ));
    }
    if let Some(reason) = topology.membership.invalid_selectors.get(&key) {
        graph_errors.push(format!("invalid selector: {reason}"));
    }
    let own_ordering: Vec<(String, String)> = group
        .spec
        .startup
        .iter()
        .flat_map(|s| s.ordering.iter())
        .map(|rule| (rule.before.clone(), rule.after.clone()))
        .collect();
    for error in topology.graph.errors() {
        let involves_member = involved(error).iter().any(|k| member_keys.contains(k));
        let from_own_ordering = matches!(error, GraphError::UnknownOrderingEdge { before, after, .. }
            if before.namespace == key.namespace && own_ordering.contains(&(before.name.clone(), after.name.clone())));
        if involves_member || from_own_ordering {
            graph_errors.push(error.message_in(&key.namespace));
        }
    }

    let phase_of = |p: &Option<Arc<Platform>>| {
        p.as_ref()
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase)
            .unwrap_or(Phase::Pending)
    };
    let is_ready = |p: &Option<Arc<Platform>>| {
        p.as_ref().and_then(|p| p.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == condition::READY && c.status == "True")
        })
    };
    let mut phase_counts: BTreeMap<String, u32> = BTreeMap::new();
    for (_, platform) in members {
        *phase_counts
            .entry(phase_of(platform).as_str().to_string())
            .or_default() += 1;
    }
    let total = members.len() as u32;
    let ready_members = members.iter().filter(|(_, p)| is_ready(p)).count() as u32;
    let count = |phase: Phase| phase_counts.get(phase.as_str()).copied().unwrap_or(0);
    let stopping = group.spec.desired_state == DesiredState::Stopped;
    let phase = if count(Phase::Blocked) > 0 {
        "Blocked"
    } else if stopping && count(Phase::Stopped) == total {
        "Stopped"
    } else if stopping {
        "Stopping"
    } else if total > 0 && ready_members == total {
        "Running"
    } else if count(Phase::Degraded) + count(Phase::Failed) > 0 {
        "Degraded"
    } else {
        "Starting"
    };

    let previous = group.status.clone().unwrap_or_default();
    let generation = group.metadata.generation;
    let mut conditions = previous.conditions.clone();
    let graph_valid = graph_errors.is_empty();
    let graph_message = if graph_valid {
        "the members' dependency graph is valid".to_string()
    } else {
        graph_errors.join("; ")
    };
    set_condition(
        &mut conditions,
        group_condition::GRAPH_VALID,
        graph_valid,
        if graph_valid { "Valid" } else { "Invalid" },
        &graph_message,
        generation,
        now,
    );
    let stalled = phase == "Blocked";
    set_condition(
        &mut conditions,
        group_condition::STALLED,
        stalled,
        if stalled { "Blocked" } else { "Progressing" },
        if stalled {
            &graph_message
        } else {
            "not stalled"
        },
        generation,
        now,
    );
    let ready = matches!(phase, "Running" | "Stopped");
    let ready_message = format!("{ready_members}/{total} members Ready");
    set_condition(
        &mut conditions,
        group_condition::READY,
        ready,
        phase,
        &ready_message,
        generation,
        now,
    );

    let waves = topology
        .graph
        .waves()
        .iter()
        .map(|wave| {
            wave.iter()
                .filter(|k| member_keys.contains(k))
                .map(|k| k.name.clone())
                .collect::<Vec<_>>()
        })
        .filter(|wave| !wave.is_empty())
        .collect();

    PlatformGroupStatus {
        phase: Some(phase.to_string()),
        startup_order: waves,
        phase_counts,
        ready_members,
        total_members: total,
        ready: Some(format!("{ready_members}/{total}")),
        conditions,
        graph_errors,
        observed_generation: generation,
    }
}

fn involved(error: &GraphError) -> Vec<&NodeKey> {
    match error {
        GraphError::MissingDependency { platform, .. }
        | GraphError::CrossNamespaceMissing { platform, .. }
        | GraphError::SelfDependency { platform } => vec![platform],
        GraphError::UnknownOrderingEdge { before, after, .. } => vec![before, after],
        GraphError::Cycle { path } => path.iter().collect(),
    }
}

#[cfg(test)]
mod tests;
