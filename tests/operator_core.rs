//! The operator on a slow, busy or failing API server and on bad input: exactly one start per
//! platform under delayed watch delivery, a broken member that does not stall its group, error
//! reporting that does not hold up reconciles, and liveness that reports a dead controller.

mod operator_support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event as EventV1;
use kube::Api;
use operator_support::*;
use platform_operator::controller::FIELD_MANAGER;
use platform_operator::crd::{Phase, PodTemplate};
use platform_operator::fixtures::{group, platform};
use serde_json::json;

/// `Start` entries in each platform's status history.
fn starts_in_history(
    platforms: &BTreeMap<String, platform_operator::crd::Platform>,
) -> BTreeMap<String, usize> {
    platforms
        .iter()
        .map(|(name, p)| {
            let starts = p.status.as_ref().map_or(0, |s| {
                s.history.iter().filter(|h| h.action == "Start").count()
            });
            (name.clone(), starts)
        })
        .collect()
}

/// The operator's `Started` Events per platform (a real cluster's kubelet reports `Started`
/// for containers too).
async fn start_events(env: &TestEnv) -> BTreeMap<String, usize> {
    let api: Api<EventV1> = Api::namespaced(env.client(), env.namespace());
    let mut counts = BTreeMap::new();
    for event in api.list(&Default::default()).await.expect("events").items {
        if event.reason.as_deref() == Some("Started")
            && event.reporting_controller.as_deref() == Some(FIELD_MANAGER)
            && let Some(name) = event.regarding.and_then(|r| r.name)
        {
            *counts.entry(name).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_starts_exactly_once_when_deployment_watches_lag() {
    let Some(env) = TestEnv::sim_only("delays the Deployment watch (fault injection)").await else {
        return;
    };
    // The operator's own status writes come back long before its Deployment writes do.
    env.sim().faults().update(|f| {
        f.watch_delays
            .insert("deployments".into(), Duration::from_secs(2));
    });
    env.apply(&chain(&TRADING, "200ms")).await;
    let platforms = env
        .wait_for(
            "Running under lagging watches",
            Duration::from_secs(60),
            all_in(Phase::Running, &TRADING),
        )
        .await;
    // Late duplicates (an Event, a second apply) would come after the last Ready.
    env.settle().await;

    let once: BTreeMap<String, usize> = TRADING.iter().map(|n| (n.to_string(), 1)).collect();
    assert_eq!(
        starts_in_history(&platforms),
        once,
        "one Start in each history"
    );
    assert_eq!(start_events(&env).await, once, "one Started Event each");
    let history = env.history().await;
    assert_eq!(history.starts().len(), TRADING.len());
    assert_eq!(
        history.scale_ups(),
        TRADING.len(),
        "one scale-up per Deployment"
    );
    // No-op re-applies are not written at all, so the simulator's record of the operator's
    // requests says more than any watch: exactly one Deployment apply per platform.
    let scale_ups = sim_deployment_writes(&env.sim().writes())
        .into_iter()
        .filter(|(_, _, replicas)| *replicas > 0)
        .count();
    assert_eq!(
        scale_ups,
        TRADING.len(),
        "one Deployment apply per platform"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_an_invalid_workload_does_not_stall_its_group() {
    let env = TestEnv::start().await;
    env.apply_group(
        &group("stack")
            .selecting("stack", "one")
            .max_concurrent_starts(1)
            .build(),
    )
    .await;
    let broken = platform("broken")
        .label("stack", "one")
        .with_spec(|s| {
            s.image = None;
            s.template = Some(PodTemplate(json!({"spec": {"containers": "main"}})));
        })
        .build();
    let healthy: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            platform(name)
                .label("stack", "one")
                .pod_annotation("sim.pmp.dev/ready-after", "200ms")
                .build()
        })
        .collect();
    env.apply(std::slice::from_ref(&broken)).await;
    env.apply(&healthy).await;

    let platforms = env
        .wait_for(
            "the healthy members Running beside a broken one",
            Duration::from_secs(30),
            |p| {
                all_in(Phase::Running, &["a", "b", "c"])(p)
                    && p.get("broken").and_then(phase) == Some(Phase::Failed)
            },
        )
        .await;
    let broken = &platforms["broken"];
    assert_eq!(phase(broken), Some(Phase::Failed));
    let ready = broken
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .expect("Ready condition");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.contains("spec.template.spec.containers"),
        "{}",
        ready.message
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_reconciles_with_a_hanging_events_api_do_not_hold_up_the_others() {
    let Some(env) = TestEnv::sim_only(
        "fails one Deployment's requests and hangs the Events API (fault injection)",
    )
    .await
    else {
        return;
    };
    env.sim().faults().update(|f| {
        // Every reconcile of `broken` fails; publishing its Warning Event hangs for 10 minutes
        // of simulated time (30 s real) before timing out.
        f.fail_paths.push(("/deployments/broken".into(), 500));
        f.hang_paths.push("/apis/events.k8s.io/".into());
        f.timeout_hold = Duration::from_secs(600);
    });
    env.apply(&[platform("broken")
        .pod_annotation("sim.pmp.dev/ready-after", "200ms")
        .build()])
        .await;
    // The finalizer is added before the Deployment write that fails.
    env.wait_for(
        "a first reconcile of the broken platform",
        Duration::from_secs(10),
        |p| {
            p.get("broken")
                .is_some_and(|b| !b.metadata.finalizers.clone().unwrap_or_default().is_empty())
        },
    )
    .await;
    env.apply(&chain(&TRADING[..3], "200ms")).await;
    env.wait_for(
        "the chain Running while error Events hang",
        Duration::from_secs(15),
        all_in(Phase::Running, &TRADING[..3]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_fails_once_the_controllers_are_gone() {
    let mut env = TestEnv::start().await;
    env.apply(&chain(&TRADING[..1], "200ms")).await;
    env.wait_running(&TRADING[..1]).await;
    let ctx = env.operator().context().clone();
    assert_eq!(ctx.health.problems(), Vec::<String>::new());
    env.kill_operator();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ctx.health.problems().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let problems = ctx.health.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().all(|p| p.contains("its stream has ended")));
    env.shutdown().await;
}
