//! `kubectl platform start|stop|restart` against the operator in the simulated cluster: what
//! the command prints, what the operator then does, and who the audit trail names.

mod support;

use platform_operator::crd::{DesiredState, Phase, Platform};
use platform_operator::fixtures::platform;
use pmp_sim::AuthTable;
use support::{Env, affected, pairs};

const STOP_AFTER: &str = "sim.pmp.dev/stop-after";
const READY_AFTER: &str = "sim.pmp.dev/ready-after";

/// a ← b ← c: c depends on b, b on a.
fn chain(annotation: (&str, &str), stopped: bool) -> Vec<Platform> {
    [("a", None), ("b", Some("a")), ("c", Some("b"))]
        .into_iter()
        .map(|(name, dep)| {
            let mut p = platform(name).pod_annotation(annotation.0, annotation.1);
            if let Some(dep) = dep {
                p = p.depends_on([dep]);
            }
            if stopped {
                p = p.stopped();
            }
            p.build()
        })
        .collect()
}

fn stopped_at(p: &Platform) -> k8s_openapi::jiff::Timestamp {
    p.status
        .as_ref()
        .and_then(|s| s.stopped_at.as_ref())
        .map(|t| t.0)
        .expect("stoppedAt set")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_stops_the_dependents_first_in_reverse_order() {
    let env = Env::start().await;
    // Pods take 3 simulated seconds to go, so each stop visibly waits for the one before.
    env.create(chain((STOP_AFTER, "3s"), false)).await;
    env.wait_for(&["a", "b", "c"], Phase::Running).await;

    let out = env.ok(&["stop", "a", "--wait", "--timeout", "30s"]).await;
    assert_eq!(
        affected(&out),
        pairs(&[("c", "cascade-stop"), ("b", "cascade-stop"), ("a", "stop")]),
        "{out}"
    );
    assert!(out.contains("done in"), "--wait reports completion: {out}");
    let (a, b, c) = (
        env.platform("a").await,
        env.platform("b").await,
        env.platform("c").await,
    );
    for p in [&a, &b, &c] {
        assert_eq!(
            p.status.as_ref().and_then(|s| s.phase),
            Some(Phase::Stopped)
        );
    }
    assert!(
        stopped_at(&c) < stopped_at(&b) && stopped_at(&b) < stopped_at(&a),
        "the operator stopped c, then b, then a"
    );
    assert_eq!(
        a.spec.desired_state,
        DesiredState::Stopped,
        "only the target's spec is written"
    );
    assert_eq!(b.spec.desired_state, DesiredState::Running);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_without_then_with_dependencies() {
    let env = Env::start().await;
    env.create(chain((READY_AFTER, "1s"), true)).await;
    env.wait_for(&["a", "b", "c"], Phase::Stopped).await;

    let out = env.ok(&["start", "c", "--with-dependencies=false"]).await;
    assert_eq!(affected(&out), pairs(&[("c", "wait")]), "{out}");
    let c = env.observed("c").await;
    assert_eq!(
        c.spec.desired_state,
        DesiredState::Running,
        "c's own spec says Running"
    );
    let status = c.status.expect("status");
    assert_eq!(
        status.phase,
        Some(Phase::Stopped),
        "held by its stopped dependency"
    );
    assert!(
        status
            .stopped_by
            .as_deref()
            .is_some_and(|by| by.contains("Platform/b")),
        "{:?}",
        status.stopped_by
    );
    for name in ["a", "b"] {
        let p = env.platform(name).await;
        assert_eq!(
            p.spec.desired_state,
            DesiredState::Stopped,
            "{name} left alone"
        );
    }

    let out = env.ok(&["start", "c", "--wait"]).await;
    assert_eq!(
        affected(&out),
        pairs(&[("a", "start"), ("b", "start"), ("c", "start")]),
        "dependencies first: {out}"
    );
    for name in ["a", "b", "c"] {
        let p = env.platform(name).await;
        assert_eq!(
            p.status.and_then(|s| s.phase),
            Some(Phase::Running),
            "{name}"
        );
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_dependents_rolls_each_after_its_dependency() {
    let env = Env::start().await;
    env.create(chain((READY_AFTER, "2s"), false)).await;
    env.wait_for(&["a", "b", "c"], Phase::Running).await;

    let out = env
        .ok(&["restart", "a", "--with-dependents", "--wait"])
        .await;
    assert_eq!(
        affected(&out),
        pairs(&[("a", "restart"), ("b", "restart"), ("c", "restart")]),
        "{out}"
    );
    let mut last = Vec::new();
    for name in ["a", "b", "c"] {
        let status = env.platform(name).await.status.expect("status");
        assert_eq!(status.restart_count, Some(1), "{name} restarted once");
        assert_eq!(status.phase, Some(Phase::Running), "{name} Running again");
        last.push(status.last_restart_time.expect("lastRestartTime").0);
    }
    assert!(
        last[0] < last[1] && last[1] < last[2],
        "a, then b, then c: {last:?}"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_names_the_kubectl_user() {
    let env = Env::start().await;
    env.sandbox
        .cluster
        .set_auth(AuthTable::default().with_token("t0k3n", "alice", &["sre"]));
    env.use_token("t0k3n");
    env.create(vec![platform("a").build()]).await;
    env.wait_for(&["a"], Phase::Running).await;

    let out = env.ok(&["stop", "a", "--wait"]).await;
    assert!(out.contains("requested by kubectl:alice"), "{out}");
    let history = env.platform("a").await.status.expect("status").history;
    let stop = history
        .iter()
        .rfind(|h| h.action == "Stop")
        .expect("a Stop entry");
    assert_eq!(stop.actor, "kubectl:alice", "{history:?}");

    // A cluster that refuses SelfSubjectReview (older, or RBAC) still gets the action done.
    env.sandbox.cluster.faults().update(|faults| {
        faults.fail_paths.push(("selfsubjectreviews".into(), 403));
    });
    let out = env.ok(&["start", "a", "--wait"]).await;
    assert!(out.contains("requested by kubectl:unknown"), "{out}");
    let history = env.platform("a").await.status.expect("status").history;
    let start = history
        .iter()
        .rfind(|h| h.action == "Start")
        .expect("a Start entry");
    assert_eq!(start.actor, "kubectl:unknown", "{history:?}");
    env.shutdown().await;
}
