//! Restarts, configuration changes and the shutdown timeout.

mod operator_support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::ListParams;
use operator_support::*;
use platform_operator::controller::model::{RESTART_ANNOTATION, RESTART_DEPENDENTS_ANNOTATION};
use platform_operator::crd::Phase;
use platform_operator::fixtures::{TEST_NAMESPACE, platform};
use serde_json::json;

async fn annotate(client: &kube::Client, name: &str, annotations: BTreeMap<&str, &str>) {
    patch_platform(
        client,
        name,
        json!({"metadata": {"annotations": annotations}}),
    )
    .await;
}

async fn pod_names(client: &kube::Client, platform: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(&format!("pmp.dev/platform={platform}")))
        .await
        .expect("pods");
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_request_rolls_the_pods_and_leaves_dependents_running() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply(&client, &chain(&["db", "app"], "500ms")).await;
    wait_running(&client, &["db", "app"]).await;
    let db_before = pod_names(&client, "db").await;
    let app_before = pod_names(&client, "app").await;

    annotate(
        &client,
        "db",
        [(RESTART_ANNOTATION, "2026-11-26T12:00:00Z")].into(),
    )
    .await;
    let done = wait_for(&client, "db restarted", Duration::from_secs(30), |p| {
        p.get("db")
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.restart_count)
            == Some(1)
            && p.get("db").and_then(phase) == Some(Phase::Running)
    })
    .await;
    let status = done["db"].status.clone().expect("status");
    assert!(status.last_restart_time.is_some());
    assert!(status.history.iter().any(|h| h.action == "Restart"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pod_names(&client, "db").await == db_before || pod_names(&client, "db").await.len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "db pods were not replaced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pod_names(&client, "app").await,
        app_before,
        "dependents keep running"
    );
    assert_eq!(
        done["app"].status.as_ref().and_then(|s| s.restart_count),
        Some(0)
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascading_restart_rolls_dependents_after_the_platform_is_ready_again() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply(&client, &chain(&["db", "app", "web"], "1s")).await;
    wait_running(&client, &["db", "app", "web"]).await;
    let before = sandbox.cluster.writes().len();

    annotate(
        &client,
        "db",
        [
            (RESTART_ANNOTATION, "r1"),
            (RESTART_DEPENDENTS_ANNOTATION, "true"),
        ]
        .into(),
    )
    .await;
    wait_for(&client, "all restarted", Duration::from_secs(60), |p| {
        ["db", "app", "web"].iter().all(|n| {
            p.get(*n)
                .and_then(|x| x.status.as_ref())
                .and_then(|s| s.restart_count)
                == Some(1)
                && p.get(*n).and_then(phase) == Some(Phase::Running)
        })
    })
    .await;
    // Each platform's restart (its Deployment template change) comes after its dependency's
    // new pods were Ready.
    let writes = &sandbox.cluster.writes()[before..];
    let rolled = |name: &str| {
        writes
            .iter()
            .find(|w| {
                w.resource.plural == "deployments"
                    && w.subresource.is_none()
                    && w.name == name
                    && w.object
                        .pointer("/spec/template/metadata/annotations/pmp.dev~1restartedAt")
                        .is_some()
            })
            .map(|w| w.seq)
            .expect("template rolled")
    };
    let ready_again = |name: &str| {
        writes
            .iter()
            .filter(|w| {
                w.resource.plural == "deployments"
                    && w.subresource.as_deref() == Some("status")
                    && w.name == name
            })
            .find(|w| {
                w.object
                    .pointer("/status/updatedReplicas")
                    .and_then(|v| v.as_i64())
                    == Some(1)
                    && w.object
                        .pointer("/status/readyReplicas")
                        .and_then(|v| v.as_i64())
                        == Some(1)
                    && w.seq > rolled(name)
            })
            .map(|w| w.seq)
            .expect("ready again")
    };
    assert!(
        ready_again("db") < rolled("app"),
        "app restarts after db is Ready again"
    );
    assert!(
        ready_again("app") < rolled("web"),
        "web restarts after app is Ready again"
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_rendered_mounted_and_a_change_rolls_the_pods() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply(
        &client,
        &[platform("cfg")
            .config("feeds", "nasdaq")
            .pod_annotation("sim.pmp.dev/ready-after", "500ms")
            .build()],
    )
    .await;
    wait_running(&client, &["cfg"]).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    let map = maps.get("cfg-config").await.expect("config map");
    assert_eq!(
        map.data
            .as_ref()
            .and_then(|d| d.get("feeds"))
            .map(String::as_str),
        Some("nasdaq")
    );
    let before = pod_names(&client, "cfg").await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), TEST_NAMESPACE);
    let pod_spec = deployments
        .get("cfg")
        .await
        .expect("deployment")
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod");
    let mount = pod_spec.containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default();
    assert!(
        mount.iter().any(|m| m.mount_path == "/etc/platform/config"),
        "config mounted"
    );

    patch_spec(&client, "cfg", json!({"config": {"feeds": "nyse"}})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let map = maps.get("cfg-config").await.expect("config map");
        let now = pod_names(&client, "cfg").await;
        if map
            .data
            .as_ref()
            .and_then(|d| d.get("feeds"))
            .map(String::as_str)
            == Some("nyse")
            && now.len() == 1
            && now != before
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "config change did not roll the pods"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_stop_proceeds_after_the_shutdown_timeout_with_a_warning() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    let mut root = platform("root")
        .pod_annotation("sim.pmp.dev/ready-after", "500ms")
        .build();
    root.spec.shutdown = Some(platform_operator::crd::ShutdownSettings {
        grace_period_seconds: None,
        timeout_seconds: Some(5),
    });
    let mut stuck = platform("stuck")
        .depends_on(["root"])
        .pod_annotation("sim.pmp.dev/ready-after", "500ms")
        .pod_annotation("sim.pmp.dev/stop-after", "1h")
        .build();
    stuck.spec.shutdown = Some(platform_operator::crd::ShutdownSettings {
        grace_period_seconds: Some(3600),
        timeout_seconds: None,
    });
    apply(&client, &[root, stuck]).await;
    wait_running(&client, &["root", "stuck"]).await;

    patch_spec(&client, "root", json!({"desiredState": "Stopped"})).await;
    let done = wait_for(
        &client,
        "root stopped despite stuck",
        Duration::from_secs(30),
        |p| p.get("root").and_then(phase) == Some(Phase::Stopped),
    )
    .await;
    assert_eq!(
        phase(&done["stuck"]),
        Some(Phase::Stopping),
        "the dependent is still stopping"
    );
    let history = done["root"].status.clone().expect("status").history;
    assert!(
        history.iter().any(|h| h.action == "ShutdownTimeout"),
        "{history:?}"
    );
    let warning = sandbox.cluster.writes().iter().any(|w| {
        w.resource.plural == "events"
            && w.object["reason"] == "ShutdownTimeout"
            && w.object["type"] == "Warning"
    });
    assert!(warning, "a Warning event records the timeout");
    sandbox.shutdown().await;
}
