//! The operator on a slow, busy or failing API server and on bad input: exactly one start per
//! platform under delayed watch delivery, a broken member that does not stall its group, error
//! reporting that does not hold up reconciles, and liveness that reports a dead controller.

mod operator_support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event as EventV1;
use kube::Api;
use operator_support::*;
use platform_operator::crd::{Phase, PodTemplate};
use platform_operator::fixtures::{TEST_NAMESPACE, group, platform};
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

/// `Started` Events per platform.
async fn start_events(client: &kube::Client) -> BTreeMap<String, usize> {
    let api: Api<EventV1> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    let mut counts = BTreeMap::new();
    for event in api.list(&Default::default()).await.expect("events").items {
        if event.reason.as_deref() == Some("Started")
            && let Some(name) = event.regarding.and_then(|r| r.name)
        {
            *counts.entry(name).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_starts_exactly_once_when_deployment_watches_lag() {
    let sandbox = sandbox().await;
    // The operator's own status writes come back long before its Deployment writes do.
    sandbox.cluster.faults().update(|f| {
        f.watch_delays
            .insert("deployments".into(), Duration::from_secs(2));
    });
    let client = sandbox.client();
    apply(&client, &chain(&TRADING, "200ms")).await;
    let platforms = wait_for(
        &client,
        "Running under lagging watches",
        Duration::from_secs(60),
        all_in(Phase::Running, &TRADING),
    )
    .await;

    let once: BTreeMap<String, usize> = TRADING.iter().map(|n| (n.to_string(), 1)).collect();
    assert_eq!(
        starts_in_history(&platforms),
        once,
        "one Start in each history"
    );
    assert_eq!(start_events(&client).await, once, "one Started Event each");
    let starts = starts(&sandbox.cluster.writes());
    assert_eq!(starts.len(), TRADING.len());
    let scale_ups = deployment_writes(&sandbox.cluster.writes())
        .into_iter()
        .filter(|(_, _, replicas)| *replicas > 0)
        .count();
    assert_eq!(
        scale_ups,
        TRADING.len(),
        "one Deployment apply per platform"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_an_invalid_workload_does_not_stall_its_group() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply_group(
        &client,
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
    apply(&client, std::slice::from_ref(&broken)).await;
    apply(&client, &healthy).await;

    let platforms = wait_for(
        &client,
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_reconciles_with_a_hanging_events_api_do_not_hold_up_the_others() {
    let sandbox = sandbox().await;
    sandbox.cluster.faults().update(|f| {
        // Every reconcile of `broken` fails; publishing its Warning Event hangs for 10 minutes
        // of simulated time (30 s real) before timing out.
        f.fail_paths.push(("/deployments/broken".into(), 500));
        f.hang_paths.push("/apis/events.k8s.io/".into());
        f.timeout_hold = Duration::from_secs(600);
    });
    let client = sandbox.client();
    apply(
        &client,
        &[platform("broken")
            .pod_annotation("sim.pmp.dev/ready-after", "200ms")
            .build()],
    )
    .await;
    // The finalizer is added before the Deployment write that fails.
    wait_for(
        &client,
        "a first reconcile of the broken platform",
        Duration::from_secs(10),
        |p| {
            p.get("broken")
                .is_some_and(|b| !b.metadata.finalizers.clone().unwrap_or_default().is_empty())
        },
    )
    .await;
    apply(&client, &chain(&TRADING[..3], "200ms")).await;
    wait_for(
        &client,
        "the chain Running while error Events hang",
        Duration::from_secs(15),
        all_in(Phase::Running, &TRADING[..3]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_fails_once_the_controllers_are_gone() {
    let mut sandbox = sandbox().await;
    let client = sandbox.client();
    apply(&client, &chain(&TRADING[..1], "200ms")).await;
    wait_running(&client, &TRADING[..1]).await;
    let ctx = sandbox
        .operator()
        .expect("operator running")
        .context()
        .clone();
    assert_eq!(ctx.health.problems(), Vec::<String>::new());
    sandbox.kill_operator();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ctx.health.problems().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let problems = ctx.health.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().all(|p| p.contains("its stream has ended")));
}
