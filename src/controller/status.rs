//! The Platform's next status, derived purely from what was observed and decided. Conditions
//! keep their `lastTransitionTime` while their status does not change, so that a reconcile that
//! finds nothing new produces an identical status (and therefore no write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{HISTORY_LIMIT, HistoryEntry, Phase, Platform, PlatformStatus, condition};

use super::model::{
    ActionKind, Decision, Observed, REQUESTED_AT_ANNOTATION, REQUESTED_BY_ANNOTATION,
};

/// The actor recorded for the operator's own decisions.
pub const OPERATOR_ACTOR: &str = "platform-operator";

/// Who an action is recorded for: the REST caller whose request (the platform's
/// `pmp.dev/requestedBy` and `pmp.dev/requestedAt` annotations) came after the last recorded
/// action, for the actions a person asks for; otherwise the operator.
pub fn actor_of(platform: &Platform, kind: ActionKind) -> String {
    let annotations = platform.metadata.annotations.as_ref();
    let requested_by = annotations.and_then(|a| a.get(REQUESTED_BY_ANNOTATION));
    let requested_at = annotations
        .and_then(|a| a.get(REQUESTED_AT_ANNOTATION))
        .and_then(|t| t.parse::<Timestamp>().ok());
    let last_recorded = platform
        .status
        .as_ref()
        .and_then(|s| s.history.last())
        .map(|h| h.time.0);
    match (requested_by, requested_at) {
        (Some(by), Some(at)) if kind.is_requested() && last_recorded.is_none_or(|t| at >= t) => {
            by.clone()
        }
        _ => OPERATOR_ACTOR.to_string(),
    }
}

/// The status after `decision`.
pub fn next_status(observed: &Observed, decision: &Decision) -> PlatformStatus {
    let previous = observed.platform.status.clone().unwrap_or_default();
    let now = observed.now;
    let generation = observed.platform.metadata.generation;
    let phase = decision.phase;
    let desired = observed.platform.spec.replicas;
    let ready_replicas = observed.deployment.as_ref().map_or(0, |d| d.ready_replicas);
    let ready_dependencies = observed.dependencies.iter().filter(|d| d.ready).count();
    let blocked_by: Vec<String> = observed
        .dependencies
        .iter()
        .filter(|d| !d.ready)
        .map(|d| d.key.name.clone())
        .collect();
    let restarted = decision
        .actions
        .iter()
        .any(|a| a.kind == ActionKind::Restart);
    let was = previous.phase;

    let mut conditions = previous.conditions.clone();
    let ready = phase == Phase::Running;
    set_condition(
        &mut conditions,
        condition::READY,
        ready,
        decision.ready_reason.unwrap_or(phase.as_str()),
        &decision.message,
        generation,
        now,
    );
    let (deps_reason, deps_message) = if observed.block.is_some() {
        ("GraphInvalid", decision.message.clone())
    } else if observed.dependencies.is_empty() {
        ("NoDependencies", "no dependencies".to_string())
    } else if blocked_by.is_empty() {
        (
            "AllDependenciesReady",
            "all dependencies are Ready".to_string(),
        )
    } else {
        (
            "DependenciesNotReady",
            format!("not Ready: {}", blocked_by.join(", ")),
        )
    };
    let deps_ready = observed.block.is_none() && blocked_by.is_empty();
    set_condition(
        &mut conditions,
        condition::DEPENDENCIES_READY,
        deps_ready,
        deps_reason,
        &deps_message,
        generation,
        now,
    );
    let rolling = observed
        .deployment
        .as_ref()
        .is_some_and(|d| d.replicas > 0 && !d.rolled_out());
    let progressing = matches!(
        phase,
        Phase::Starting | Phase::Stopping | Phase::WaitingForDependencies
    ) || (phase == Phase::Running && rolling);
    let progress_reason = match phase {
        Phase::Running if rolling => "RollingUpdate",
        Phase::Running | Phase::Stopped => "Stable",
        other => other.as_str(),
    };
    set_condition(
        &mut conditions,
        condition::PROGRESSING,
        progressing,
        progress_reason,
        &decision.message,
        generation,
        now,
    );
    let degraded = matches!(phase, Phase::Degraded | Phase::Failed);
    let degraded_reason = if degraded {
        decision.degraded_reason.unwrap_or(phase.as_str())
    } else {
        "AsDesired"
    };
    set_condition(
        &mut conditions,
        condition::DEGRADED,
        degraded,
        degraded_reason,
        &decision.message,
        generation,
        now,
    );

    let stalled = matches!(phase, Phase::Failed | Phase::Blocked);
    set_condition(
        &mut conditions,
        condition::STALLED,
        stalled,
        if stalled {
            decision.ready_reason.unwrap_or(phase.as_str())
        } else {
            "Progressing"
        },
        if stalled {
            &decision.message
        } else {
            "not stalled"
        },
        generation,
        now,
    );

    let mut history = previous.history.clone();
    history.extend(decision.actions.iter().map(|action| HistoryEntry {
        action: action.kind.as_str().to_string(),
        actor: actor_of(&observed.platform, action.kind),
        reason: action.reason.clone(),
        time: Time(now),
    }));
    if history.len() > HISTORY_LIMIT {
        history.drain(..history.len() - HISTORY_LIMIT);
    }

    PlatformStatus {
        phase: Some(phase),
        conditions,
        observed_generation: generation,
        ready_replicas: Some(ready_replicas),
        ready: Some(format!("{ready_replicas}/{desired}")),
        dependencies: Some(format!(
            "{ready_dependencies}/{}",
            observed.dependencies.len()
        )),
        blocked_by,
        restart_count: Some(previous.restart_count.unwrap_or(0) + i32::from(restarted)),
        last_restart_time: if restarted {
            Some(Time(now))
        } else {
            previous.last_restart_time
        },
        handled_restart: decision
            .handled_restart
            .clone()
            .or(previous.handled_restart),
        started_at: if phase == Phase::Running
            && !matches!(was, Some(Phase::Running | Phase::Degraded))
        {
            Some(Time(now))
        } else {
            previous.started_at
        },
        stopped_at: if phase == Phase::Stopped && was != Some(Phase::Stopped) {
            Some(Time(now))
        } else {
            previous.stopped_at
        },
        stopped_by: match phase {
            Phase::Stopping | Phase::Stopped => observed
                .stop_cause
                .as_ref()
                .map(|c| c.describe(&observed.key)),
            _ => None,
        },
        stopping_since: if phase == Phase::Stopping {
            previous.stopping_since.or(Some(Time(now)))
        } else {
            None
        },
        startup_wave: observed.wave.and_then(|w| i32::try_from(w).ok()),
        message: Some(decision.message.clone()),
        history,
        supervision: decision.supervision.clone(),
        usage_known: observed.usage_known.or(previous.usage_known),
    }
}

/// Sets a condition, keeping `lastTransitionTime` when its status is unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    let last_transition_time = match &existing {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let next = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time,
    };
    match existing {
        Some(c) => *c = next,
        None => conditions.push(next),
    }
}

#[cfg(test)]
mod tests;
