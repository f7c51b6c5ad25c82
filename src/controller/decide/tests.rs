use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::controller::model::{
    DependencyState, DependentState, DeploymentState, FINALIZER, GroupFacts, Observed,
};
use crate::crd::{Platform, PlatformStatus};
use crate::fixtures::{TEST_NAMESPACE, platform};
use crate::graph::NodeKey;

fn key(name: &str) -> NodeKey {
    NodeKey::new(TEST_NAMESPACE, name)
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid")
}

fn observed(p: Platform) -> Observed {
    Observed::alone(p, now(), 0)
}

fn running_deployment(replicas: i32) -> DeploymentState {
    DeploymentState {
        replicas,
        ready_replicas: replicas,
        updated_replicas: replicas,
        status_replicas: replicas,
        observed_current: true,
        ..Default::default()
    }
}

fn dep(name: &str, ready: bool) -> DependencyState {
    DependencyState {
        key: key(name),
        ready,
    }
}

fn dependent(name: &str, stopped: bool) -> DependentState {
    DependentState {
        key: key(name),
        stopping: true,
        stopped,
        restart_request: None,
    }
}

fn with_phase(mut p: Platform, phase: Phase) -> Platform {
    p.status = Some(PlatformStatus {
        phase: Some(phase),
        ..Default::default()
    });
    p
}

fn kinds(decision: &Decision) -> Vec<ActionKind> {
    decision.actions.iter().map(|a| a.kind).collect()
}

#[test]
fn waits_without_a_deployment_while_a_dependency_is_not_ready() {
    let mut o = observed(platform("b").depends_on(["a"]).build());
    o.dependencies = vec![dep("a", false)];
    let d = decide(&o);
    assert_eq!(
        d.replicas, None,
        "no Deployment before dependencies are Ready"
    );
    assert_eq!(d.phase, Phase::WaitingForDependencies);
    assert!(d.message.contains('a'));
    assert!(d.actions.is_empty());
    assert_eq!(
        d.finalizer,
        Some(FinalizerChange::Add),
        "added on first sight, off the gating path"
    );
}

#[test]
fn starts_when_every_dependency_is_ready() {
    let mut o = observed(platform("b").depends_on(["a"]).replicas(3).build());
    o.dependencies = vec![dep("a", true)];
    let d = decide(&o);
    assert_eq!(d.replicas, Some(3));
    assert!(d.starts);
    assert_eq!(d.phase, Phase::Starting);
    assert_eq!(kinds(&d), vec![ActionKind::Start]);
    assert_eq!(d.finalizer, Some(FinalizerChange::Add));
}

#[test]
fn respects_the_group_start_limit() {
    let mut o = observed(platform("b").build());
    o.group = Some(GroupFacts {
        key: key("g"),
        max_concurrent_starts: 2,
        starting_members: [key("s1"), key("s2")].into(),
    });
    let d = decide(&o);
    assert_eq!(d.replicas, None);
    assert!(d.message.contains("start slot"));
    o.group = Some(GroupFacts {
        key: key("g"),
        max_concurrent_starts: 2,
        starting_members: [key("s1")].into(),
    });
    assert!(decide(&o).starts);
}

#[test]
fn a_started_platform_keeps_running_when_a_dependency_becomes_unready() {
    let mut o = observed(with_phase(
        platform("b").depends_on(["a"]).build(),
        Phase::Running,
    ));
    o.deployment = Some(running_deployment(1));
    o.dependencies = vec![dep("a", false)];
    let d = decide(&o);
    assert_eq!(d.replicas, Some(1));
    assert_eq!(d.phase, Phase::Running);
    assert!(d.actions.is_empty());
    assert!(d.message.contains("dependencies not ready"));
}

#[test]
fn running_with_all_replicas_ready_is_a_no_op() {
    let mut o = observed(with_phase(platform("a").build(), Phase::Running));
    o.platform.metadata.finalizers = Some(vec![FINALIZER.into()]);
    o.deployment = Some(running_deployment(1));
    o.pods = 1;
    let d = decide(&o);
    assert_eq!(d.replicas, Some(1));
    assert_eq!(d.phase, Phase::Running);
    assert!(d.actions.is_empty());
    assert_eq!(d.finalizer, None);
    assert_eq!(d.requeue_after, None, "nothing time-based pending");
}

#[test]
fn losing_ready_replicas_after_running_is_degraded() {
    let mut o = observed(with_phase(
        platform("a").replicas(2).build(),
        Phase::Running,
    ));
    o.deployment = Some(DeploymentState {
        ready_replicas: 1,
        ..running_deployment(2)
    });
    assert_eq!(decide(&o).phase, Phase::Degraded);
}

#[test]
fn a_replica_change_while_running_is_a_scale() {
    let mut o = observed(with_phase(
        platform("a").replicas(3).build(),
        Phase::Running,
    ));
    o.deployment = Some(running_deployment(1));
    let d = decide(&o);
    assert_eq!(d.replicas, Some(3));
    assert_eq!(kinds(&d), vec![ActionKind::Scale]);
}

#[test]
fn a_stop_waits_for_dependents_then_scales_to_zero() {
    let mut o = observed(with_phase(platform("a").stopped().build(), Phase::Running));
    o.deployment = Some(running_deployment(1));
    o.pods = 1;
    o.stop_cause = Some(StopCause::Spec);
    o.dependents = vec![dependent("b", false)];
    let d = decide(&o);
    assert_eq!(d.replicas, Some(1), "dependents first");
    assert_eq!(d.phase, Phase::Stopping);
    assert!(d.message.contains('b'));
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_secs(180)),
        "the shutdown timeout is pending"
    );

    o.dependents = vec![dependent("b", true)];
    let d = decide(&o);
    assert_eq!(d.replicas, Some(0));
    assert_eq!(kinds(&d), vec![ActionKind::Stop]);
    assert_eq!(d.phase, Phase::Stopping, "pods still there");

    o.deployment = Some(DeploymentState {
        replicas: 0,
        ready_replicas: 0,
        ..running_deployment(0)
    });
    o.pods = 0;
    let d = decide(&o);
    assert_eq!(d.phase, Phase::Stopped);
    assert!(d.actions.is_empty());
}

#[test]
fn a_cascade_stop_is_audited_as_such() {
    let mut o = observed(with_phase(platform("b").build(), Phase::Running));
    o.deployment = Some(running_deployment(1));
    o.stop_cause = Some(StopCause::Dependency {
        dependency: key("a"),
        cause: Box::new(StopCause::Spec),
    });
    let d = decide(&o);
    assert_eq!(d.replicas, Some(0));
    assert_eq!(kinds(&d), vec![ActionKind::CascadeStop]);
    assert!(d.actions[0].reason.contains("Platform/a"));
}

#[test]
fn a_stop_does_not_wait_for_dependents_that_keep_running() {
    let mut o = observed(with_phase(platform("a").stopped().build(), Phase::Running));
    o.deployment = Some(running_deployment(1));
    o.stop_cause = Some(StopCause::Spec);
    o.dependents = vec![DependentState {
        stopping: false,
        ..dependent("ordered-after", false)
    }];
    let d = decide(&o);
    assert_eq!(
        d.replicas,
        Some(0),
        "an ordering-edge dependent that keeps running does not hold the stop"
    );
}

#[test]
fn the_shutdown_timeout_proceeds_with_a_warning() {
    let mut p = with_phase(platform("a").stopped().build(), Phase::Stopping);
    let since = Timestamp::from_second(now().as_second() - 181).expect("valid");
    p.status.as_mut().expect("status").stopping_since = Some(Time(since));
    let mut o = observed(p);
    o.deployment = Some(running_deployment(1));
    o.stop_cause = Some(StopCause::Spec);
    o.dependents = vec![dependent("b", false)];
    let d = decide(&o);
    assert_eq!(d.replicas, Some(0));
    assert_eq!(
        kinds(&d),
        vec![ActionKind::ShutdownTimeout, ActionKind::Stop]
    );
    assert!(ActionKind::ShutdownTimeout.is_warning());
}

#[test]
fn deletion_removes_the_finalizer_only_once_pods_are_gone() {
    let mut p = with_phase(platform("a").build(), Phase::Stopping);
    p.metadata.finalizers = Some(vec![FINALIZER.into()]);
    p.metadata.deletion_timestamp = Some(Time(now()));
    let mut o = observed(p);
    o.stop_cause = Some(StopCause::Deletion);
    o.deployment = Some(DeploymentState {
        replicas: 0,
        ..Default::default()
    });
    o.pods = 1;
    assert_eq!(decide(&o).finalizer, None);
    o.pods = 0;
    let d = decide(&o);
    assert_eq!(d.finalizer, Some(FinalizerChange::Remove));
    assert_eq!(d.phase, Phase::Stopped);
}

#[test]
fn blocked_platforms_start_nothing_and_keep_what_runs() {
    let mut o = observed(platform("a").build());
    o.block = Some("blocked by dependency cycle a → b → a".into());
    let d = decide(&o);
    assert_eq!(d.replicas, None);
    assert_eq!(d.phase, Phase::Blocked);
    assert_eq!(kinds(&d), vec![ActionKind::Blocked]);
    assert!(d.message.contains("a → b → a"));

    let mut o = observed(with_phase(platform("a").build(), Phase::Blocked));
    o.block = Some("blocked".into());
    o.deployment = Some(running_deployment(1));
    let d = decide(&o);
    assert_eq!(d.replicas, Some(1), "a bad edge does not kill what runs");
    assert!(d.actions.is_empty(), "Blocked is audited once");
}

#[test]
fn a_restart_request_is_handled_once() {
    let mut p = with_phase(
        platform("a")
            .annotation(RESTART_ANNOTATION, "2026-11-26T10:00:00Z")
            .build(),
        Phase::Running,
    );
    p.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let mut o = observed(p);
    o.deployment = Some(running_deployment(1));
    let d = decide(&o);
    assert_eq!(d.handled_restart.as_deref(), Some("2026-11-26T10:00:00Z"));
    assert_eq!(kinds(&d), vec![ActionKind::Restart]);

    o.platform.status.as_mut().expect("status").handled_restart =
        Some("2026-11-26T10:00:00Z".into());
    let d = decide(&o);
    assert_eq!(d.handled_restart, None);
    assert!(d.actions.is_empty());
}

#[test]
fn a_cascading_restart_reaches_dependents_after_the_rollout() {
    let request = "r1";
    let mut p = with_phase(
        platform("a")
            .annotation(RESTART_ANNOTATION, request)
            .annotation(RESTART_DEPENDENTS_ANNOTATION, "true")
            .build(),
        Phase::Running,
    );
    p.status.as_mut().expect("status").handled_restart = Some(request.into());
    let mut o = observed(p);
    o.dependents = vec![
        dependent("b", false),
        DependentState {
            restart_request: Some(request.into()),
            ..dependent("c", false)
        },
    ];
    o.deployment = Some(DeploymentState {
        restarted_at: Some(request.into()),
        observed_current: false,
        ..running_deployment(1)
    });
    assert!(
        decide(&o).restart_dependents.is_empty(),
        "not before the rollout completed"
    );

    o.deployment = Some(DeploymentState {
        restarted_at: Some(request.into()),
        ..running_deployment(1)
    });
    let d = decide(&o);
    assert_eq!(d.restart_dependents, vec![key("b")], "c already has it");
    assert_eq!(kinds(&d), vec![ActionKind::RestartDependents]);
}

#[test]
fn a_deployment_past_its_progress_deadline_is_restarted_or_failed() {
    let mut o = observed(with_phase(platform("a").build(), Phase::Starting));
    o.deployment = Some(DeploymentState {
        ready_replicas: 0,
        progress_deadline_exceeded: true,
        ..running_deployment(1)
    });
    let d = decide(&o);
    assert_eq!(d.phase, Phase::Starting, "supervision restarts it");
    assert_eq!(kinds(&d), vec![ActionKind::Restart]);
    assert!(d.supervisor_restart.is_some());

    o.settings.reactions.on_health_check_failed = crate::crd::HealthCheckReaction::Ignore;
    let d = decide(&o);
    assert_eq!(d.phase, Phase::Failed, "left failed when told to ignore it");
    assert_eq!(kinds(&d), vec![ActionKind::Failed]);
    assert!(d.supervisor_restart.is_none());
}

#[test]
fn status_keeps_transition_times_when_nothing_changes() {
    use crate::controller::status::next_status;
    let mut o = observed(with_phase(platform("a").build(), Phase::Running));
    o.platform.metadata.generation = Some(2);
    o.deployment = Some(running_deployment(1));
    let first = next_status(&o, &decide(&o));
    o.platform.status = Some(first.clone());
    o.now = Timestamp::from_second(now().as_second() + 60).expect("valid");
    let second = next_status(&o, &decide(&o));
    assert_eq!(first, second, "a second look changes nothing");
    let ready = second
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(ready.status, "True");
    assert_eq!(ready.observed_generation, Some(2));
    assert_eq!(second.ready.as_deref(), Some("1/1"));
}

#[test]
fn status_history_is_bounded() {
    use crate::controller::status::next_status;
    let mut p = platform("a").build();
    p.status = Some(PlatformStatus {
        history: (0..crate::crd::HISTORY_LIMIT)
            .map(|i| crate::crd::HistoryEntry {
                action: format!("old-{i}"),
                actor: "x".into(),
                reason: String::new(),
                time: Time(now()),
            })
            .collect(),
        ..Default::default()
    });
    let o = observed(p);
    let status = next_status(&o, &decide(&o));
    assert_eq!(status.history.len(), crate::crd::HISTORY_LIMIT);
    assert_eq!(
        status.history.last().map(|h| h.action.as_str()),
        Some("Start")
    );
    assert_eq!(status.history[0].action, "old-1");
}

#[test]
fn a_surging_rollout_is_not_rolled_out_until_the_old_pod_is_gone() {
    // Mid-rollout: the new pod exists (updated) but is not ready; the old one still is.
    let surging = DeploymentState {
        replicas: 1,
        ready_replicas: 1,
        updated_replicas: 1,
        status_replicas: 2,
        observed_current: true,
        ..Default::default()
    };
    assert!(!surging.rolled_out());
    let done = DeploymentState {
        status_replicas: 1,
        ..surging
    };
    assert!(done.rolled_out());
}

#[test]
fn a_stop_whose_history_entry_was_lost_is_recorded_once_more() {
    let entry = |action: &str| crate::crd::HistoryEntry {
        action: action.into(),
        actor: "platform-operator".into(),
        reason: "earlier".into(),
        time: Time(now()),
    };
    let mut p = with_phase(platform("a").stopped().build(), Phase::Running);
    p.status.as_mut().expect("status").history = vec![entry("Start")];
    let mut o = observed(p);
    o.stop_cause = Some(StopCause::Spec);
    o.deployment = Some(DeploymentState {
        ready_replicas: 0,
        ..running_deployment(0)
    });
    let d = decide(&o);
    assert_eq!(d.phase, Phase::Stopped);
    assert_eq!(
        kinds(&d),
        vec![ActionKind::Stop],
        "already scaled down, but unrecorded"
    );

    o.platform.status.as_mut().expect("status").history = vec![entry("Start"), entry("Stop")];
    assert!(kinds(&decide(&o)).is_empty(), "recorded once");
}
