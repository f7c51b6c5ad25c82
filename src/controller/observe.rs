//! Observe: one immutable snapshot of everything the plan for one Platform needs, read from the
//! reflector caches and the operator's writes in flight (no API calls). Start-slot
//! availability is part of it; the claim itself is committed when the plan is carried out.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use crate::crd::{DesiredState, Phase, Platform};
use crate::graph::NodeKey;
use crate::stack::effective_settings;

use super::build::{SPEC_HASH_ANNOTATION, config_map_name};
use super::context::{Context, Topology};
use super::model::{
    DependencyState, DependentState, DeploymentState, GroupFacts, Observed, PodHealth,
    RESTART_ANNOTATION,
};
use super::supervise::{failed_reason, on_trial};

/// Reads what is known about `platform`.
pub fn observe(ctx: &Context, platform: &Platform, key: &NodeKey) -> Observed {
    let mut topology = ctx.topology();
    if !topology.graph.contains(key) {
        // The platform being reconciled is in the cache, so the topology predates it.
        ctx.topology_changed();
        topology = ctx.topology();
    }
    let graph = &topology.graph;
    let group = topology.group_of(key);
    let settings = effective_settings(platform, group.and_then(|g| g.spec.defaults.as_ref()));

    let dependencies = graph
        .dependencies(key)
        .into_iter()
        .map(|dep| DependencyState {
            ready: is_ready(ctx, &topology, &dep),
            key: dep,
        })
        .collect();
    let dependents = graph
        .dependents(key)
        .into_iter()
        .filter_map(|dependent| {
            let other = ctx.stores.platform(&dependent)?;
            Some(DependentState {
                stopping: topology.stop_causes.contains_key(&dependent),
                stopped: is_stopped(ctx, &dependent),
                restart_request: annotation(&other, RESTART_ANNOTATION),
                key: dependent,
            })
        })
        .collect();
    let group_facts = group.map(|g| {
        let group_key = crate::stack::key_of(g.as_ref());
        let starting = starting_members(ctx, &topology, &group_key, key);
        GroupFacts {
            max_concurrent_starts: g
                .spec
                .startup
                .as_ref()
                .map_or(0, |s| s.max_concurrent_starts),
            starting_members: starting,
            key: group_key,
        }
    });

    let now = whole_seconds(ctx.clock.now());
    Observed {
        now,
        key: key.clone(),
        platform: platform.clone(),
        settings,
        deployment: ctx.fresh_deployment(key).map(|d| deployment_state(&d)),
        config_map_hash: config_map_hash(ctx, key),
        pods: ctx.pod_count(key),
        block: graph.block_message(key),
        wave: graph.wave_of(key),
        dependencies,
        dependents,
        stop_cause: topology.stop_causes.get(key).cloned(),
        group: group_facts,
        group_conflict: topology.membership.conflicting_groups(key).to_vec(),
        pod_health: ctx.pods_of(key).iter().map(|p| pod_health(p)).collect(),
        usage: ctx.usage.sample(key),
        usage_known: ctx.usage.available(),
        usage_threshold: ctx.usage_threshold,
        warnings: ctx.warnings.recent(key, now),
        blockers_held_since: ctx.blockers_held_since(key),
    }
}

/// What supervision reads of a pod.
pub fn pod_health(pod: &Pod) -> PodHealth {
    let status = pod.status.as_ref();
    let condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == type_))
    };
    let ready = condition("Ready");
    let containers: Vec<_> = status
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let waiting = containers.iter().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.clone()?;
        Some((reason, waiting.message.clone().unwrap_or_default()))
    });
    // A container is terminated (state) until the kubelet restarts it, then the termination
    // is its last state: either way it has happened, and an OOM kill is acted on at once
    // rather than after the restart back-off.
    let last_terminated = containers
        .iter()
        .flat_map(|c| [c.state.as_ref(), c.last_state.as_ref()])
        .filter_map(|state| {
            let terminated = state?.terminated.as_ref()?;
            let reason = terminated
                .reason
                .clone()
                .unwrap_or_else(|| "Error".to_string());
            Some((reason, terminated.finished_at.as_ref().map(|t| t.0)))
        })
        .max_by_key(|(_, finished)| *finished);
    let unschedulable = condition("PodScheduled")
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .map(|c| c.message.clone().unwrap_or_default());
    PodHealth {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready: ready.is_some_and(|c| c.status == "True"),
        ready_changed_at: ready.and_then(|c| c.last_transition_time.as_ref().map(|t| t.0)),
        restarts: containers.iter().map(|c| c.restart_count).sum(),
        waiting,
        last_terminated,
        unschedulable,
    }
}

/// The hash the platform's ConfigMap was applied from (the operator's write in flight first).
fn config_map_hash(ctx: &Context, key: &NodeKey) -> Option<String> {
    let reference = ObjectRef::<ConfigMap>::new(&config_map_name(&key.name)).within(&key.namespace);
    let cached = ctx.stores.configmaps.get(&reference).and_then(|c| {
        c.metadata
            .annotations
            .as_ref()?
            .get(SPEC_HASH_ANNOTATION)
            .cloned()
    });
    ctx.own_writes.config_hash(key, cached)
}

/// Members of `group` other than `platform` that are starting: holding a slot, or observed
/// scaled up and not yet Running.
pub fn starting_members(
    ctx: &Context,
    topology: &Topology,
    group: &NodeKey,
    platform: &NodeKey,
) -> BTreeSet<NodeKey> {
    let mut starting = ctx.slots_taken(group, platform);
    for member in topology.membership.members.get(group).into_iter().flatten() {
        if member == platform {
            continue;
        }
        let phase = ctx
            .stores
            .platform(member)
            .and_then(|p| p.status.as_ref().and_then(|s| s.phase));
        if phase == Some(Phase::Starting) {
            starting.insert(member.clone());
        }
    }
    starting
}

/// A platform is ready for its dependents when its workload is: its Deployment, as the
/// deployment controller last reported it, has every desired replica of the current template
/// ready (what its own `Ready` condition is written from), it is meant to run (not stopping,
/// failed or on a circuit trial) and it is not being deleted. Judged from the Deployment rather
/// than from that condition, so that a hop costs no status write and watch round trip.
pub fn is_ready(ctx: &Context, topology: &Topology, key: &NodeKey) -> bool {
    let Some(platform) = ctx.stores.platform(key) else {
        return false;
    };
    let status = platform.status.as_ref();
    let supervision = status.and_then(|s| s.supervision.as_ref());
    let held = platform.metadata.deletion_timestamp.is_some()
        || platform.spec.desired_state == DesiredState::Stopped
        || topology.stop_causes.contains_key(key)
        || status.and_then(|s| s.phase) == Some(Phase::Failed)
        || supervision.is_some_and(|s| failed_reason(s).is_some() || on_trial(s));
    !held
        && ctx
            .stores
            .deployment(key)
            .is_some_and(|d| workload_ready(&deployment_state(&d), platform.spec.replicas))
}

/// Every one of `desired` replicas runs the current template and is ready.
pub fn workload_ready(deployment: &DeploymentState, desired: i32) -> bool {
    deployment.replicas == desired && deployment.rolled_out()
}

/// No pods and none desired.
fn is_stopped(ctx: &Context, key: &NodeKey) -> bool {
    let scaled_down = ctx
        .stores
        .deployment(key)
        .is_none_or(|d| deployment_state(&d).replicas == 0);
    scaled_down && ctx.pod_count(key) == 0
}

/// The parts of a Deployment decisions look at.
pub fn deployment_state(deployment: &Deployment) -> DeploymentState {
    let spec = deployment.spec.as_ref();
    let status = deployment.status.as_ref();
    let generation = deployment.metadata.generation.unwrap_or(0);
    let template_annotations = spec
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref());
    DeploymentState {
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        updated_replicas: status.and_then(|s| s.updated_replicas).unwrap_or(0),
        status_replicas: status.and_then(|s| s.replicas).unwrap_or(0),
        observed_current: status.and_then(|s| s.observed_generation).unwrap_or(0) >= generation,
        progress_deadline_exceeded: status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            }),
        applied_hash: deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SPEC_HASH_ANNOTATION).cloned()),
        restarted_at: template_annotations.and_then(|a| a.get(RESTART_ANNOTATION).cloned()),
    }
}

fn annotation(platform: &Platform, key: &str) -> Option<String> {
    platform
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key).cloned())
}

/// Status timestamps have whole-second precision on the wire; deciding with the same precision
/// keeps a re-read status equal to the one computed.
pub(crate) fn whole_seconds(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

#[cfg(test)]
mod tests;
