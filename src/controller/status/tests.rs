use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::*;
use crate::controller::model::{Action, DependencyState, DeploymentState, StopCause};
use crate::crd::Platform;
use crate::fixtures::{TEST_NAMESPACE, platform};
use crate::graph::NodeKey;

fn key(name: &str) -> NodeKey {
    NodeKey::new(TEST_NAMESPACE, name)
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).expect("valid")
}

/// What was observed of `p` (at generation 3) at `at(0)`, with nothing around it.
fn observed(mut p: Platform) -> Observed {
    p.metadata.generation = Some(3);
    Observed::alone(p, at(0), 1)
}

/// A previous status in `phase` at `at(0)`.
fn was(o: &mut Observed, phase: Phase) -> &mut PlatformStatus {
    o.platform.status.insert(PlatformStatus {
        phase: Some(phase),
        ..Default::default()
    })
}

fn decided(phase: Phase) -> Decision {
    Decision {
        replicas: None,
        starts: false,
        finalizer: None,
        phase,
        actions: Vec::new(),
        restart_dependents: Vec::new(),
        handled_restart: None,
        requeue_after: None,
        message: format!("now {phase}"),
        ready_reason: None,
        degraded_reason: None,
        supervision: None,
        supervisor_restart: None,
        alerts: Vec::new(),
    }
}

fn acting(phase: Phase, kinds: &[ActionKind]) -> Decision {
    let actions = kinds.iter().map(|&kind| Action {
        kind,
        reason: format!("because {}", kind.as_str()),
    });
    Decision {
        actions: actions.collect(),
        ..decided(phase)
    }
}

fn dep(name: &str, ready: bool) -> DependencyState {
    DependencyState {
        key: key(name),
        ready,
    }
}

fn cond<'a>(status: &'a PlatformStatus, type_: &str) -> &'a Condition {
    let found = status.conditions.iter().find(|c| c.type_ == type_);
    found.unwrap_or_else(|| panic!("condition {type_}"))
}

/// A condition as `status/reason`, e.g. `True/Running`.
fn summary(status: &PlatformStatus, type_: &str) -> String {
    let c = cond(status, type_);
    format!("{}/{}", c.status, c.reason)
}

#[test]
fn conditions_follow_the_phase() {
    use condition::{DEGRADED, PROGRESSING, READY};
    // phase: Ready, Progressing, Degraded as `status/reason`
    let table = [
        (
            Phase::Running,
            "True/Running",
            "False/Stable",
            "False/AsDesired",
        ),
        (
            Phase::Starting,
            "False/Starting",
            "True/Starting",
            "False/AsDesired",
        ),
        (
            Phase::WaitingForDependencies,
            "False/WaitingForDependencies",
            "True/WaitingForDependencies",
            "False/AsDesired",
        ),
        (
            Phase::Stopping,
            "False/Stopping",
            "True/Stopping",
            "False/AsDesired",
        ),
        (
            Phase::Stopped,
            "False/Stopped",
            "False/Stable",
            "False/AsDesired",
        ),
        (
            Phase::Degraded,
            "False/Degraded",
            "False/Degraded",
            "True/Degraded",
        ),
        (Phase::Failed, "False/Failed", "False/Failed", "True/Failed"),
        (
            Phase::Blocked,
            "False/Blocked",
            "False/Blocked",
            "False/AsDesired",
        ),
    ];
    for (phase, ready, progressing, degraded) in table {
        let status = next_status(&observed(platform("a").build()), &decided(phase));
        assert_eq!(status.phase, Some(phase));
        for (type_, expected) in [
            (READY, ready),
            (PROGRESSING, progressing),
            (DEGRADED, degraded),
        ] {
            assert_eq!(summary(&status, type_), expected, "{phase}: {type_}");
            assert_eq!(cond(&status, type_).message, format!("now {phase}"));
        }
    }
}

#[test]
fn a_running_platform_rolling_its_pods_is_progressing() {
    let mut o = observed(platform("a").build());
    o.deployment = Some(DeploymentState {
        replicas: 1,
        ready_replicas: 1,
        updated_replicas: 0,
        observed_current: true,
        ..Default::default()
    });
    let status = next_status(&o, &decided(Phase::Running));
    let progressing = summary(&status, condition::PROGRESSING);
    assert_eq!(progressing, "True/RollingUpdate");
}

#[test]
fn the_ready_reason_comes_from_the_decision_when_it_names_one() {
    let o = observed(platform("a").build());
    let decision = Decision {
        ready_reason: Some("InvalidSpec"),
        ..decided(Phase::Failed)
    };
    let status = next_status(&o, &decision);
    assert_eq!(summary(&status, condition::READY), "False/InvalidSpec");
    let degraded = summary(&status, condition::DEGRADED);
    assert_eq!(degraded, "True/Failed", "only Ready takes the reason");
}

#[test]
fn dependencies_ready_reports_what_is_waited_for() {
    let block = Some("blocked by dependency cycle a → b → a".to_string());
    let all_ready = vec![dep("db", true), dep("cache", true)];
    let some_unready = vec![dep("db", false), dep("cache", true), dep("mq", false)];
    let table = [
        (vec![], None, "True/NoDependencies", "no dependencies"),
        (
            all_ready,
            None,
            "True/AllDependenciesReady",
            "all dependencies are Ready",
        ),
        (
            some_unready,
            None,
            "False/DependenciesNotReady",
            "not Ready: db, mq",
        ),
        (
            vec![dep("db", true)],
            block,
            "False/GraphInvalid",
            "now Blocked",
        ),
    ];
    for (dependencies, block, expected, message) in table {
        let mut o = observed(platform("a").build());
        o.dependencies = dependencies;
        o.block = block;
        let status = next_status(&o, &decided(Phase::Blocked));
        let c = cond(&status, condition::DEPENDENCIES_READY);
        assert_eq!(summary(&status, condition::DEPENDENCIES_READY), expected);
        assert_eq!(c.message, message);
    }
}

#[test]
fn blocked_by_and_the_dependency_count_list_the_unready_dependencies() {
    let mut o = observed(platform("a").replicas(3).build());
    o.dependencies = vec![dep("db", false), dep("cache", true), dep("mq", false)];
    o.deployment = Some(DeploymentState {
        ready_replicas: 2,
        ..Default::default()
    });
    let status = next_status(&o, &decided(Phase::Running));
    assert_eq!(status.blocked_by, ["db", "mq"]);
    assert_eq!(status.dependencies.as_deref(), Some("1/3"));
    assert_eq!(status.ready.as_deref(), Some("2/3"));
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.startup_wave, Some(1));
    assert_eq!(status.message.as_deref(), Some("now Running"));

    o.dependencies.clear();
    let status = next_status(&o, &decided(Phase::Running));
    assert!(status.blocked_by.is_empty());
    assert_eq!(status.dependencies.as_deref(), Some("0/0"));
}

#[test]
fn every_condition_carries_the_observed_generation() {
    let o = observed(platform("a").build());
    let status = next_status(&o, &decided(Phase::Starting));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.conditions.len(), 5);
    for c in &status.conditions {
        assert_eq!(c.observed_generation, Some(3), "{}", c.type_);
    }
}

#[test]
fn transition_times_move_only_when_a_condition_status_changes() {
    let o = observed(platform("a").build());
    let starting = next_status(&o, &decided(Phase::Starting));
    let mut later = o.clone();
    later.now = at(60);
    later.platform.status = Some(starting.clone());

    let still_starting = next_status(&later, &decided(Phase::Starting));
    assert_eq!(
        still_starting.conditions, starting.conditions,
        "nothing new"
    );

    let running = next_status(&later, &decided(Phase::Running));
    let time = |s: &PlatformStatus, type_| cond(s, type_).last_transition_time.0;
    for (type_, moved) in [
        (condition::READY, true),
        (condition::PROGRESSING, true),
        (condition::DEGRADED, false),
        (condition::DEPENDENCIES_READY, false),
    ] {
        let expected = if moved { at(60) } else { at(0) };
        assert_eq!(time(&running, type_), expected, "{type_}");
    }
    let degraded = cond(&running, condition::DEGRADED);
    assert_eq!(degraded.message, "now Running", "message follows even so");
}

#[test]
fn history_records_each_action_and_keeps_the_newest() {
    let mut o = observed(platform("a").build());
    o.now = at(5);
    let status = next_status(
        &o,
        &acting(
            Phase::Stopping,
            &[ActionKind::ShutdownTimeout, ActionKind::Stop],
        ),
    );
    let recorded: Vec<(&str, &str, &str)> = status
        .history
        .iter()
        .map(|h| (h.action.as_str(), h.actor.as_str(), h.reason.as_str()))
        .collect();
    assert_eq!(
        recorded,
        [
            ("ShutdownTimeout", OPERATOR_ACTOR, "because ShutdownTimeout"),
            ("Stop", OPERATOR_ACTOR, "because Stop"),
        ]
    );
    assert!(status.history.iter().all(|h| h.time.0 == at(5)));

    let old = |i| HistoryEntry {
        action: format!("old-{i}"),
        actor: "x".into(),
        reason: String::new(),
        time: Time(at(0)),
    };
    was(&mut o, Phase::Running).history = (0..HISTORY_LIMIT - 1).map(old).collect();
    let kinds = [ActionKind::Scale, ActionKind::Restart, ActionKind::Scale];
    let status = next_status(&o, &acting(Phase::Starting, &kinds));
    assert_eq!(status.history.len(), HISTORY_LIMIT);
    assert_eq!(status.history[0].action, "old-2", "the oldest two dropped");
    let newest: Vec<&str> = status.history[HISTORY_LIMIT - 3..]
        .iter()
        .map(|h| h.action.as_str())
        .collect();
    assert_eq!(newest, ["Scale", "Restart", "Scale"]);
}

#[test]
fn a_restart_action_counts_and_stamps_the_restart() {
    let mut o = observed(platform("a").build());
    let first = next_status(&o, &decided(Phase::Running));
    assert_eq!(first.restart_count, Some(0));
    assert_eq!(first.last_restart_time, None);

    o.platform.status = Some(PlatformStatus {
        restart_count: Some(2),
        last_restart_time: Some(Time(at(-100))),
        handled_restart: Some("r1".into()),
        ..Default::default()
    });
    let restart = Decision {
        handled_restart: Some("r2".into()),
        ..acting(Phase::Running, &[ActionKind::Restart])
    };
    let status = next_status(&o, &restart);
    assert_eq!(status.restart_count, Some(3));
    assert_eq!(status.last_restart_time, Some(Time(at(0))));
    assert_eq!(status.handled_restart.as_deref(), Some("r2"));

    let status = next_status(&o, &acting(Phase::Running, &[ActionKind::Scale]));
    assert_eq!(status.restart_count, Some(2), "other actions do not count");
    assert_eq!(status.last_restart_time, Some(Time(at(-100))));
    assert_eq!(status.handled_restart.as_deref(), Some("r1"), "kept");
}

#[test]
fn started_and_stopped_times_mark_entering_the_phase() {
    let earlier = Some(Time(at(-100)));
    // previous phase, next phase → startedAt / stoppedAt moved to now?
    let table = [
        (Phase::Starting, Phase::Running, true, false),
        (Phase::Running, Phase::Running, false, false),
        (Phase::Degraded, Phase::Running, false, false),
        (Phase::Running, Phase::Degraded, false, false),
        (Phase::Stopping, Phase::Stopped, false, true),
        (Phase::Stopped, Phase::Stopped, false, false),
        (Phase::Stopped, Phase::Starting, false, false),
    ];
    for (before, after, started, stopped) in table {
        let mut o = observed(platform("a").build());
        let previous = was(&mut o, before);
        previous.started_at = earlier.clone();
        previous.stopped_at = earlier.clone();
        let status = next_status(&o, &decided(after));
        let moved = |t: &Option<Time>| t.as_ref().map(|t| t.0) == Some(at(0));
        assert_eq!(moved(&status.started_at), started, "{before} → {after}");
        assert_eq!(moved(&status.stopped_at), stopped, "{before} → {after}");
        assert!(status.started_at.is_some() && status.stopped_at.is_some());
    }
}

#[test]
fn stopping_since_is_set_on_entering_stopping_kept_while_stopping_and_cleared_after() {
    let mut o = observed(platform("a").stopped().build());
    o.stop_cause = Some(StopCause::Spec);
    was(&mut o, Phase::Running);
    let stopping = next_status(&o, &decided(Phase::Stopping));
    assert_eq!(stopping.stopping_since, Some(Time(at(0))));
    assert_eq!(
        stopping.stopped_by.as_deref(),
        Some("Platform/a: spec.desiredState is Stopped")
    );

    o.platform.status = Some(stopping);
    o.now = at(30);
    let still = next_status(&o, &decided(Phase::Stopping));
    assert_eq!(still.stopping_since, Some(Time(at(0))), "kept");

    o.platform.status = Some(still);
    let stopped = next_status(&o, &decided(Phase::Stopped));
    assert_eq!(stopped.stopping_since, None);
    assert_eq!(stopped.stopped_at, Some(Time(at(30))));
    assert!(stopped.stopped_by.is_some(), "still stopped by its spec");

    let running = next_status(&o, &decided(Phase::Starting));
    assert_eq!(running.stopped_by, None, "only while stopping or stopped");
}

#[test]
fn failed_and_blocked_platforms_are_stalled_for_kstatus() {
    let o = observed(platform("a").build());
    for (phase, stalled) in [
        (Phase::Failed, "True"),
        (Phase::Blocked, "True"),
        (Phase::Running, "False"),
        (Phase::Starting, "False"),
        (Phase::Stopped, "False"),
    ] {
        let status = next_status(&o, &decided(phase));
        let condition = status
            .conditions
            .iter()
            .find(|c| c.type_ == condition::STALLED)
            .expect("a Stalled condition");
        assert_eq!(condition.status, stalled, "{phase}");
        if stalled == "True" {
            assert_eq!(condition.reason, phase.as_str());
            assert_eq!(condition.message, format!("now {phase}"));
        }
    }
}
