//! The policy table, row by row, and what is detected from pods.

use k8s_openapi::jiff::SignedDuration;

use super::*;
use crate::controller::model::{DependencyState, PodHealth};
use crate::crd::{HistoryEntry, Platform, PlatformStatus};
use crate::fixtures::platform;
use crate::graph::NodeKey;

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid")
}

fn ago(seconds: i64) -> Timestamp {
    now() - SignedDuration::from_secs(seconds)
}

fn with(phase: Phase, supervision: Option<SupervisionStatus>) -> Platform {
    let mut p = platform("a").build();
    p.metadata.generation = Some(1);
    p.status = Some(PlatformStatus {
        phase: Some(phase),
        supervision,
        ..Default::default()
    });
    p
}

fn observed(platform: Platform, pods: Vec<PodHealth>) -> Observed {
    let mut o = Observed::alone(platform, now(), 0);
    o.pod_health = pods;
    o
}

fn crash_looping(name: &str) -> PodHealth {
    PodHealth {
        name: name.into(),
        restarts: 4,
        waiting: Some(("CrashLoopBackOff".into(), "back-off 40s".into())),
        ..Default::default()
    }
}

fn oom_killed(at: Timestamp) -> PodHealth {
    PodHealth {
        name: "a-1".into(),
        ready: true,
        last_terminated: Some(("OOMKilled".into(), Some(at))),
        ..Default::default()
    }
}

fn run(o: &Observed) -> Verdict {
    supervise(o, &detect(o))
}

fn kinds(v: &Verdict) -> Vec<ActionKind> {
    v.actions.iter().map(|a| a.kind).collect()
}

fn events(v: &Verdict) -> Vec<AlertEvent> {
    v.alerts.iter().map(|a| a.event).collect()
}

fn state(v: &Verdict) -> SupervisionStatus {
    v.state.clone().expect("something remembered")
}

fn restarted(times: &[i64]) -> SupervisionStatus {
    SupervisionStatus {
        restarts: times.iter().map(|t| Time(ago(*t))).collect(),
        ..Default::default()
    }
}

#[test]
fn a_failed_health_check_restarts_with_back_off() {
    let o = observed(with(Phase::Running, None), vec![crash_looping("a-1")]);
    let v = run(&o);
    assert_eq!(kinds(&v), [ActionKind::Restart]);
    assert!(
        v.restart
            .as_deref()
            .is_some_and(|t| t.starts_with("supervisor-"))
    );
    let s = state(&v);
    assert_eq!(s.restarts, [Time(now())]);
    assert_eq!(s.restart_token, v.restart);
    assert_eq!(
        s.next_restart_after,
        Some(Time(now() + SignedDuration::from_secs(10))),
        "the first back-off is restartPolicy.backoff.initialSeconds"
    );
    assert_eq!(s.last_failure.expect("recorded").reason, "CrashLoopBackOff");

    // The second restart waits twice as long after it.
    let mut o = observed(
        with(Phase::Running, Some(restarted(&[60]))),
        vec![crash_looping("a-1")],
    );
    o.platform
        .status
        .as_mut()
        .expect("status")
        .supervision
        .as_mut()
        .expect("s")
        .next_restart_after = Some(Time(ago(50)));
    let s = state(&run(&o));
    assert_eq!(s.restarts.len(), 2);
    assert_eq!(
        s.next_restart_after,
        Some(Time(now() + SignedDuration::from_secs(20)))
    );
}

#[test]
fn within_the_back_off_it_waits_and_looks_again_when_it_ends() {
    let mut previous = restarted(&[5]);
    previous.next_restart_after = Some(Time(now() + SignedDuration::from_secs(15)));
    let o = observed(
        with(Phase::Degraded, Some(previous)),
        vec![crash_looping("a-1")],
    );
    let v = run(&o);
    assert!(v.restart.is_none() && v.actions.is_empty());
    assert_eq!(v.requeue_after, Some(Duration::from_secs(15)));
}

#[test]
fn one_restart_too_many_in_the_window_opens_the_circuit() {
    let o = observed(
        with(Phase::Degraded, Some(restarted(&[300, 200, 100]))),
        vec![crash_looping("a-1")],
    );
    let v = run(&o);
    assert_eq!(kinds(&v), [ActionKind::CircuitOpen]);
    assert_eq!(events(&v), [AlertEvent::CircuitOpen, AlertEvent::Failed]);
    assert!(
        v.failed
            .as_deref()
            .is_some_and(|r| r.contains("circuit open"))
    );
    assert_eq!(v.failed_reason, Some("CircuitOpen"));
    let s = state(&v);
    assert_eq!(s.circuit, CircuitState::Open);
    assert_eq!(
        s.cooldown_seconds,
        Some(300),
        "restartPolicy.backoff.maxSeconds"
    );
    assert_eq!(s.failed_generation, Some(1));
    assert!(s.awaiting_recovery);
}

#[test]
fn restarts_older_than_the_window_do_not_count() {
    let o = observed(
        with(Phase::Degraded, Some(restarted(&[900, 800, 700]))),
        vec![crash_looping("a-1")],
    );
    let v = run(&o);
    assert_eq!(kinds(&v), [ActionKind::Restart], "the window is 600 s");
    assert_eq!(state(&v).restarts.len(), 1);
}

#[test]
fn a_failure_explained_by_an_unready_dependency_is_not_restarted() {
    let mut o = observed(with(Phase::Degraded, None), vec![crash_looping("a-1")]);
    o.dependencies = vec![DependencyState {
        key: NodeKey::new("default", "db"),
        ready: false,
    }];
    let v = run(&o);
    assert!(
        v.restart.is_none() && v.actions.is_empty(),
        "{:?}",
        v.actions
    );
    assert!(state(&v).restarts.is_empty(), "no budget spent");
}

#[test]
fn ignored_health_failures_are_only_recorded() {
    let mut o = observed(with(Phase::Degraded, None), vec![crash_looping("a-1")]);
    o.settings.reactions.on_health_check_failed = HealthCheckReaction::Ignore;
    let v = run(&o);
    assert!(v.restart.is_none() && v.actions.is_empty());
    assert_eq!(
        state(&v).last_failure.expect("recorded").kind,
        "HealthCheckFailed"
    );
}

#[test]
fn an_oom_kill_stops_the_platform_by_default() {
    let o = observed(with(Phase::Running, None), vec![oom_killed(ago(3))]);
    let v = run(&o);
    assert_eq!(kinds(&v), [ActionKind::ResourceExceeded]);
    assert_eq!(events(&v), [AlertEvent::ResourceExceeded]);
    assert_eq!(v.failed.as_deref(), Some("ResourceExceeded: OOMKilled"));
    assert_eq!(v.failed_reason, Some("ResourceExceeded"));
    let s = state(&v);
    assert_eq!(s.handled_oom_at, Some(Time(ago(3))));
    assert_eq!(
        s.stopped_for.as_deref(),
        Some("ResourceExceeded: OOMKilled")
    );

    // Stopped, it stays stopped (and failed) until reset.
    let o = observed(with(Phase::Failed, Some(s)), vec![]);
    let v = run(&o);
    assert!(v.actions.is_empty());
    assert_eq!(v.failed.as_deref(), Some("ResourceExceeded: OOMKilled"));
}

#[test]
fn an_oom_kill_restarts_or_is_ignored_as_the_reaction_says() {
    let mut o = observed(with(Phase::Running, None), vec![oom_killed(ago(3))]);
    o.settings.reactions.on_resource_exceeded = ResourceReaction::Restart;
    let v = run(&o);
    assert_eq!(kinds(&v), [ActionKind::Restart]);
    assert!(v.failed.is_none());
    o.settings.reactions.on_resource_exceeded = ResourceReaction::Ignore;
    let v = run(&o);
    assert!(v.actions.is_empty() && v.failed.is_none());
    assert_eq!(state(&v).handled_oom_at, Some(Time(ago(3))), "handled once");
}

#[test]
fn an_oom_kill_already_handled_is_not_handled_again() {
    let previous = SupervisionStatus {
        handled_oom_at: Some(Time(ago(3))),
        ..Default::default()
    };
    let o = observed(
        with(Phase::Running, Some(previous)),
        vec![oom_killed(ago(3))],
    );
    assert!(detect(&o).findings.is_empty());
    assert!(run(&o).actions.is_empty());
}

#[test]
fn errors_a_restart_cannot_fix_are_recorded_not_acted_on() {
    let pod = PodHealth {
        name: "a-1".into(),
        waiting: Some(("ImagePullBackOff".into(), "no such image".into())),
        ..Default::default()
    };
    let o = observed(with(Phase::Starting, None), vec![pod]);
    let v = run(&o);
    assert!(v.actions.is_empty() && v.restart.is_none());
    let failure = state(&v).last_failure.expect("recorded");
    assert_eq!(
        (failure.kind.as_str(), failure.reason.as_str()),
        ("Error", "ImagePullBackOff")
    );
}

fn open(opened_secs_ago: i64, cooldown: u32) -> SupervisionStatus {
    SupervisionStatus {
        circuit: CircuitState::Open,
        opened_at: Some(Time(ago(opened_secs_ago))),
        cooldown_seconds: Some(cooldown),
        failed_generation: Some(1),
        awaiting_recovery: true,
        ..restarted(&[100, 90, 80])
    }
}

#[test]
fn an_open_circuit_waits_for_its_cooldown_then_tries_once() {
    let o = observed(with(Phase::Failed, Some(open(100, 300))), vec![]);
    let v = run(&o);
    assert!(v.failed.is_some());
    assert_eq!(v.requeue_after, Some(Duration::from_secs(200)));

    let o = observed(with(Phase::Failed, Some(open(300, 300))), vec![]);
    let v = run(&o);
    assert_eq!(kinds(&v), [ActionKind::CircuitHalfOpen]);
    assert!(v.failed.is_none(), "the trial runs");
    let s = state(&v);
    assert_eq!(s.circuit, CircuitState::HalfOpen);
    assert_eq!(s.trial_started_at, Some(Time(now())));
}

#[test]
fn a_trial_that_runs_closes_the_circuit_and_one_that_fails_reopens_it_for_longer() {
    let mut trial = open(400, 300);
    trial.circuit = CircuitState::HalfOpen;
    trial.trial_started_at = Some(Time(ago(100)));
    let mut running = with(Phase::Running, Some(trial.clone()));
    running.status.as_mut().expect("status").started_at = Some(Time(ago(30)));
    let v = run(&observed(running.clone(), vec![]));
    assert!(v.actions.is_empty(), "Running for 30 s is not yet proof");
    assert_eq!(
        v.requeue_after,
        Some(Duration::from_secs(60)),
        "90 s of health checks"
    );
    running.status.as_mut().expect("status").started_at = Some(Time(ago(90)));
    let v = run(&observed(running, vec![]));
    assert_eq!(kinds(&v), [ActionKind::CircuitClosed]);
    assert_eq!(events(&v), [AlertEvent::Recovered]);
    assert!(
        v.state.is_none(),
        "counters reset: nothing left to remember"
    );

    let o = observed(
        with(Phase::Starting, Some(trial)),
        vec![crash_looping("a-1")],
    );
    let v = run(&o);
    assert_eq!(kinds(&v), [ActionKind::CircuitOpen]);
    let s = state(&v);
    assert_eq!(s.circuit, CircuitState::Open);
    assert_eq!(s.cooldown_seconds, Some(600), "twice the cooldown");
}

#[test]
fn a_user_restart_request_or_a_new_spec_resets_a_failed_platform() {
    let mut p = with(Phase::Failed, Some(open(10, 300)));
    p.metadata.annotations = Some([(RESTART_ANNOTATION.to_string(), "r1".to_string())].into());
    let v = run(&observed(p.clone(), vec![]));
    assert_eq!(kinds(&v), [ActionKind::CircuitReset]);
    assert!(v.failed.is_none());
    let s = state(&v);
    assert_eq!((s.circuit, s.restarts.len()), (CircuitState::Closed, 0));
    assert_eq!(s.reset_by.as_deref(), Some("r1"));

    p.metadata.annotations = None;
    p.metadata.generation = Some(2);
    let v = run(&observed(p, vec![]));
    assert_eq!(kinds(&v), [ActionKind::CircuitReset]);
    assert!(v.actions[0].reason.contains("spec changed"));
}

#[test]
fn a_stopped_platform_is_not_supervised_and_a_cascade_from_a_failure_awaits_recovery() {
    let mut o = observed(
        with(Phase::Stopped, Some(open(10, 300))),
        vec![crash_looping("a-1")],
    );
    o.stop_cause = Some(StopCause::Spec);
    let v = run(&o);
    assert!(v.actions.is_empty() && v.failed.is_none());
    assert!(v.state.is_none(), "a clean slate: {:?}", v.state);

    let mut o = observed(with(Phase::Stopped, None), vec![]);
    o.stop_cause = Some(StopCause::Dependency {
        dependency: NodeKey::new("default", "db"),
        cause: Box::new(StopCause::Failed("circuit open".into())),
    });
    let v = run(&o);
    assert!(v.actions.is_empty());
    assert!(state(&v).awaiting_recovery);
}

#[test]
fn a_pod_unready_past_the_threshold_is_a_failed_health_check() {
    // failureThreshold 3 × intervalSeconds 30 = 90 s.
    let unready = |since: i64| PodHealth {
        name: "a-1".into(),
        ready: false,
        ready_changed_at: Some(ago(since)),
        ..Default::default()
    };
    let o = observed(with(Phase::Degraded, None), vec![unready(60)]);
    let d = detect(&o);
    assert!(d.findings.is_empty());
    assert_eq!(d.look_again_at, Some(now() + SignedDuration::from_secs(30)));
    let o = observed(with(Phase::Degraded, None), vec![unready(90)]);
    let d = detect(&o);
    assert_eq!(d.findings[0].reason, "NotReady");
    assert_eq!(d.findings[0].kind, FindingKind::HealthCheckFailed);
}

#[test]
fn a_start_not_ready_within_the_startup_timeout_is_a_failed_health_check() {
    let mut p = with(Phase::Starting, None);
    p.status.as_mut().expect("status").history = vec![HistoryEntry {
        action: "Start".into(),
        actor: "platform-operator".into(),
        reason: "no dependencies".into(),
        time: Time(ago(61)),
    }];
    let d = detect(&observed(p.clone(), vec![]));
    assert_eq!(d.findings[0].reason, "StartupTimeout");
    p.status.as_mut().expect("status").history[0].time = Time(ago(30));
    let d = detect(&observed(p, vec![]));
    assert!(d.findings.is_empty());
    assert_eq!(d.look_again_at, Some(now() + SignedDuration::from_secs(30)));
}

#[test]
fn many_pods_with_the_same_trouble_are_one_finding() {
    let o = observed(
        with(Phase::Degraded, None),
        vec![
            crash_looping("a-1"),
            crash_looping("a-2"),
            crash_looping("a-3"),
        ],
    );
    let d = detect(&o);
    assert_eq!(d.findings.len(), 1);
    assert_eq!(d.findings[0].evidence.len(), 3);
    assert_eq!(kinds(&run(&o)), [ActionKind::Restart], "one decision");
}
