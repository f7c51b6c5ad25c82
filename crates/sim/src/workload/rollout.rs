//! Pure: what the simulated deployment controller does for one Deployment — which pods to create
//! and delete (scaling, rolling update, recreate) and the status to report.
//!
//! There are no ReplicaSets in this simulator: the Deployment owns its pods directly, and the
//! `pod-template-hash` label tells the pods of the current template ("new") from the others
//! ("old"). Counts that the real controller keeps on ReplicaSets are derived from the pods.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::pods::{
    TEMPLATE_HASH_LABEL, is_available, is_terminating, ready_since, sort_for_deletion,
    template_hash,
};
use super::timeline::{add, truncate};

/// Default `progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE: i32 = 600;

/// What to do for one Deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The hash of the current template (the `pod-template-hash` of new pods).
    pub hash: String,
    /// How many new pods to create.
    pub create: usize,
    /// Names of the pods to delete, in order.
    pub delete: Vec<String>,
    /// The status to report.
    pub status: DeploymentStatus,
    /// When to look again even if nothing changes (progress deadline, minReadySeconds).
    pub recheck_at: Option<Timestamp>,
}

/// How a rollout replaces pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Recreate,
    RollingUpdate {
        max_surge: i32,
        max_unavailable: i32,
    },
}

/// Resolves an absolute-or-percent value against `replicas`, rounding up or down.
fn resolve(value: Option<&IntOrString>, replicas: i32, round_up: bool) -> i32 {
    match value {
        None => resolve(Some(&IntOrString::String("25%".into())), replicas, round_up),
        Some(IntOrString::Int(n)) => (*n).max(0),
        Some(IntOrString::String(text)) => {
            let percent: f64 = text.trim_end_matches('%').trim().parse().unwrap_or(25.0);
            let exact = percent.max(0.0) * f64::from(replicas) / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
    }
}

/// The Deployment's strategy with maxSurge rounded up and maxUnavailable rounded down; both zero
/// becomes maxUnavailable 1, as in Kubernetes.
pub fn strategy(deployment: &Deployment) -> Strategy {
    let spec = deployment.spec.as_ref();
    let replicas = desired_replicas(deployment);
    let strategy = spec.and_then(|s| s.strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return Strategy::Recreate;
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let max_surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), replicas, true);
    let mut max_unavailable = resolve(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        false,
    );
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    Strategy::RollingUpdate {
        max_surge,
        max_unavailable: max_unavailable.min(replicas),
    }
}

pub fn desired_replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Decides the next step for `deployment` given the pods it owns.
pub fn plan(deployment: &Deployment, pods: &[&Pod], now: Timestamp) -> Plan {
    let spec = deployment.spec.clone().unwrap_or_default();
    let replicas = desired_replicas(deployment);
    let hash = template_hash(&spec.template);
    let min_ready = spec.min_ready_seconds.unwrap_or(0).max(0);
    let available = |p: &Pod| is_available(p, min_ready, now);
    let is_new = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TEMPLATE_HASH_LABEL))
            == Some(&hash)
    };
    let active: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| !is_terminating(p))
        .collect();
    let (mut new, mut old): (Vec<&Pod>, Vec<&Pod>) = active.iter().partition(|p| is_new(p));
    sort_for_deletion(&mut new);
    sort_for_deletion(&mut old);
    let old_terminating = pods.iter().any(|p| is_terminating(p) && !is_new(p));

    let mut create = 0usize;
    let mut delete: Vec<&Pod> = Vec::new();
    let wanted = usize::try_from(replicas).unwrap_or(0);
    let paused = spec.paused == Some(true);
    let rollout_strategy = strategy(deployment);
    if !paused {
        if new.len() > wanted {
            delete.extend(&new[..new.len() - wanted]);
        }
        match rollout_strategy {
            _ if old.is_empty() => {
                let may_create =
                    !(matches!(rollout_strategy, Strategy::Recreate) && old_terminating);
                if may_create {
                    create = wanted.saturating_sub(new.len());
                }
            }
            Strategy::Recreate => delete.extend(&old),
            Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            } => {
                let surge = usize::try_from(max_surge).unwrap_or(0);
                let total = new.len() + old.len();
                create = (wanted + surge)
                    .saturating_sub(total)
                    .min(wanted.saturating_sub(new.len()));
                // Like the real controller, a pass that scales up does not also scale down.
                let min_available = if create > 0 {
                    usize::MAX
                } else {
                    usize::try_from(replicas - max_unavailable).unwrap_or(0)
                };
                let new_unavailable = new.iter().filter(|p| !available(p)).count();
                // Old pods that are not available can go without lowering availability, as long
                // as enough pods remain to reach the minimum once the new ones become available.
                let mut cleanup_budget = total
                    .saturating_sub(min_available)
                    .saturating_sub(new_unavailable);
                let mut remaining = Vec::new();
                for pod in &old {
                    if !available(pod) && cleanup_budget > 0 {
                        delete.push(pod);
                        cleanup_budget -= 1;
                    } else {
                        remaining.push(*pod);
                    }
                }
                // Available old pods go while availability stays at or above the minimum.
                let available_now = active.iter().filter(|p| available(p)).count();
                let scale_down = available_now.saturating_sub(min_available);
                delete.extend(remaining.into_iter().take(scale_down));
            }
        }
    }

    let delete_names: Vec<String> = delete
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let kept: Vec<&Pod> = active
        .iter()
        .copied()
        .filter(|p| !delete_names.contains(p.metadata.name.as_ref().unwrap_or(&String::new())))
        .collect();
    let observed = Observed {
        kept: &kept,
        creating: create,
        old_present: pods.iter().any(|p| !is_new(p)),
    };
    let (status, recheck_at) = status(deployment, &observed, &hash, is_new, rollout_strategy, now);
    Plan {
        hash,
        create,
        delete: delete_names,
        status,
        recheck_at,
    }
}

/// The pods after the plan.
#[derive(Clone, Copy)]
struct Observed<'a> {
    /// The observed, non-terminating pods that stay.
    kept: &'a [&'a Pod],
    /// New pods being created: counted as intended replicas, not yet as observed ones.
    creating: usize,
    /// Whether any pod of another template (terminating or not) is still there.
    old_present: bool,
}

/// The status after the plan.
fn status(
    deployment: &Deployment,
    observed: &Observed<'_>,
    hash: &str,
    is_new: impl Fn(&Pod) -> bool,
    strategy: Strategy,
    now: Timestamp,
) -> (DeploymentStatus, Option<Timestamp>) {
    let spec = deployment.spec.clone().unwrap_or_default();
    let desired = desired_replicas(deployment);
    let min_ready = spec.min_ready_seconds.unwrap_or(0).max(0);
    let old_status = deployment.status.clone().unwrap_or_default();
    let now = truncate(now);
    let Observed {
        kept,
        creating,
        old_present,
    } = *observed;

    let replicas = count(kept.len());
    let updated = count(kept.iter().filter(|p| is_new(p)).count());
    let ready = count(kept.iter().filter(|p| ready_since(p).is_some()).count());
    let available = count(
        kept.iter()
            .filter(|p| is_available(p, min_ready, now))
            .count(),
    );
    let intended = replicas + count(creating);
    let unavailable = (intended - available).max(0);
    let nonzero = |n: i32| (n != 0).then_some(n);

    let mut status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: nonzero(replicas),
        updated_replicas: nonzero(updated),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(unavailable),
        terminating_replicas: None,
        collision_count: old_status.collision_count,
        conditions: old_status.conditions.clone(),
    };

    let max_unavailable = match strategy {
        Strategy::RollingUpdate {
            max_unavailable, ..
        } if desired > 0 => max_unavailable,
        _ => 0,
    };
    let minimum = available >= desired - max_unavailable;
    set_condition(
        &mut status,
        condition(
            "Available",
            minimum,
            if minimum {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
            if minimum {
                "Deployment has minimum availability."
            } else {
                "Deployment does not have minimum availability."
            },
            now,
        ),
    );

    // Progressing, following the real controller's rules.
    let name = deployment.metadata.name.as_deref().unwrap_or("");
    let rs_name = format!("{name}-{hash}");
    let deadline = Duration::from_secs(
        u64::try_from(
            spec.progress_deadline_seconds
                .unwrap_or(DEFAULT_PROGRESS_DEADLINE),
        )
        .unwrap_or(600),
    );
    let current = progressing(&old_status).cloned();
    let mut recheck_at = None;
    let new_observed = count(kept.iter().filter(|p| is_new(p)).count());
    // A new "replica set": no pod of this template yet, and either pods of another template
    // or a first creation (no finished rollout on record).
    let starting_rollout = new_observed == 0
        && (old_present
            || creating > 0
                && current
                    .as_ref()
                    .is_none_or(|c| c.reason.as_deref() != Some("NewReplicaSetAvailable")));
    let already_complete = replicas == updated
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable")
        && !starting_rollout;
    let paused = spec.paused == Some(true);
    let complete =
        updated == desired && replicas == desired && available == desired && creating == 0;
    if paused {
        set_condition(
            &mut status,
            condition(
                "Progressing",
                None::<bool>,
                "DeploymentPaused",
                "Deployment is paused",
                now,
            ),
        );
    } else if starting_rollout {
        let mut fresh = condition(
            "Progressing",
            true,
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{rs_name}\""),
            now,
        );
        if let Some(c) = current.as_ref().filter(|c| c.status == "True") {
            fresh.last_transition_time = c.last_transition_time.clone();
        }
        replace_condition(&mut status, fresh);
    } else if !already_complete {
        let made_progress = updated > old_status.updated_replicas.unwrap_or(0)
            || replicas - updated
                < old_status.replicas.unwrap_or(0) - old_status.updated_replicas.unwrap_or(0)
            || ready > old_status.ready_replicas.unwrap_or(0)
            || available > old_status.available_replicas.unwrap_or(0);
        let last_update = current
            .as_ref()
            .and_then(|c| c.last_update_time.as_ref())
            .map(|t| t.0);
        let timed_out = current.as_ref().and_then(|c| c.reason.as_deref())
            == Some("ProgressDeadlineExceeded")
            || last_update.is_some_and(|from| now > add(from, deadline));
        if complete {
            set_condition(
                &mut status,
                condition(
                    "Progressing",
                    true,
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    now,
                ),
            );
        } else if made_progress || current.is_none() {
            let mut fresh = condition(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs_name}\" is progressing."),
                now,
            );
            if let Some(c) = current.as_ref().filter(|c| c.status == "True") {
                fresh.last_transition_time = c.last_transition_time.clone();
            }
            replace_condition(&mut status, fresh);
        } else if timed_out {
            set_condition(
                &mut status,
                condition(
                    "Progressing",
                    false,
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    now,
                ),
            );
        }
    }
    if let Some(c) = progressing(&status)
        && c.status == "True"
        && c.reason.as_deref() != Some("NewReplicaSetAvailable")
        && let Some(from) = c.last_update_time.as_ref()
    {
        recheck_at = Some(add(from.0, deadline + Duration::from_secs(1)));
    }
    // minReadySeconds: look again when a ready pod becomes available.
    let min_ready = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0));
    for pod in kept {
        if let Some(since) = ready_since(pod) {
            let at = add(since, min_ready);
            if at > now {
                recheck_at = Some(recheck_at.map_or(at, |r: Timestamp| r.min(at)));
            }
        }
    }
    (status, recheck_at)
}

fn progressing(status: &DeploymentStatus) -> Option<&DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Progressing")
}

fn condition(
    type_: &str,
    status: impl Into<Option<bool>>,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: match status.into() {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        }
        .to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition: unchanged when status and reason are the same; keeps the transition time
/// when only the reason changes.
fn set_condition(status: &mut DeploymentStatus, mut new: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == new.type_) {
        if existing.status == new.status && existing.reason == new.reason {
            return;
        }
        if existing.status == new.status {
            new.last_transition_time = existing.last_transition_time.clone();
        }
        *existing = new;
    } else {
        conditions.push(new);
    }
}

/// Replaces a condition as given (used for Progressing updates that move `lastUpdateTime`).
fn replace_condition(status: &mut DeploymentStatus, new: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
