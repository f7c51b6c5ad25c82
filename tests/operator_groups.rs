//! PlatformGroups: stack-wide start and stop, defaults, start limits, ordering edges, status,
//! and conflicts.

mod operator_support;

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use operator_support::*;
use platform_operator::crd::{
    GroupDefaults, Phase, PlatformGroup, ShutdownSettings, group_condition,
};
use platform_operator::fixtures::{TEST_NAMESPACE, group, platform};
use serde_json::json;

fn labelled_chain(names: &[&str]) -> Vec<platform_operator::crd::Platform> {
    chain(names, "500ms")
        .into_iter()
        .map(|mut p| {
            p.metadata.labels = Some([("stack".to_string(), "trading".to_string())].into());
            p
        })
        .collect()
}

async fn group_status(
    client: &kube::Client,
    name: &str,
) -> platform_operator::crd::PlatformGroupStatus {
    let api: Api<PlatformGroup> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    api.get(name)
        .await
        .expect("group")
        .status
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_starts_in_order_reports_its_waves_and_stops_in_reverse() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply_group(
        &client,
        &group("trading").selecting("stack", "trading").build(),
    )
    .await;
    apply(&client, &labelled_chain(&TRADING)).await;
    wait_running(&client, &TRADING).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = group_status(&client, "trading").await;
        if status.ready_members == 6 || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.ready.as_deref(), Some("6/6"));
    assert_eq!(status.total_members, 6);
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let waves: Vec<Vec<String>> = TRADING.iter().map(|n| vec![n.to_string()]).collect();
    assert_eq!(status.startup_order, waves);
    assert_eq!(status.phase_counts.get("Running"), Some(&6));
    let valid = status
        .conditions
        .iter()
        .find(|c| c.type_ == group_condition::GRAPH_VALID)
        .expect("GraphValid");
    assert_eq!(valid.status, "True");
    assert_started_in_order(&sandbox.cluster.writes(), &chain_dependencies(&TRADING));

    let api: Api<PlatformGroup> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    let params = PatchParams {
        field_manager: Some(USER.into()),
        ..Default::default()
    };
    api.patch(
        "trading",
        &params,
        &Patch::Merge(json!({"spec": {"desiredState": "Stopped"}})),
    )
    .await
    .expect("group stopped");
    let done = wait_for(
        &client,
        "Stopped",
        Duration::from_secs(30),
        all_in(Phase::Stopped, &TRADING),
    )
    .await;
    let order: Vec<String> = stops(&sandbox.cluster.writes())
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let reversed: Vec<String> = TRADING.iter().rev().map(|n| n.to_string()).collect();
    assert_eq!(order, reversed, "a group stops in reverse order");
    assert_eq!(
        done["market-data-service"]
            .status
            .as_ref()
            .and_then(|s| s.stopped_by.clone())
            .as_deref(),
        Some("PlatformGroup/trading: spec.desiredState is Stopped")
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_inherit_group_defaults_they_do_not_set() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    let defaults = GroupDefaults {
        shutdown: Some(ShutdownSettings {
            grace_period_seconds: Some(45),
            timeout_seconds: None,
        }),
        ..Default::default()
    };
    apply_group(
        &client,
        &group("g")
            .selecting("stack", "trading")
            .defaults(defaults)
            .build(),
    )
    .await;
    let mut own = platform("own").label("stack", "trading").build();
    own.spec.shutdown = Some(ShutdownSettings {
        grace_period_seconds: Some(5),
        timeout_seconds: None,
    });
    apply(
        &client,
        &[platform("inherits").label("stack", "trading").build(), own],
    )
    .await;
    wait_running(&client, &["inherits", "own"]).await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), TEST_NAMESPACE);
    let grace = |name: &'static str| {
        let deployments = deployments.clone();
        async move {
            deployments
                .get(name)
                .await
                .expect("deployment")
                .spec
                .and_then(|s| s.template.spec)
                .and_then(|p| p.termination_grace_period_seconds)
        }
    };
    assert_eq!(grace("inherits").await, Some(45), "from the group");
    assert_eq!(grace("own").await, Some(5), "the member's own value wins");
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_starts_and_ordering_edges_are_honoured() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    let names: Vec<String> = (0..5).map(|i| format!("w{i}")).collect();
    apply_group(
        &client,
        &group("g")
            .selecting("stack", "trading")
            .max_concurrent_starts(2)
            .ordering("w0", "w4")
            .build(),
    )
    .await;
    let members: Vec<_> = names
        .iter()
        .map(|n| {
            platform(n)
                .label("stack", "trading")
                .pod_annotation("sim.pmp.dev/ready-after", "2s")
                .build()
        })
        .collect();
    apply(&client, &members).await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_for(
        &client,
        "Running",
        Duration::from_secs(60),
        all_in(Phase::Running, &refs),
    )
    .await;

    let writes = sandbox.cluster.writes();
    let starts = starts(&writes);
    let ready = first_ready(&writes);
    // At any start, fewer than two others may have started without being Ready yet.
    for (name, at) in &starts {
        let starting = starts
            .iter()
            .filter(|(other, s)| {
                *other != name && *s < at && ready.get(*other).is_none_or(|r| r > at)
            })
            .count();
        assert!(
            starting < 2,
            "{name} started while {starting} others were starting"
        );
    }
    assert!(
        ready["w0"] < starts["w4"],
        "the ordering edge w0 → w4 holds"
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_selected_by_two_groups_is_reported_on_both_and_keeps_running() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply(
        &client,
        &[platform("shared")
            .label("stack", "trading")
            .label("tier", "core")
            .build()],
    )
    .await;
    wait_running(&client, &["shared"]).await;
    apply_group(
        &client,
        &group("one").selecting("stack", "trading").stopped().build(),
    )
    .await;
    apply_group(&client, &group("two").selecting("tier", "core").build()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let one = group_status(&client, "one").await;
        let two = group_status(&client, "two").await;
        let reported = |s: &platform_operator::crd::PlatformGroupStatus, other: &str| {
            s.graph_errors
                .iter()
                .any(|e| e.contains("shared") && e.contains(other))
        };
        if reported(&one, "two") && reported(&two, "one") {
            let valid = one
                .conditions
                .iter()
                .find(|c| c.type_ == group_condition::GRAPH_VALID)
                .expect("GraphValid");
            assert_eq!(valid.status, "False");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "conflict not reported: {one:?} {two:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let current = platforms(&client).await;
    assert_eq!(
        phase(&current["shared"]),
        Some(Phase::Running),
        "the stopped group does not apply to a contested platform"
    );
    sandbox.shutdown().await;
}
