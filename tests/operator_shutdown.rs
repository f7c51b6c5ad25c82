//! Ordered shutdown and deletion against the simulated cluster.

mod operator_support;

use std::time::Duration;

use kube::Api;
use kube::api::DeleteParams;
use operator_support::*;
use platform_operator::controller::model::FINALIZER;
use platform_operator::crd::{Phase, Platform};
use platform_operator::fixtures::TEST_NAMESPACE;
use serde_json::json;

/// Asserts the stop writes came in reverse chain order and that each platform was scaled down
/// only after every pod of its dependent was gone.
fn assert_stopped_in_reverse(writes: &[pmp_sim::WriteRecord]) {
    let stops = stops(writes);
    let order: Vec<&str> = stops.iter().map(|(_, n)| n.as_str()).collect();
    let expected: Vec<&str> = TRADING.iter().rev().copied().collect();
    assert_eq!(
        order, expected,
        "stopped dependents first, in reverse order"
    );
    for pair in TRADING.windows(2) {
        let (dependency, dependent) = (pair[0], pair[1]);
        let dependent_gone = pods_gone(writes, dependent).expect("dependent pods removed");
        let dependency_stop = stops
            .iter()
            .find(|(_, n)| n == dependency)
            .map(|(s, _)| *s)
            .expect("stopped");
        assert!(
            dependent_gone < dependency_stop,
            "{dependency} scaled down (write {dependency_stop}) before {dependent}'s pods were gone (write {dependent_gone})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_root_stops_its_dependents_first_in_reverse_order() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply(&client, &chain(&TRADING, "500ms")).await;
    wait_running(&client, &TRADING).await;

    patch_spec(
        &client,
        "market-data-service",
        json!({"desiredState": "Stopped"}),
    )
    .await;
    let done = wait_for(
        &client,
        "all Stopped",
        Duration::from_secs(30),
        all_in(Phase::Stopped, &TRADING),
    )
    .await;
    assert_stopped_in_reverse(&sandbox.cluster.writes());

    let cascade = done["position-management"].status.clone().expect("status");
    assert_eq!(
        cascade.stopped_by.as_deref(),
        Some("Platform/market-data-service: dependency stopped"),
        "a dependent is marked stopped by cascade, with the cause"
    );
    assert!(cascade.history.iter().any(|h| h.action == "CascadeStop"));
    assert_eq!(
        done["position-management"].spec.desired_state,
        platform_operator::crd::DesiredState::Running,
        "the dependent's spec is not rewritten"
    );
    let root = done["market-data-service"].status.clone().expect("status");
    assert!(root.history.iter().any(|h| h.action == "Stop"));

    // And back: starting the root brings the stack up again in order.
    patch_spec(
        &client,
        "market-data-service",
        json!({"desiredState": "Running"}),
    )
    .await;
    wait_for(
        &client,
        "Running again",
        Duration::from_secs(30),
        all_in(Phase::Running, &TRADING),
    )
    .await;
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_platform_with_dependents_follows_the_shutdown_order() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply(&client, &chain(&TRADING, "500ms")).await;
    let running = wait_running(&client, &TRADING).await;
    assert!(
        running["market-data-service"]
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );

    let api: Api<Platform> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    api.delete("market-data-service", &DeleteParams::default())
        .await
        .expect("delete accepted");
    let rest = &TRADING[1..];
    wait_for(
        &client,
        "root gone, others stopped",
        Duration::from_secs(30),
        |platforms| {
            !platforms.contains_key("market-data-service")
                && rest.iter().all(|n| {
                    platforms
                        .get(*n)
                        .and_then(phase)
                        .is_some_and(|p| p == Phase::Blocked || p == Phase::Stopped)
                })
        },
    )
    .await;

    let writes = sandbox.cluster.writes();
    assert_stopped_in_reverse(&writes);
    let root_stop = stops(&writes)
        .iter()
        .find(|(_, n)| n == "market-data-service")
        .map(|(s, _)| *s)
        .expect("root stopped");
    let finalizer_removed = writes
        .iter()
        .filter(|w| {
            w.actor == platform_operator::controller::FIELD_MANAGER
                && w.resource.plural == "platforms"
                && w.name == "market-data-service"
        })
        .filter(|w| {
            w.subresource.is_none() && w.object.pointer("/metadata/deletionTimestamp").is_some()
        })
        .map(|w| w.seq)
        .max()
        .expect("finalizer removal written");
    let root_pods_gone = pods_gone(&writes, "market-data-service").expect("root pods gone");
    assert!(
        root_stop < finalizer_removed && root_pods_gone < finalizer_removed,
        "the finalizer is removed at the end"
    );
    sandbox.shutdown().await;
}
