//! Plan: everything one Platform reconcile will do, computed purely from one snapshot of the
//! caches. [`plan`] turns the [`Observed`] snapshot into a [`Plan`]: the objects to apply (only
//! those whose hash differs from the live one), the status to write (only when it changes), the
//! start-slot claim, the audit entries, the restart requests to pass on and the requeue. The
//! reconcile shell carries the plan out and commits its bookkeeping; nothing here talks to the
//! cluster or to shared tables.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::crd::{Phase, PlatformStatus};
use crate::graph::NodeKey;

use super::build::{
    RestartMarks, SPEC_HASH_ANNOTATION, build_config_map, build_deployment, check_workload,
};
use super::decide::decide;
use super::error::Error;
use super::model::{Action, ActionKind, AlertNote, Decision, FinalizerChange, Observed};
use super::status::next_status;

/// What happens to the platform's start slot in its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotChange {
    /// Nothing to change.
    Keep,
    /// This plan starts the platform: it needs a slot of `group`, of which at most `limit`
    /// (0: unlimited) may be held at once. Claimed before anything is written.
    Claim { group: NodeKey, limit: u32 },
    /// The platform is no longer starting (Running, stopped, failed or gone).
    Release,
}

/// Everything a reconcile writes, in the order it is carried out.
#[derive(Debug, Clone)]
pub struct Plan {
    pub slot: SlotChange,
    pub finalizer: Option<FinalizerChange>,
    pub config_map: Option<ConfigMap>,
    pub deployment: Option<Deployment>,
    /// The new status, when it differs from the current one.
    pub status: Option<PlatformStatus>,
    /// Audit entries (Events and log lines; the history entries are in `status`).
    pub audit: Vec<Action>,
    /// Dependents to pass this restart request on to.
    pub restart_requests: Vec<(NodeKey, String)>,
    /// Alerts to send once the status is written.
    pub alerts: Vec<AlertNote>,
    pub requeue_after: Option<Duration>,
    /// Since when the status has kept showing blockers that became ready, while it does.
    pub blockers_held_since: Option<Timestamp>,
    /// The decision the plan was made from (phase, message), for logs and tests.
    pub decision: Decision,
}

/// How long a platform that still waits keeps showing, in its status, blockers that became
/// ready meanwhile. In a startup wave a platform's dependencies become ready within moments
/// of each other; showing each one go would cost a status write per platform for a list
/// that is about to be empty (the start's own write clears it).
pub const BLOCKERS_GRACE: Duration = Duration::from_secs(2);

/// The plan for one snapshot.
pub fn plan(observed: &Observed) -> Plan {
    let held = held_blockers(observed);
    let observed = held.as_ref().map_or(observed, |(view, _)| view);
    let mut decision = decide(observed);
    if let Some((_, since)) = &held {
        let left = BLOCKERS_GRACE.saturating_sub(elapsed(*since, observed.now));
        decision.requeue_after = Some(decision.requeue_after.map_or(left, |r| r.min(left)));
    }
    let mut config_map = None;
    let mut deployment = None;
    if let Some(replicas) = decision.replicas {
        match desired_workload(observed, &decision, replicas) {
            Ok((wanted_config, wanted_deployment)) => {
                config_map = wanted_config.filter(|c| {
                    observed.config_map_hash.as_ref() != c.annotations().get(SPEC_HASH_ANNOTATION)
                });
                let live = observed
                    .deployment
                    .as_ref()
                    .and_then(|d| d.applied_hash.as_ref());
                deployment = Some(wanted_deployment)
                    .filter(|d| live != d.annotations().get(SPEC_HASH_ANNOTATION));
            }
            Err(error) => invalid_workload(observed, &mut decision, &error),
        }
    } else if decision.phase == Phase::WaitingForDependencies
        && let Err(error) = check_workload(&observed.platform)
    {
        // A spec that can never start says so now rather than when its turn comes.
        invalid_workload(observed, &mut decision, &error);
    }

    let status = next_status(observed, &decision);
    let status = (observed.platform.status.as_ref() != Some(&status)).then_some(status);
    let handled_restart = status
        .as_ref()
        .or(observed.platform.status.as_ref())
        .and_then(|s| s.handled_restart.clone());
    let restart_requests = match handled_restart {
        Some(request) => decision
            .restart_dependents
            .iter()
            .map(|dependent| (dependent.clone(), request.clone()))
            .collect(),
        None => Vec::new(),
    };
    let slot = match &observed.group {
        Some(group) if decision.starts => SlotChange::Claim {
            group: group.key.clone(),
            limit: group.max_concurrent_starts,
        },
        _ if decision.phase != Phase::Starting => SlotChange::Release,
        _ => SlotChange::Keep,
    };
    Plan {
        slot,
        finalizer: decision.finalizer,
        config_map,
        deployment,
        status,
        audit: decision.actions.clone(),
        restart_requests,
        alerts: decision.alerts.clone(),
        requeue_after: decision.requeue_after,
        blockers_held_since: held.map(|(_, since)| since),
        decision,
    }
}

/// While a waiting platform's blockers only shrink, and for at most [`BLOCKERS_GRACE`], the
/// snapshot as its status last showed them: those that became ready still count as not
/// ready. Nothing else changes (it waits either way), and then since when they are held.
fn held_blockers(observed: &Observed) -> Option<(Observed, Timestamp)> {
    let shown = observed.platform.status.as_ref()?;
    if shown.phase != Some(Phase::WaitingForDependencies) || observed.block.is_some() {
        return None;
    }
    let shown: BTreeSet<&str> = shown.blocked_by.iter().map(String::as_str).collect();
    let unready: BTreeSet<&str> = observed
        .dependencies
        .iter()
        .filter(|d| !d.ready)
        .map(|d| d.key.name.as_str())
        .collect();
    if unready.is_empty() || unready.len() == shown.len() || !unready.is_subset(&shown) {
        return None;
    }
    let since = observed.blockers_held_since.unwrap_or(observed.now);
    if elapsed(since, observed.now) >= BLOCKERS_GRACE {
        return None;
    }
    let mut view = observed.clone();
    for dependency in &mut view.dependencies {
        dependency.ready &= !shown.contains(dependency.key.name.as_str());
    }
    Some((view, since))
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or_default()
}

fn desired_workload(
    observed: &Observed,
    decision: &Decision,
    replicas: i32,
) -> Result<(Option<ConfigMap>, Deployment), Error> {
    let platform = &observed.platform;
    let restart = decision.handled_restart.clone().or_else(|| {
        platform
            .status
            .as_ref()
            .and_then(|s| s.handled_restart.clone())
    });
    let supervisor = decision.supervisor_restart.clone().or_else(|| {
        platform
            .status
            .as_ref()
            .and_then(|s| s.supervision.as_ref())
            .and_then(|s| s.restart_token.clone())
    });
    let config_map = build_config_map(platform)?;
    let marks = RestartMarks {
        requested: restart.as_deref(),
        supervisor: supervisor.as_deref(),
    };
    let deployment = build_deployment(platform, &observed.settings, replicas, marks)?;
    Ok((config_map, deployment))
}

/// A workload that cannot be built is not started (nor changed): the platform is Failed with
/// the reason in its `Ready` condition, and waits for its spec to change.
fn invalid_workload(observed: &Observed, decision: &mut Decision, error: &Error) {
    let message = error.to_string();
    let previous = observed.platform.status.as_ref();
    let already_reported = previous.is_some_and(|s| s.message.as_deref() == Some(&message));
    decision.starts = false;
    decision.replicas = observed.deployment.as_ref().map(|d| d.replicas);
    decision.actions.retain(|a| {
        !matches!(
            a.kind,
            ActionKind::Start | ActionKind::Scale | ActionKind::Restart
        )
    });
    decision.handled_restart = None;
    decision.restart_dependents.clear();
    decision.phase = Phase::Failed;
    decision.ready_reason = Some(error.category());
    if !already_reported {
        decision.actions.push(Action {
            kind: ActionKind::Failed,
            reason: message.clone(),
        });
    }
    decision.message = message;
}

#[cfg(test)]
mod tests;
