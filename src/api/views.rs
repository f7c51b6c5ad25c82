//! What the read endpoints answer, built purely from one snapshot of the caches: a platform's
//! status, the list, a group, the audit trail. These types are the API's contract (and its
//! OpenAPI schemas); they do not expose the CRD types directly, so the CRD can evolve without
//! breaking legacy callers.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::crd::{DesiredState, HistoryEntry, Phase, Platform, PlatformGroup, condition};
use crate::graph::NodeKey;
use crate::stack::{effective_settings, key_of};

use super::control::{Snapshot, looks_secret};

/// A platform's status, for legacy callers.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformStatusView {
    pub name: String,
    pub namespace: String,
    /// The legacy id (`spec.platformId`), if set.
    pub platform_id: Option<String>,
    /// The group it belongs to, if exactly one claims it.
    pub group: Option<String>,
    /// `Pending`, `WaitingForDependencies`, `Starting`, `Running`, `Degraded`, `Stopping`,
    /// `Stopped`, `Failed` or `Blocked`.
    pub phase: String,
    /// What its spec asks for: `Running` or `Stopped`.
    pub desired_state: String,
    /// Why it is stopped although its spec says `Running` (a dependency, its group).
    pub stopped_by: Option<String>,
    pub message: Option<String>,
    pub replicas: ReplicasView,
    pub conditions: Vec<ConditionView>,
    pub dependencies: Vec<DependencyView>,
    /// Dependencies it waits for.
    pub blocked_by: Vec<String>,
    pub restarts: RestartsView,
    /// The circuit breaker: `Closed`, `Open` (stopped after too many restarts) or `HalfOpen`
    /// (one trial start after the cooldown).
    pub circuit: String,
    pub health: HealthView,
    pub resources: ResourcesView,
    pub started_at: Option<String>,
    pub stopped_at: Option<String>,
    /// `spec.config`, with the values of keys that look secret redacted.
    pub config: BTreeMap<String, String>,
    /// The last control actions, newest last (from `status.history`).
    pub last_actions: Vec<ActionView>,
    /// `metadata.generation` and the generation the status describes; they differ while the
    /// operator has not acted on the latest spec yet.
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicasView {
    pub desired: i32,
    pub ready: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyView {
    pub name: String,
    pub namespace: String,
    /// Its phase, or `Missing` when no such platform exists.
    pub phase: String,
    pub ready: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartsView {
    /// Restarts the operator carried out.
    pub count: i32,
    pub last_restart_time: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    /// Running with every replica ready.
    pub healthy: bool,
    /// When the platform last became unhealthy (degraded or failed), if it has been.
    pub last_failure: Option<String>,
    /// Why (a condition reason or the audited action's reason).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesView {
    /// Per pod, as Kubernetes quantities (`cpu`, `memory`); group defaults applied.
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
    /// Whether usage is measured: `false` where the metrics API (`metrics.k8s.io`) does not
    /// answer.
    pub usage_known: bool,
    /// The busiest pod's usage against the limits, from the operator's last poll.
    pub usage: Option<UsageView>,
}

/// Measured usage of a platform's busiest pod.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub cpu_cores: f64,
    pub memory_bytes: f64,
    /// Usage over the limit (1.0 = at the limit), when a limit is set.
    pub cpu_of_limit: Option<f64>,
    pub memory_of_limit: Option<f64>,
    pub measured_at: String,
}

impl From<&crate::controller::usage::UsageSample> for UsageView {
    fn from(sample: &crate::controller::usage::UsageSample) -> Self {
        UsageView {
            cpu_cores: sample.cpu_cores,
            memory_bytes: sample.memory_bytes,
            cpu_of_limit: sample.cpu_fraction,
            memory_of_limit: sample.memory_fraction,
            measured_at: sample.at.to_string(),
        }
    }
}

/// One audited action.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionView {
    pub action: String,
    /// `platform-operator`, or `api:<user>` for what a REST caller asked for.
    pub actor: String,
    pub reason: String,
    pub time: String,
}

/// One platform in a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSummary {
    pub name: String,
    pub namespace: String,
    pub platform_id: Option<String>,
    pub group: Option<String>,
    pub phase: String,
    pub desired_state: String,
    /// Ready over desired replicas, e.g. `1/1`.
    pub ready: String,
    pub startup_wave: Option<i32>,
}

/// A group and its members.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub name: String,
    pub namespace: String,
    pub desired_state: String,
    /// The group's summary phase (from its status).
    pub phase: Option<String>,
    /// Ready members over all members.
    pub ready: Option<String>,
    /// Startup waves of the members.
    pub startup_order: Vec<Vec<String>>,
    pub graph_errors: Vec<String>,
    pub conditions: Vec<ConditionView>,
    pub members: Vec<PlatformSummary>,
}

fn time(t: &Time) -> String {
    t.0.to_string()
}

fn phase_of(platform: &Platform) -> Phase {
    platform
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default()
}

fn desired(state: DesiredState) -> String {
    match state {
        DesiredState::Running => "Running",
        DesiredState::Stopped => "Stopped",
    }
    .to_string()
}

fn conditions(conditions: &[Condition]) -> Vec<ConditionView> {
    conditions
        .iter()
        .map(|c| ConditionView {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: time(&c.last_transition_time),
        })
        .collect()
}

/// The history as the audit trail shows it.
pub fn actions(history: &[HistoryEntry]) -> Vec<ActionView> {
    history
        .iter()
        .map(|h| ActionView {
            action: h.action.clone(),
            actor: h.actor.clone(),
            reason: h.reason.clone(),
            time: time(&h.time),
        })
        .collect()
}

/// A platform in a list.
pub fn summary(snapshot: &Snapshot, platform: &Platform) -> PlatformSummary {
    let key = key_of(platform);
    let status = platform.status.clone().unwrap_or_default();
    PlatformSummary {
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        platform_id: platform.spec.platform_id.clone(),
        group: snapshot.topology.group_of(&key).map(|g| g.name_any()),
        phase: phase_of(platform).to_string(),
        desired_state: desired(platform.spec.desired_state),
        ready: status
            .ready
            .unwrap_or_else(|| format!("0/{}", platform.spec.replicas)),
        startup_wave: status.startup_wave,
    }
}

/// A platform's full status.
pub fn platform_status(snapshot: &Snapshot, platform: &Platform) -> PlatformStatusView {
    let key = key_of(platform);
    let status = platform.status.clone().unwrap_or_default();
    let group = snapshot.topology.group_of(&key);
    let settings = effective_settings(platform, group.and_then(|g| g.spec.defaults.as_ref()));
    let dependencies = snapshot
        .topology
        .graph
        .dependencies(&key)
        .into_iter()
        .chain(missing_dependencies(snapshot, platform))
        .map(|dep| dependency(snapshot, &dep))
        .collect();
    let quantities = |side: Option<&crate::crd::CpuMemory>| {
        let mut out = BTreeMap::new();
        if let Some(side) = side {
            if let Some(cpu) = &side.cpu {
                out.insert("cpu".to_string(), cpu.0.clone());
            }
            if let Some(memory) = &side.memory {
                out.insert("memory".to_string(), memory.0.clone());
            }
        }
        out
    };
    let config = platform
        .spec
        .config
        .iter()
        .map(|(k, v)| {
            let shown = if looks_secret(k) {
                "<redacted>"
            } else {
                v.as_str()
            };
            (k.clone(), shown.to_string())
        })
        .collect();
    PlatformStatusView {
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        platform_id: platform.spec.platform_id.clone(),
        group: group.map(|g| g.name_any()),
        phase: phase_of(platform).to_string(),
        desired_state: desired(platform.spec.desired_state),
        stopped_by: status.stopped_by.clone(),
        message: status.message.clone(),
        replicas: ReplicasView {
            desired: platform.spec.replicas,
            ready: status.ready_replicas.unwrap_or(0),
        },
        conditions: conditions(&status.conditions),
        dependencies,
        blocked_by: status.blocked_by.clone(),
        restarts: RestartsView {
            count: status.restart_count.unwrap_or(0),
            last_restart_time: status.last_restart_time.as_ref().map(time),
        },
        circuit: format!(
            "{:?}",
            status
                .supervision
                .as_ref()
                .map(|s| s.circuit)
                .unwrap_or_default()
        ),
        health: health(platform),
        resources: ResourcesView {
            requests: quantities(settings.resources.requests.as_ref()),
            limits: quantities(settings.resources.limits.as_ref()),
            usage_known: status.usage_known == Some(true),
            usage: None,
        },
        started_at: status.started_at.as_ref().map(time),
        stopped_at: status.stopped_at.as_ref().map(time),
        config,
        last_actions: actions(&status.history),
        generation: platform.metadata.generation,
        observed_generation: status.observed_generation,
    }
}

/// Declared dependencies the graph does not know (they do not exist).
fn missing_dependencies(snapshot: &Snapshot, platform: &Platform) -> Vec<NodeKey> {
    crate::stack::dependency_keys(platform)
        .into_iter()
        .filter(|k| !snapshot.platforms.contains_key(k))
        .collect()
}

fn dependency(snapshot: &Snapshot, key: &NodeKey) -> DependencyView {
    let platform = snapshot.platforms.get(key);
    let ready = platform.and_then(|p| p.status.as_ref()).is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == condition::READY && c.status == "True")
    });
    DependencyView {
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        phase: platform.map_or("Missing".to_string(), |p| phase_of(p).to_string()),
        ready,
    }
}

/// Health from what the operator reported: supervision's last failure (with its evidence),
/// else a Degraded condition that is True, else the last audited failure.
fn health(platform: &Platform) -> HealthView {
    let status = platform.status.clone().unwrap_or_default();
    let healthy = phase_of(platform) == Phase::Running;
    if let Some(failure) = status
        .supervision
        .as_ref()
        .and_then(|s| s.last_failure.as_ref())
    {
        return HealthView {
            healthy,
            last_failure: Some(time(&failure.since)),
            reason: Some(format!("{}: {}", failure.kind, failure.reason)),
        };
    }
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::DEGRADED && c.status == "True");
    if let Some(degraded) = degraded {
        return HealthView {
            healthy,
            last_failure: Some(time(&degraded.last_transition_time)),
            reason: Some(format!("{}: {}", degraded.reason, degraded.message)),
        };
    }
    let failed = status.history.iter().rev().find(|h| h.action == "Failed");
    HealthView {
        healthy,
        last_failure: failed.map(|h| time(&h.time)),
        reason: failed.map(|h| h.reason.clone()),
    }
}

/// A group with its members.
pub fn group_view(snapshot: &Snapshot, group: &PlatformGroup) -> GroupView {
    let key = key_of(group);
    let status = group.status.clone().unwrap_or_default();
    let members = snapshot
        .topology
        .membership
        .members
        .get(&key)
        .into_iter()
        .flatten()
        .filter_map(|m| snapshot.platforms.get(m))
        .map(|p| summary(snapshot, p))
        .collect();
    GroupView {
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        desired_state: desired(group.spec.desired_state),
        phase: status.phase.clone(),
        ready: status.ready.clone(),
        startup_order: status.startup_order.clone(),
        graph_errors: status.graph_errors.clone(),
        conditions: conditions(&status.conditions),
        members,
    }
}
