//! The decision for one Platform, as a pure function of what was observed: how many replicas its
//! Deployment gets, its phase, which actions are audited and what waits on a timer.
//!
//! The rules, in order:
//! - a platform with a graph error (cycle, missing dependency) is Blocked: nothing is started,
//!   and a platform that already runs is left as it is rather than killed by a bad edge;
//! - a platform that must stop (its spec, its group, its deletion, or any of its dependencies
//!   stopping) scales to zero only once every direct dependent has no pods left, or once
//!   `shutdown.timeoutSeconds` has passed (then with a Warning);
//! - a platform that should run and has not started starts once every dependency is Ready and
//!   its group has a start slot; once started it keeps running when a dependency becomes unready
//!   (reacting to that is supervision's job), and follows `spec.replicas`.

use std::time::Duration;

use crate::crd::{AlertEvent, Phase, SupervisionStatus};

use super::model::{
    Action, ActionKind, AlertLevel, AlertNote, Decision, FinalizerChange, Observed,
    RESTART_ANNOTATION, RESTART_DEPENDENTS_ANNOTATION, StopCause,
};
use super::supervise::{Verdict, detect, supervise};

/// Decides what to do about one platform.
pub fn decide(observed: &Observed) -> Decision {
    let current = observed.deployment.as_ref().map(|d| d.replicas);
    let desired_replicas = observed.platform.spec.replicas;
    let verdict = supervise(observed, &detect(observed));
    let mut decision = Decision {
        replicas: current,
        starts: false,
        finalizer: None,
        phase: Phase::Pending,
        actions: verdict.actions.clone(),
        restart_dependents: Vec::new(),
        handled_restart: None,
        requeue_after: None,
        message: String::new(),
        ready_reason: None,
        degraded_reason: None,
        supervision: verdict.state.clone(),
        supervisor_restart: None,
        alerts: verdict.alerts.clone(),
    };
    let stop_cause = stop_cause(observed, &verdict);

    if let Some(block) = &observed.block {
        decision.phase = Phase::Blocked;
        decision.message = block.clone();
        if previous_phase(observed) != Some(Phase::Blocked) {
            decision
                .actions
                .push(action(ActionKind::Blocked, block.clone()));
        }
    } else if let Some(cause) = &stop_cause {
        decide_stop(observed, cause, &mut decision);
        if let StopCause::Failed(reason) = cause {
            decision.phase = Phase::Failed;
            decision.ready_reason = verdict.failed_reason;
            decision.degraded_reason = verdict.failed_reason;
            decision.message = format!("{reason}; {}", decision.message);
        } else if cause.is_failure()
            && !matches!(
                previous_phase(observed),
                Some(Phase::Stopping | Phase::Stopped)
            )
        {
            let summary = format!("stopped: {}", cause.describe(&observed.key));
            decision.alerts.push(AlertNote {
                event: AlertEvent::DependencyFailed,
                level: AlertLevel::Warning,
                summary,
                evidence: Vec::new(),
            });
        }
    } else {
        decide_run(observed, current, desired_replicas, &mut decision);
        if verdict.restart.is_some() && decision.replicas.is_some_and(|r| r > 0) {
            decision.supervisor_restart = verdict.restart.clone();
            if decision.phase == Phase::Failed {
                // The restart is the answer to the failure: the platform is starting again.
                decision.phase = Phase::Starting;
                decision.actions.retain(|a| a.kind != ActionKind::Failed);
                decision.message = "restarting after a failed health check".to_string();
            }
        }
        note_recovery(&mut decision);
    }
    decision.requeue_after = match (decision.requeue_after, verdict.requeue_after) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };

    decide_finalizer(observed, &mut decision);
    decision
}

/// The stop cause, with supervision's word on failure taking precedence over the topology's
/// (which is computed from the status as cached, one write behind).
fn stop_cause(observed: &Observed, verdict: &Verdict) -> Option<StopCause> {
    match (&observed.stop_cause, &verdict.failed) {
        (Some(StopCause::Failed(_)) | None, Some(reason)) => {
            Some(StopCause::Failed(reason.clone()))
        }
        (Some(StopCause::Failed(_)), None) => None,
        (cause, _) => cause.clone(),
    }
}

/// A platform that failed (or was stopped for a failed dependency) and is Running again: a
/// `Recovered` alert, once.
fn note_recovery(decision: &mut Decision) {
    let Some(state) = decision.supervision.as_mut() else {
        return;
    };
    if decision.phase == Phase::Running && state.awaiting_recovery {
        state.awaiting_recovery = false;
        decision.alerts.push(AlertNote {
            event: AlertEvent::Recovered,
            level: AlertLevel::Info,
            summary: "recovered: Running again".to_string(),
            evidence: Vec::new(),
        });
        if *state == SupervisionStatus::default() {
            decision.supervision = None;
        }
    }
}

fn decide_stop(observed: &Observed, cause: &StopCause, decision: &mut Decision) {
    let stop_reason = cause.describe(&observed.key);
    let running = decision.replicas.is_some_and(|r| r > 0);
    let kind = if cause.is_own() {
        ActionKind::Stop
    } else {
        ActionKind::CascadeStop
    };
    if !running && stop_unrecorded(observed) {
        // Scaled down by an earlier reconcile whose status write (with this entry) did not
        // last, e.g. replaced by a write made from an older copy: the stop is recorded now
        // rather than lost from the audit trail.
        decision.actions.push(action(kind, stop_reason.clone()));
    }
    if running {
        // A platform that fails takes its dependents down first (unless they are to be left
        // running), whether or not the topology, one status write behind, says so yet.
        let failing_cascades = matches!(cause, StopCause::Failed(_))
            && observed.settings.reactions.on_dependency_failed
                == crate::crd::DependencyReaction::StopDependents;
        let waiting_for: Vec<String> = observed
            .dependents
            .iter()
            // Only dependents that stop as well hold this platform's stop.
            .filter(|d| (d.stopping || failing_cascades) && !d.stopped)
            .map(|d| d.key.name.clone())
            .collect();
        let timeout = Duration::from_secs(u64::from(observed.settings.shutdown_timeout_seconds));
        let elapsed = stopping_for(observed);
        if waiting_for.is_empty() {
            decision.replicas = Some(0);
            decision.actions.push(action(kind, stop_reason.clone()));
        } else if elapsed >= timeout {
            decision.replicas = Some(0);
            let note = format!(
                "dependents {} still had pods after {}s; stopping anyway",
                waiting_for.join(", "),
                timeout.as_secs()
            );
            decision
                .actions
                .push(action(ActionKind::ShutdownTimeout, note));
            decision.actions.push(action(kind, stop_reason.clone()));
        } else {
            decision.requeue_after = Some(timeout - elapsed);
            decision.phase = Phase::Stopping;
            decision.message =
                format!("waiting for dependents to stop: {}", waiting_for.join(", "));
            return;
        }
    }
    if observed.pods == 0 {
        decision.phase = Phase::Stopped;
        decision.message = format!("stopped ({stop_reason})");
    } else {
        decision.phase = Phase::Stopping;
        decision.message = format!("stopping ({stop_reason}): {} pods left", observed.pods);
        if matches!(cause, StopCause::Deletion) {
            // Pods that never go away must not hold the deletion forever.
            let timeout =
                Duration::from_secs(u64::from(observed.settings.shutdown_timeout_seconds));
            let elapsed = stopping_for(observed);
            if elapsed < timeout {
                decision.requeue_after = Some(timeout - elapsed);
            }
        }
    }
}

fn decide_run(observed: &Observed, current: Option<i32>, desired: i32, decision: &mut Decision) {
    let unready: Vec<String> = observed
        .dependencies
        .iter()
        .filter(|d| !d.ready)
        .map(|d| d.key.name.clone())
        .collect();
    let started = current.is_some_and(|r| r > 0) || (current == Some(0) && desired == 0);
    if !started {
        if !unready.is_empty() {
            decision.phase = Phase::WaitingForDependencies;
            decision.message = format!("waiting for dependencies: {}", unready.join(", "));
            return;
        }
        if let Some(group) = &observed.group
            && group.max_concurrent_starts > 0
            && group.starting_members.len() >= group.max_concurrent_starts as usize
        {
            decision.phase = Phase::WaitingForDependencies;
            decision.message = format!(
                "waiting for a start slot in group {} ({} starting, at most {})",
                group.key.name,
                group.starting_members.len(),
                group.max_concurrent_starts
            );
            return;
        }
        decision.replicas = Some(desired);
        decision.starts = true;
        let reason = if observed.dependencies.is_empty() {
            "no dependencies".to_string()
        } else {
            "all dependencies Ready".to_string()
        };
        decision.actions.push(action(ActionKind::Start, reason));
    } else if current != Some(desired) {
        decision.replicas = Some(desired);
        let reason = format!("spec.replicas {} → {desired}", current.unwrap_or(0));
        decision.actions.push(action(ActionKind::Scale, reason));
    }
    decide_restart(observed, decision);
    decide_run_phase(observed, desired, &unready, decision);
}

fn decide_restart(observed: &Observed, decision: &mut Decision) {
    let annotations = observed.platform.metadata.annotations.as_ref();
    let Some(request) = annotations.and_then(|a| a.get(RESTART_ANNOTATION)) else {
        return;
    };
    let handled = observed
        .platform
        .status
        .as_ref()
        .and_then(|s| s.handled_restart.as_ref());
    if handled != Some(request) {
        decision.handled_restart = Some(request.clone());
        if !decision.starts {
            decision.actions.push(action(
                ActionKind::Restart,
                format!("restart requested at {request}"),
            ));
        }
        return;
    }
    let cascade = annotations
        .and_then(|a| a.get(RESTART_DEPENDENTS_ANNOTATION))
        .is_some_and(|v| v == "true");
    let rolled = observed
        .deployment
        .as_ref()
        .is_some_and(|d| d.rolled_out() && d.restarted_at.as_ref() == Some(request));
    if cascade && rolled {
        decision.restart_dependents = observed
            .dependents
            .iter()
            .filter(|d| d.restart_request.as_ref() != Some(request))
            .map(|d| d.key.clone())
            .collect();
        if !decision.restart_dependents.is_empty() {
            let names: Vec<&str> = decision
                .restart_dependents
                .iter()
                .map(|k| k.name.as_str())
                .collect();
            let reason = format!(
                "Ready again after restart; restarting dependents {}",
                names.join(", ")
            );
            decision
                .actions
                .push(action(ActionKind::RestartDependents, reason));
        }
    }
}

fn decide_run_phase(
    observed: &Observed,
    desired: i32,
    unready: &[String],
    decision: &mut Decision,
) {
    let deployment = observed.deployment.clone().unwrap_or_default();
    let fresh = decision.starts || deployment.replicas != decision.replicas.unwrap_or(0);
    let ready = !fresh && deployment.ready_replicas >= desired && deployment.rolled_out();
    let was_running = matches!(
        previous_phase(observed),
        Some(Phase::Running | Phase::Degraded)
    );
    decision.phase = if ready {
        Phase::Running
    } else if deployment.progress_deadline_exceeded && !fresh {
        Phase::Failed
    } else if was_running && !decision.starts {
        Phase::Degraded
    } else {
        Phase::Starting
    };
    if decision.phase == Phase::Failed && previous_phase(observed) != Some(Phase::Failed) {
        let reason = "the Deployment exceeded its progress deadline".to_string();
        decision.actions.push(action(ActionKind::Failed, reason));
    }
    decision.message = match decision.phase {
        Phase::Running if unready.is_empty() => format!("{desired}/{desired} replicas ready"),
        Phase::Running => format!("running; dependencies not ready: {}", unready.join(", ")),
        Phase::Degraded => format!(
            "{}/{desired} replicas ready",
            deployment.ready_replicas.min(desired)
        ),
        Phase::Failed => "pods did not become ready within the progress deadline".to_string(),
        _ => format!(
            "starting: {}/{desired} replicas ready",
            if fresh {
                0
            } else {
                deployment.ready_replicas.min(desired)
            }
        ),
    };
}

fn decide_finalizer(observed: &Observed, decision: &mut Decision) {
    let meta = &observed.platform.metadata;
    let has = meta
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|n| n == super::model::FINALIZER));
    let deleting = meta.deletion_timestamp.is_some();
    if deleting {
        let scaled_down = decision.replicas.is_none_or(|r| r == 0);
        let timed_out = stopping_for(observed)
            >= Duration::from_secs(u64::from(observed.settings.shutdown_timeout_seconds));
        if has && scaled_down && (observed.pods == 0 || timed_out) {
            if observed.pods > 0 {
                let note = format!(
                    "{} pods still terminating after the shutdown timeout; deleting anyway",
                    observed.pods
                );
                decision
                    .actions
                    .push(action(ActionKind::ShutdownTimeout, note));
            }
            decision.finalizer = Some(FinalizerChange::Remove);
        }
    } else if !has {
        // Added on first sight rather than at start, to keep the write off the gating path.
        decision.finalizer = Some(FinalizerChange::Add);
    }
}

/// The history shows the platform started and no stop since.
fn stop_unrecorded(observed: &Observed) -> bool {
    let Some(status) = observed.platform.status.as_ref() else {
        return false;
    };
    let last = status.history.iter().rev().find(|h| {
        matches!(
            h.action.as_str(),
            "Start" | "Stop" | "CascadeStop" | "ResourceExceeded" | "CircuitOpen"
        )
    });
    last.is_some_and(|h| h.action == "Start")
}

/// How long the platform has been stopping (zero when it just started to).
fn stopping_for(observed: &Observed) -> Duration {
    let since = observed
        .platform
        .status
        .as_ref()
        .and_then(|s| s.stopping_since.as_ref())
        .map(|t| t.0);
    match since {
        Some(since) if observed.now > since => {
            let span = observed.now.duration_since(since);
            Duration::try_from(span).unwrap_or_default()
        }
        _ => Duration::ZERO,
    }
}

fn previous_phase(observed: &Observed) -> Option<Phase> {
    observed.platform.status.as_ref().and_then(|s| s.phase)
}

fn action(kind: ActionKind, reason: String) -> Action {
    Action { kind, reason }
}

#[cfg(test)]
mod tests;
