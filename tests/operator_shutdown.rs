//! Ordered shutdown and deletion.

mod operator_support;

use std::time::Duration;

use kube::Api;
use kube::api::DeleteParams;
use operator_support::*;
use platform_operator::controller::model::FINALIZER;
use platform_operator::crd::{Phase, Platform};
use serde_json::json;

/// Asserts the stops came in reverse chain order and that each platform was scaled down only
/// after every pod of its dependent was gone.
fn assert_stopped_in_reverse(history: &History) {
    let stops = history.stops();
    let order: Vec<&str> = stops.iter().map(|(_, n)| n.as_str()).collect();
    let expected: Vec<&str> = TRADING.iter().rev().copied().collect();
    assert_eq!(
        order, expected,
        "stopped dependents first, in reverse order"
    );
    for pair in TRADING.windows(2) {
        let (dependency, dependent) = (pair[0], pair[1]);
        let dependent_gone = history
            .pods_gone(dependent)
            .expect("dependent pods removed");
        let dependency_stop = history.stop_of(dependency).expect("stopped");
        assert!(
            dependent_gone < dependency_stop,
            "{dependency} scaled down (version {dependency_stop}) before {dependent}'s pods were gone (version {dependent_gone})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_root_stops_its_dependents_first_in_reverse_order() {
    let env = TestEnv::start().await;
    env.apply(&chain(&TRADING, "500ms")).await;
    env.wait_running(&TRADING).await;

    env.patch_spec("market-data-service", json!({"desiredState": "Stopped"}))
        .await;
    let done = env
        .wait_for(
            "all Stopped",
            Duration::from_secs(30),
            all_in(Phase::Stopped, &TRADING),
        )
        .await;
    assert_stopped_in_reverse(&env.history().await);

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
    assert!(
        root.history.iter().any(|h| h.action == "Stop"),
        "{:#?}",
        root.history
    );

    // And back: starting the root brings the stack up again in order.
    env.patch_spec("market-data-service", json!({"desiredState": "Running"}))
        .await;
    env.wait_for(
        "Running again",
        Duration::from_secs(30),
        all_in(Phase::Running, &TRADING),
    )
    .await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_platform_with_dependents_follows_the_shutdown_order() {
    let env = TestEnv::start().await;
    env.apply(&chain(&TRADING, "500ms")).await;
    let running = env.wait_running(&TRADING).await;
    assert!(
        running["market-data-service"]
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );

    let api: Api<Platform> = Api::namespaced(env.client(), env.namespace());
    api.delete("market-data-service", &DeleteParams::default())
        .await
        .expect("delete accepted");
    let rest = &TRADING[1..];
    env.wait_for(
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

    let history = env.history().await;
    assert_stopped_in_reverse(&history);
    let root_stop = history
        .stop_of("market-data-service")
        .expect("root stopped");
    let finalizer_removed = history
        .finalizer_removed("market-data-service")
        .expect("finalizer removed");
    let root_pods_gone = history
        .pods_gone("market-data-service")
        .expect("root pods gone");
    assert!(
        root_stop < finalizer_removed && root_pods_gone < finalizer_removed,
        "the finalizer is removed at the end (stop {root_stop}, pods gone {root_pods_gone}, finalizer removed {finalizer_removed})"
    );
    env.shutdown().await;
}
