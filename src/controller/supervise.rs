//! Runtime supervision, as pure functions of one snapshot: [`detect`] turns what the pods and
//! the Deployment show into typed findings (health-check failures, exceeded resources,
//! errors); [`supervise`] decides, from the findings, the platform's supervision memory (in its
//! status) and its effective policy, whether to restart it (with back-off), to open, try or
//! close its circuit, to stop it, or to wait.
//!
//! The policy table:
//!
//! | finding | explained by an unready dependency | reaction | budget left | outcome |
//! |---|---|---|---|---|
//! | health check failed | yes | any | any | wait: fix the cause, not the symptom |
//! | health check failed | no | `Restart` | yes, back-off over | restart (new pod template token) |
//! | health check failed | no | `Restart` | yes, in back-off | wait until the back-off ends |
//! | health check failed | no | `Restart` | no | open the circuit: stop (phase Failed), alert |
//! | health check failed | no | `Ignore` | any | record it |
//! | OOM-killed | no | `Stop` | any | stop (phase Failed), alert |
//! | OOM-killed | no | `Restart` | as for a health check | as for a health check |
//! | OOM-killed | no | `Ignore` | any | record it |
//! | error (image pull, config, scheduling) | any | — | any | record it (a restart cannot help) |
//!
//! and for the circuit: open → after its cooldown, half-open (one trial start); half-open and
//! Running → closed (counters reset, `Recovered` alert); half-open and failing → open again
//! with twice the cooldown (at most an hour). A user restart request, or a new spec, resets an
//! open circuit or a stop for exceeded resources. A platform stopped for any other reason is
//! not supervised. What the dependents of a failed platform do is the stop cascade's business
//! (see [`super::stopping`]): they stop, and start again in order once it is Ready.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{
    AlertEvent, CircuitState, FailureRecord, HealthCheckReaction, Phase, ResourceReaction,
    SupervisionStatus,
};

use super::model::{
    Action, ActionKind, AlertLevel, AlertNote, Observed, RESTART_ANNOTATION, StopCause,
};

/// The longest an open circuit stays open before a trial.
const MAX_COOLDOWN_SECONDS: u32 = 3600;

/// What kind of trouble a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    HealthCheckFailed,
    ResourceExceeded,
    /// Something restarting cannot fix (an image that cannot be pulled, a missing Secret, no
    /// node to run on).
    Error,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::HealthCheckFailed => "HealthCheckFailed",
            FindingKind::ResourceExceeded => "ResourceExceeded",
            FindingKind::Error => "Error",
        }
    }
}

/// One kind of trouble, with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: FindingKind,
    /// `CrashLoopBackOff`, `NotReady`, `StartupTimeout`, `ProgressDeadlineExceeded`,
    /// `OOMKilled`, `ImagePullBackOff`, ...
    pub reason: String,
    pub evidence: Vec<String>,
    /// When it began, if known.
    pub since: Option<Timestamp>,
}

/// Findings, and the earliest time at which a finding not yet due (a pod unready for less
/// than the threshold, a start within its timeout) would become one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detection {
    pub findings: Vec<Finding>,
    pub look_again_at: Option<Timestamp>,
}

const ERROR_REASONS: [&str; 5] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What the pods and the Deployment show now.
pub fn detect(observed: &Observed) -> Detection {
    let mut detection = Detection::default();
    let now = observed.now;
    let phase = observed.platform.status.as_ref().and_then(|s| s.phase);
    let settings = &observed.settings;
    let unready_limit = Duration::from_secs(u64::from(
        settings.failure_threshold * settings.health_interval_seconds,
    ));
    let was_running = matches!(phase, Some(Phase::Running | Phase::Degraded));
    let handled_oom = supervision_of(observed)
        .handled_oom_at
        .as_ref()
        .map(|t| t.0);
    for pod in &observed.pod_health {
        if let Some((reason, message)) = &pod.waiting {
            let line = format!("pod {}: {reason}: {message}", pod.name);
            let oom_killed = pod
                .last_terminated
                .as_ref()
                .is_some_and(|(reason, _)| reason == "OOMKilled");
            // A container OOM-killed over and over is a resource problem, which its own
            // reaction answers: not also a failed health check.
            if reason == "CrashLoopBackOff" && !oom_killed {
                let line = format!("{line} ({} restarts)", pod.restarts);
                push(
                    &mut detection,
                    FindingKind::HealthCheckFailed,
                    reason,
                    line,
                    None,
                );
            } else if ERROR_REASONS.contains(&reason.as_str()) {
                push(&mut detection, FindingKind::Error, reason, line, None);
            }
        }
        if let Some((reason, Some(ended))) = &pod.last_terminated
            && reason == "OOMKilled"
            && handled_oom.is_none_or(|handled| *ended > handled)
        {
            let line = format!("pod {}: a container was OOM-killed at {ended}", pod.name);
            push(
                &mut detection,
                FindingKind::ResourceExceeded,
                "OOMKilled",
                line,
                Some(*ended),
            );
        }
        if let Some(message) = &pod.unschedulable {
            let line = format!("pod {}: unschedulable: {message}", pod.name);
            push(
                &mut detection,
                FindingKind::Error,
                "Unschedulable",
                line,
                None,
            );
        }
        if was_running
            && !pod.ready
            && pod.waiting.is_none()
            && let Some(since) = pod.ready_changed_at
        {
            let due = add(since, unready_limit);
            if now >= due {
                let line = format!(
                    "pod {}: not Ready since {since} (threshold {}s = failureThreshold × intervalSeconds)",
                    pod.name,
                    unready_limit.as_secs()
                );
                push(
                    &mut detection,
                    FindingKind::HealthCheckFailed,
                    "NotReady",
                    line,
                    Some(since),
                );
            } else {
                earliest(&mut detection.look_again_at, due);
            }
        }
    }
    if let Some(sample) = &observed.usage
        && super::usage::exceeds(sample, observed.usage_threshold)
    {
        let reason = if sample.memory_fraction.unwrap_or(0.0) >= observed.usage_threshold {
            "MemoryAboveThreshold"
        } else {
            "CpuAboveThreshold"
        };
        let line = format!(
            "{} (threshold {:.0}%)",
            super::usage::describe(sample),
            observed.usage_threshold * 100.0
        );
        push(
            &mut detection,
            FindingKind::ResourceExceeded,
            reason,
            line,
            None,
        );
    }
    if observed
        .deployment
        .as_ref()
        .is_some_and(|d| d.progress_deadline_exceeded && d.replicas > 0)
    {
        push(
            &mut detection,
            FindingKind::HealthCheckFailed,
            "ProgressDeadlineExceeded",
            "the Deployment exceeded its progress deadline".to_string(),
            None,
        );
    }
    if phase == Some(Phase::Starting)
        && let Some(started) = last_start(observed)
    {
        let timeout = Duration::from_secs(u64::from(settings.startup_timeout_seconds));
        let due = add(started, timeout);
        if now >= due {
            let line = format!(
                "not Ready {}s after the start at {started} (startupTimeoutSeconds)",
                timeout.as_secs()
            );
            push(
                &mut detection,
                FindingKind::HealthCheckFailed,
                "StartupTimeout",
                line,
                Some(started),
            );
        } else {
            earliest(&mut detection.look_again_at, due);
        }
    }
    // What the kubelet and the scheduler said about the pods backs every finding.
    for finding in &mut detection.findings {
        for warning in &observed.warnings {
            if finding.evidence.len() < 10 {
                finding.evidence.push(warning.describe());
            }
        }
    }
    detection
}

fn push(
    detection: &mut Detection,
    kind: FindingKind,
    reason: &str,
    line: String,
    since: Option<Timestamp>,
) {
    match detection
        .findings
        .iter_mut()
        .find(|f| f.kind == kind && f.reason == reason)
    {
        // Many pods with the same trouble are one finding (coalesced), with all the evidence.
        Some(finding) => {
            if finding.evidence.len() < 10 {
                finding.evidence.push(line);
            }
        }
        None => detection.findings.push(Finding {
            kind,
            reason: reason.to_string(),
            evidence: vec![line],
            since,
        }),
    }
}

fn earliest(slot: &mut Option<Timestamp>, at: Timestamp) {
    if slot.is_none_or(|current| at < current) {
        *slot = Some(at);
    }
}

fn add(at: Timestamp, span: Duration) -> Timestamp {
    at.checked_add(span).unwrap_or(at)
}

/// When the platform was last started or restarted (from its history).
fn last_start(observed: &Observed) -> Option<Timestamp> {
    let status = observed.platform.status.as_ref()?;
    let from_history = status
        .history
        .iter()
        .rev()
        .find(|h| matches!(h.action.as_str(), "Start" | "Restart" | "CircuitHalfOpen"))
        .map(|h| h.time.0);
    let trial = status
        .supervision
        .as_ref()
        .and_then(|s| s.trial_started_at.as_ref())
        .map(|t| t.0);
    from_history.max(trial)
}

fn supervision_of(observed: &Observed) -> SupervisionStatus {
    observed
        .platform
        .status
        .as_ref()
        .and_then(|s| s.supervision.clone())
        .unwrap_or_default()
}

/// What supervision decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// The memory to keep (`None` when there is nothing to remember).
    pub state: Option<SupervisionStatus>,
    /// The platform must be stopped as failed, for this reason.
    pub failed: Option<String>,
    /// The `Ready` reason while failed (`CircuitOpen`, `ResourceExceeded`).
    pub failed_reason: Option<&'static str>,
    /// Restart now with this token.
    pub restart: Option<String>,
    pub actions: Vec<Action>,
    pub alerts: Vec<AlertNote>,
    pub requeue_after: Option<Duration>,
}

/// Decides what supervision does about `observed`, given what [`detect`] found.
pub fn supervise(observed: &Observed, detection: &Detection) -> Verdict {
    let previous = supervision_of(observed);
    let mut state = previous.clone();
    let mut verdict = Verdict::default();
    let now = observed.now;
    let generation = observed.platform.metadata.generation;
    let budget = observed.settings.restart;

    match &observed.stop_cause {
        Some(StopCause::Failed(_)) | None => {}
        Some(cause @ StopCause::Dependency { .. }) => {
            // Stopped because of a dependency: nothing to supervise here, and nothing of its
            // own budget is spent; if the dependency failed, it recovers when it runs again.
            state.awaiting_recovery |= cause.is_failure();
            verdict.state = keep(state);
            return verdict;
        }
        Some(_) => {
            // Stopped on purpose: it starts again with a clean slate.
            verdict.state = keep(SupervisionStatus {
                last_failure: previous.last_failure.clone(),
                ..Default::default()
            });
            return verdict;
        }
    }
    let failed = state.circuit != CircuitState::Closed || state.stopped_for.is_some();
    if failed {
        let spec_changed = state
            .failed_generation
            .is_some_and(|g| generation.is_some_and(|now| now > g));
        let reset_request = user_reset(observed, &state);
        if spec_changed || reset_request.is_some() {
            let why = match &reset_request {
                Some(request) => format!("restart requested at {request}"),
                None => "the spec changed".to_string(),
            };
            verdict.actions.push(action(
                ActionKind::CircuitReset,
                format!("supervision reset: {why}"),
            ));
            state = SupervisionStatus {
                last_failure: previous.last_failure.clone(),
                reset_by: reset_request.or(previous.reset_by.clone()),
                awaiting_recovery: true,
                ..Default::default()
            };
            verdict.state = keep(state);
            return verdict;
        }
    }
    let window = Duration::from_secs(u64::from(budget.window_seconds));
    state.restarts.retain(|t| add(t.0, window) > now);
    record_failure(&mut state, detection, now);

    if let Some(reason) = state.stopped_for.clone() {
        verdict.failed = Some(reason);
        verdict.failed_reason = Some("ResourceExceeded");
        verdict.state = keep(state);
        return verdict;
    }
    match state.circuit {
        CircuitState::Open => {
            let cooldown = Duration::from_secs(u64::from(state.cooldown_seconds.unwrap_or(0)));
            let opened = state.opened_at.as_ref().map_or(now, |t| t.0);
            let trial_at = add(opened, cooldown);
            if now >= trial_at {
                state.circuit = CircuitState::HalfOpen;
                state.trial_started_at = Some(Time(now));
                verdict.actions.push(action(
                    ActionKind::CircuitHalfOpen,
                    format!("cooldown of {}s over: one trial start", cooldown.as_secs()),
                ));
            } else {
                verdict.failed = Some(open_reason(&state));
                verdict.failed_reason = Some("CircuitOpen");
                verdict.requeue_after = Some(until(now, trial_at));
            }
            verdict.state = keep(state);
            return verdict;
        }
        CircuitState::HalfOpen => {
            let failing = detection
                .findings
                .iter()
                .any(|f| f.kind != FindingKind::Error);
            // A trial succeeds once it has run for as long as the health check needs to call a
            // platform unhealthy: a crash loop is Running for a moment between crashes.
            let settings = &observed.settings;
            let stable = Duration::from_secs(u64::from(
                settings.failure_threshold * settings.health_interval_seconds,
            ));
            let status = observed.platform.status.as_ref();
            let running_since = status
                .filter(|s| s.phase == Some(Phase::Running))
                .and_then(|s| s.started_at.as_ref())
                .map(|t| t.0);
            let running = running_since.is_some_and(|since| now >= add(since, stable));
            if let Some(since) = running_since
                && !running
                && !failing
            {
                verdict.requeue_after = Some(until(now, add(since, stable)));
            }
            if failing && dependencies_ready(observed) {
                let cooldown = state
                    .cooldown_seconds
                    .unwrap_or(budget.backoff_max_seconds)
                    .saturating_mul(2)
                    .min(MAX_COOLDOWN_SECONDS);
                open_circuit(
                    &mut state,
                    &mut verdict,
                    observed,
                    cooldown,
                    "the trial start failed",
                );
            } else if running && !failing {
                state = SupervisionStatus {
                    last_failure: state.last_failure.clone(),
                    ..Default::default()
                };
                verdict.actions.push(action(
                    ActionKind::CircuitClosed,
                    "the trial start is Running: circuit closed, restart budget reset".to_string(),
                ));
                verdict.alerts.push(alert(
                    AlertEvent::Recovered,
                    AlertLevel::Info,
                    "recovered: the trial start after the cooldown is Running".to_string(),
                    Vec::new(),
                ));
            }
            verdict.state = keep(state);
            return verdict;
        }
        CircuitState::Closed => {}
    }

    let explained = !dependencies_ready(observed);
    let reactions = observed.settings.reactions;
    let mut wants_restart: Option<&Finding> = None;
    for finding in &detection.findings {
        match finding.kind {
            FindingKind::Error => {}
            _ if explained => {}
            FindingKind::ResourceExceeded => {
                state.handled_oom_at = finding.since.map(Time).or(state.handled_oom_at);
                match reactions.on_resource_exceeded {
                    ResourceReaction::Stop => {
                        let reason = format!("ResourceExceeded: {}", finding.reason);
                        state.stopped_for = Some(reason.clone());
                        state.failed_generation = generation;
                        state.awaiting_recovery = true;
                        verdict.actions.push(action(
                            ActionKind::ResourceExceeded,
                            format!(
                                "{}; stopping it (onResourceExceeded: Stop)",
                                finding.evidence.join("; ")
                            ),
                        ));
                        verdict.alerts.push(alert(
                            AlertEvent::ResourceExceeded,
                            AlertLevel::Critical,
                            format!("stopped: {}", finding.reason),
                            finding.evidence.clone(),
                        ));
                        verdict.failed = Some(reason);
                        verdict.failed_reason = Some("ResourceExceeded");
                        verdict.state = keep(state);
                        return verdict;
                    }
                    ResourceReaction::Restart => wants_restart = wants_restart.or(Some(finding)),
                    ResourceReaction::Ignore => {}
                }
            }
            FindingKind::HealthCheckFailed => {
                if reactions.on_health_check_failed == HealthCheckReaction::Restart {
                    wants_restart = wants_restart.or(Some(finding));
                }
            }
        }
    }
    if let Some(finding) = wants_restart {
        restart_or_trip(&mut state, &mut verdict, observed, finding);
    }
    if let Some(at) = detection.look_again_at {
        let after = until(now, at);
        verdict.requeue_after = Some(verdict.requeue_after.map_or(after, |r| r.min(after)));
    }
    verdict.state = keep(state);
    verdict
}

fn restart_or_trip(
    state: &mut SupervisionStatus,
    verdict: &mut Verdict,
    observed: &Observed,
    finding: &Finding,
) {
    let now = observed.now;
    let budget = observed.settings.restart;
    if state.restarts.len() >= budget.max_attempts as usize {
        let why = format!(
            "{} restarts in {}s did not help: {}",
            state.restarts.len(),
            budget.window_seconds,
            finding.reason
        );
        open_circuit(state, verdict, observed, budget.backoff_max_seconds, &why);
        return;
    }
    if let Some(next) = state.next_restart_after.as_ref().map(|t| t.0)
        && now < next
    {
        verdict.requeue_after = Some(until(now, next));
        return;
    }
    let token = format!("supervisor-{now}");
    state.restarts.push(Time(now));
    state.restart_token = Some(token.clone());
    let done = state.restarts.len() as u32;
    let delay = budget
        .backoff_initial_seconds
        .saturating_mul(1u32 << (done - 1).min(16))
        .min(budget.backoff_max_seconds);
    let next = add(now, Duration::from_secs(u64::from(delay)));
    state.next_restart_after = Some(Time(next));
    verdict.restart = Some(token);
    verdict.actions.push(action(
        ActionKind::Restart,
        format!(
            "health check failed ({}): {}; restart {done} of {} in {}s, next no sooner than {delay}s",
            finding.reason,
            finding.evidence.join("; "),
            budget.max_attempts,
            budget.window_seconds
        ),
    ));
    verdict.alerts.push(alert(
        AlertEvent::Restarted,
        AlertLevel::Warning,
        format!("restarted: {}", finding.reason),
        finding.evidence.clone(),
    ));
}

fn open_circuit(
    state: &mut SupervisionStatus,
    verdict: &mut Verdict,
    observed: &Observed,
    cooldown_seconds: u32,
    why: &str,
) {
    state.circuit = CircuitState::Open;
    state.opened_at = Some(Time(observed.now));
    state.cooldown_seconds = Some(cooldown_seconds);
    state.trial_started_at = None;
    state.failed_generation = observed.platform.metadata.generation;
    state.awaiting_recovery = true;
    let reason = format!("{why}; circuit open for {cooldown_seconds}s");
    let evidence = state
        .last_failure
        .as_ref()
        .map(|f| f.evidence.clone())
        .unwrap_or_default();
    verdict
        .actions
        .push(action(ActionKind::CircuitOpen, reason.clone()));
    verdict.alerts.push(alert(
        AlertEvent::CircuitOpen,
        AlertLevel::Critical,
        reason.clone(),
        evidence.clone(),
    ));
    verdict.alerts.push(alert(
        AlertEvent::Failed,
        AlertLevel::Critical,
        format!("failed: {why}"),
        evidence,
    ));
    verdict.failed = Some(open_reason(state));
    verdict.failed_reason = Some("CircuitOpen");
    verdict.requeue_after = Some(Duration::from_secs(u64::from(cooldown_seconds)));
}

/// Why supervision keeps the platform stopped, if it does (as its status remembers it).
pub fn failed_reason(state: &SupervisionStatus) -> Option<String> {
    if let Some(reason) = &state.stopped_for {
        return Some(reason.clone());
    }
    (state.circuit == CircuitState::Open).then(|| open_reason(state))
}

/// Whether the platform runs a half-open trial (its dependents wait for the verdict).
pub fn on_trial(state: &SupervisionStatus) -> bool {
    state.circuit == CircuitState::HalfOpen
}

fn open_reason(state: &SupervisionStatus) -> String {
    let failure = state
        .last_failure
        .as_ref()
        .map_or("repeated failures".to_string(), |f| f.reason.clone());
    format!("circuit open after {failure}")
}

/// Remembers the most pressing finding, keeping when it began while it goes on.
fn record_failure(state: &mut SupervisionStatus, detection: &Detection, now: Timestamp) {
    // The most specific cause first: an OOM kill also shows as a crash loop.
    let rank = |f: &&Finding| match f.kind {
        FindingKind::ResourceExceeded => 0,
        FindingKind::HealthCheckFailed => 1,
        FindingKind::Error => 2,
    };
    let Some(finding) = detection.findings.iter().min_by_key(rank) else {
        return;
    };
    let since = match &state.last_failure {
        Some(last) if last.reason == finding.reason && last.kind == finding.kind.as_str() => {
            last.since.clone()
        }
        _ => Time(finding.since.unwrap_or(now)),
    };
    state.last_failure = Some(FailureRecord {
        kind: finding.kind.as_str().to_string(),
        reason: finding.reason.clone(),
        evidence: finding.evidence.clone(),
        since,
    });
}

/// A restart request of the user's that the operator has not carried out yet.
fn user_reset(observed: &Observed, state: &SupervisionStatus) -> Option<String> {
    let request = observed
        .platform
        .metadata
        .annotations
        .as_ref()?
        .get(RESTART_ANNOTATION)?;
    let handled = observed
        .platform
        .status
        .as_ref()
        .and_then(|s| s.handled_restart.as_ref());
    (handled != Some(request) && state.reset_by.as_ref() != Some(request)).then(|| request.clone())
}

fn dependencies_ready(observed: &Observed) -> bool {
    observed.dependencies.iter().all(|d| d.ready)
}

/// Nothing worth a status field is `None`.
fn keep(state: SupervisionStatus) -> Option<SupervisionStatus> {
    (state != SupervisionStatus::default()).then_some(state)
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn action(kind: ActionKind, reason: String) -> Action {
    Action { kind, reason }
}

fn alert(
    event: AlertEvent,
    level: AlertLevel,
    summary: String,
    evidence: Vec<String>,
) -> AlertNote {
    AlertNote {
        event,
        level,
        summary,
        evidence,
    }
}

#[cfg(test)]
mod tests;
