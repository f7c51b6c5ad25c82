use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::workload::script::PodScript;

fn t0() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

fn at(seconds: f64) -> Timestamp {
    add(t0(), Duration::from_secs_f64(seconds))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn running(script: &PodScript, now: f64) -> Snapshot {
    simulate(
        script,
        Anchors {
            admitted: t0(),
            stopping: None,
        },
        at(now),
        None,
    )
    .0
}

fn kinds(happenings: &[Timed]) -> Vec<Happening> {
    happenings.iter().map(|h| h.what.clone()).collect()
}

#[test]
fn backoff_doubles_from_10s_to_300s() {
    let sequence: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(sequence, [10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
}

#[test]
fn a_default_pod_runs_at_once_and_is_ready_after_one_second() {
    let script = PodScript::default();
    let early = running(&script, 0.5);
    assert_eq!(early.state, State::Running { started_at: t0() });
    assert!(early.started_once);
    assert!(!early.ready);
    assert_eq!(early.next_transition, Some(at(1.0)));

    let (later, happenings) = simulate(
        &script,
        Anchors {
            admitted: t0(),
            stopping: None,
        },
        at(5.0),
        None,
    );
    assert!(later.ready);
    assert_eq!(later.ready_changed_at, at(1.0));
    assert_eq!(later.restart_count, 0);
    assert_eq!(later.next_transition, None);
    assert_eq!(
        kinds(&happenings),
        [
            Happening::Scheduled,
            Happening::Pulled,
            Happening::Created,
            Happening::Started
        ]
    );
}

#[test]
fn start_after_keeps_the_pod_pending() {
    let script = PodScript {
        start_after: secs(3),
        ..PodScript::default()
    };
    let pending = running(&script, 2.0);
    assert!(!pending.started_once);
    assert_eq!(
        pending.state,
        State::Waiting {
            reason: "ContainerCreating".into(),
            backoff: None
        }
    );
    assert_eq!(pending.next_transition, Some(at(3.0)));
    assert!(running(&script, 4.5).ready);
}

#[test]
fn crash_after_loops_with_growing_backoff_and_restart_count() {
    let script = PodScript {
        crash_after: Some(secs(5)),
        ..PodScript::default()
    };
    // Runs: [0,5) back-off 10 → [15,20) back-off 20 → [40,45) back-off 40 → [85,90) …
    let first_crash = running(&script, 6.0);
    assert_eq!(
        first_crash.state,
        State::Waiting {
            reason: "CrashLoopBackOff".into(),
            backoff: Some(secs(10))
        }
    );
    let last = first_crash.last_state.clone().unwrap();
    assert_eq!((last.reason.as_str(), last.exit_code), ("Error", 1));
    assert_eq!(last.finished_at, at(5.0));
    assert_eq!(first_crash.restart_count, 0);
    assert!(!first_crash.ready);
    assert_eq!(first_crash.ready_changed_at, at(5.0));
    assert_eq!(first_crash.next_transition, Some(at(15.0)));

    let second_run = running(&script, 16.5);
    assert_eq!(
        second_run.state,
        State::Running {
            started_at: at(15.0)
        }
    );
    assert_eq!(second_run.restart_count, 1);
    assert!(second_run.ready);
    assert_eq!(second_run.last_state.unwrap().finished_at, at(5.0));

    let second_backoff = running(&script, 30.0);
    assert_eq!(
        second_backoff.state,
        State::Waiting {
            reason: "CrashLoopBackOff".into(),
            backoff: Some(secs(20))
        }
    );
    assert_eq!(running(&script, 41.0).restart_count, 2);
    assert_eq!(running(&script, 86.0).restart_count, 3);
    // Long afterwards the back-off is capped at 300 s.
    let late = running(&script, 5000.0);
    assert!(late.restart_count >= 14, "{}", late.restart_count);
}

#[test]
fn oom_after_shows_oomkilled_with_exit_code_137() {
    let script = PodScript {
        oom_after: Some(secs(3)),
        ..PodScript::default()
    };
    let (snapshot, happenings) = simulate(
        &script,
        Anchors {
            admitted: t0(),
            stopping: None,
        },
        at(4.0),
        None,
    );
    let last = snapshot.last_state.unwrap();
    assert_eq!((last.reason.as_str(), last.exit_code), ("OOMKilled", 137));
    assert!(kinds(&happenings).contains(&Happening::OomKilled));
    assert!(kinds(&happenings).contains(&Happening::BackOff(secs(10))));
}

#[test]
fn recover_after_stops_the_crashes() {
    let script = PodScript {
        crash_after: Some(secs(5)),
        recover_after: Some(secs(20)),
        ..PodScript::default()
    };
    // First failure at 5 → healthy from 25. The run started at 15 still crashes at 20; the run
    // started at 40 does not.
    let recovered = running(&script, 1000.0);
    assert_eq!(
        recovered.state,
        State::Running {
            started_at: at(40.0)
        }
    );
    assert_eq!(recovered.restart_count, 2);
    assert!(recovered.ready);
    assert_eq!(recovered.ready_changed_at, at(41.0));
    assert_eq!(recovered.next_transition, None);
}

#[test]
fn unready_after_fails_the_probe_every_period_then_recovers() {
    let script = PodScript {
        unready_after: Some(secs(10)),
        recover_after: Some(secs(25)),
        ..PodScript::default()
    };
    // Ready at 1, unready 11..36, probe failures at 11, 21, 31.
    let ready = running(&script, 5.0);
    assert!(ready.ready);
    assert_eq!(ready.next_transition, Some(at(11.0)));

    let (unready, happenings) = simulate(
        &script,
        Anchors {
            admitted: t0(),
            stopping: None,
        },
        at(22.0),
        Some(at(5.0)),
    );
    assert!(!unready.ready);
    assert_eq!(unready.ready_changed_at, at(11.0));
    assert_eq!(unready.state, State::Running { started_at: t0() });
    let failures: Vec<Timestamp> = happenings
        .iter()
        .filter(|h| h.what == Happening::ReadinessProbeFailed)
        .map(|h| h.at)
        .collect();
    assert_eq!(failures, [at(11.0), at(21.0)]);
    assert_eq!(unready.next_transition, Some(at(31.0)));

    let again = running(&script, 40.0);
    assert!(again.ready);
    assert_eq!(again.ready_changed_at, at(36.0));
    assert_eq!(again.next_transition, None);
}

#[test]
fn unready_without_recovery_stays_unready() {
    let script = PodScript {
        unready_after: Some(secs(2)),
        probe_period: secs(5),
        ..PodScript::default()
    };
    let snapshot = running(&script, 3600.0);
    assert!(!snapshot.ready);
    assert_eq!(snapshot.ready_changed_at, at(3.0));
    assert_eq!(snapshot.next_transition, Some(at(3603.0)));
}

#[test]
fn never_ready_runs_but_is_never_ready() {
    let script = PodScript {
        never_ready: true,
        ..PodScript::default()
    };
    let snapshot = running(&script, 100.0);
    assert_eq!(snapshot.state, State::Running { started_at: t0() });
    assert!(!snapshot.ready);
    assert_eq!(snapshot.ready_changed_at, t0());
    assert_eq!(snapshot.next_transition, None);
}

#[test]
fn fail_start_waits_with_its_reason_until_recovery() {
    let script = PodScript {
        fail_start: Some("ImagePullBackOff".into()),
        recover_after: Some(secs(30)),
        ..PodScript::default()
    };
    let (stuck, happenings) = simulate(
        &script,
        Anchors {
            admitted: t0(),
            stopping: None,
        },
        at(10.0),
        None,
    );
    assert!(!stuck.started_once);
    assert_eq!(
        stuck.state,
        State::Waiting {
            reason: "ImagePullBackOff".into(),
            backoff: None
        }
    );
    assert!(kinds(&happenings).contains(&Happening::FailedStart("ImagePullBackOff".into())));
    assert_eq!(stuck.next_transition, Some(at(30.0)));
    let started = running(&script, 31.5);
    assert!(started.ready);
    assert_eq!(started.restart_count, 0);
}

#[test]
fn deletion_stops_the_container_and_schedules_removal() {
    let script = PodScript::default();
    let anchors = Anchors {
        admitted: t0(),
        stopping: Some(Stopping {
            requested_at: at(30.0),
            deadline: at(60.0),
        }),
    };
    let (snapshot, happenings) = simulate(&script, anchors, at(30.0), Some(at(29.0)));
    assert_eq!(
        snapshot.state,
        State::Terminated(Termination {
            reason: "Completed".into(),
            exit_code: 0,
            started_at: Some(t0()),
            finished_at: at(30.0),
        })
    );
    assert!(!snapshot.ready);
    assert_eq!(snapshot.ready_changed_at, at(30.0));
    assert_eq!(snapshot.remove_at, Some(at(31.0)));
    assert_eq!(snapshot.next_transition, Some(at(31.0)));
    assert_eq!(kinds(&happenings), [Happening::Killing]);

    // A long stop time is cut short by the grace period.
    let slow = PodScript {
        stop_after: secs(100),
        ..PodScript::default()
    };
    let (snapshot, _) = simulate(&slow, anchors, at(30.0), None);
    assert_eq!(snapshot.remove_at, Some(at(60.0)));
}

#[test]
fn happenings_are_limited_to_the_window() {
    let script = PodScript {
        crash_after: Some(secs(5)),
        ..PodScript::default()
    };
    let anchors = Anchors {
        admitted: t0(),
        stopping: None,
    };
    let (_, happenings) = simulate(&script, anchors, at(16.0), Some(at(6.0)));
    assert_eq!(
        kinds(&happenings),
        [Happening::Pulled, Happening::Created, Happening::Started]
    );
    assert!(happenings.iter().all(|h| h.at == at(15.0)));
}

#[test]
fn a_ramping_usage_schedules_usage_ticks() {
    let script = PodScript {
        cpu: Some(crate::workload::quantity::parse_usage("100m..1").unwrap()),
        ..PodScript::default()
    };
    assert_eq!(running(&script, 20.0).next_transition, Some(at(30.0)));
    assert_eq!(running(&script, 61.0).next_transition, None);
}
