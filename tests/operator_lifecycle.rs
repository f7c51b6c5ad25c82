//! Restarts, configuration changes and the shutdown timeout.

mod operator_support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use operator_support::*;
use platform_operator::controller::model::{RESTART_ANNOTATION, RESTART_DEPENDENTS_ANNOTATION};
use platform_operator::crd::Phase;
use platform_operator::fixtures::platform;
use serde_json::json;

async fn annotate(env: &TestEnv, name: &str, annotations: BTreeMap<&str, &str>) {
    env.patch_platform(name, json!({"metadata": {"annotations": annotations}}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_request_rolls_the_pods_and_leaves_dependents_running() {
    let env = TestEnv::start().await;
    env.apply(&chain(&["db", "app"], "500ms")).await;
    env.wait_running(&["db", "app"]).await;
    let db_before = env.view().pod_names("db");
    let app_before = env.view().pod_names("app");
    assert_eq!(db_before.len(), 1, "{db_before:?}");

    annotate(
        &env,
        "db",
        [(RESTART_ANNOTATION, "2026-11-26T12:00:00Z")].into(),
    )
    .await;
    let done = env
        .wait_for("db restarted", Duration::from_secs(30), |p| {
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
    env.wait_until("db's pod replaced", Duration::from_secs(20), |view| {
        let now = view.pod_names("db");
        (now.len() == 1 && now != db_before).then_some(())
    })
    .await;
    assert_eq!(
        env.view().pod_names("app"),
        app_before,
        "dependents keep running"
    );
    assert_eq!(
        done["app"].status.as_ref().and_then(|s| s.restart_count),
        Some(0)
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascading_restart_rolls_dependents_after_the_platform_is_ready_again() {
    let env = TestEnv::start().await;
    // Long enough that a dependent restarted too early cannot win the race by chance.
    env.apply(&chain(&["db", "app", "web"], "5s")).await;
    env.wait_running(&["db", "app", "web"]).await;
    let before = env.history().await.last_rv();
    let old_pods: Vec<String> = ["db", "app", "web"]
        .iter()
        .flat_map(|n| env.view().pod_names(n))
        .collect();

    annotate(
        &env,
        "db",
        [
            (RESTART_ANNOTATION, "r1"),
            (RESTART_DEPENDENTS_ANNOTATION, "true"),
        ]
        .into(),
    )
    .await;
    env.wait_for("all restarted", Duration::from_secs(60), |p| {
        ["db", "app", "web"].iter().all(|n| {
            p.get(*n)
                .and_then(|x| x.status.as_ref())
                .and_then(|s| s.restart_count)
                == Some(1)
                && p.get(*n).and_then(phase) == Some(Phase::Running)
        })
    })
    .await;
    env.wait_until(
        "every platform's new pod Ready, the old ones gone",
        Duration::from_secs(60),
        |view| {
            ["db", "app", "web"]
                .iter()
                .all(|n| {
                    let ready = view.ready_pod_names(n);
                    view.pod_names(n).len() == 1
                        && ready.len() == 1
                        && !old_pods.contains(&ready[0])
                })
                .then_some(())
        },
    )
    .await;
    // Each platform's restart (its Deployment template change) comes after its dependency's
    // new pods were Ready.
    let history = env.history().await.since(before);
    let rolled = |name: &str| {
        history
            .template_annotated(name, RESTART_ANNOTATION)
            .unwrap_or_else(|| panic!("{name}'s template rolled"))
    };
    let ready_again = |name: &str| {
        history
            .pods_ready_after(name, rolled(name), 1)
            .unwrap_or_else(|| panic!("{name}'s new pod Ready"))
    };
    for (dependency, dependent) in [("db", "app"), ("app", "web")] {
        assert!(
            ready_again(dependency) < rolled(dependent),
            "{dependent} was restarted (version {}) before {dependency}'s new pod was Ready (version {})",
            rolled(dependent),
            ready_again(dependency)
        );
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_rendered_mounted_and_a_change_rolls_the_pods() {
    let env = TestEnv::start().await;
    env.apply(&[platform("cfg")
        .config("feeds", "nasdaq")
        .pod_annotation("sim.pmp.dev/ready-after", "500ms")
        .build()])
        .await;
    env.wait_running(&["cfg"]).await;
    let feeds = |view: &View| {
        view.config_map("cfg-config")
            .and_then(|m| m.data)
            .and_then(|d| d.get("feeds").cloned())
    };
    assert_eq!(feeds(&env.view()).as_deref(), Some("nasdaq"));
    let before = env.view().pod_names("cfg");
    let deployments: Api<Deployment> = Api::namespaced(env.client(), env.namespace());
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

    env.patch_spec("cfg", json!({"config": {"feeds": "nyse"}}))
        .await;
    env.wait_until(
        "the config change rolling the pods",
        Duration::from_secs(20),
        |view| {
            let now = view.pod_names("cfg");
            (feeds(view).as_deref() == Some("nyse") && now.len() == 1 && now != before)
                .then_some(())
        },
    )
    .await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_stop_proceeds_after_the_shutdown_timeout_with_a_warning() {
    let env = TestEnv::start().await;
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
    env.apply(&[root, stuck]).await;
    env.wait_running(&["root", "stuck"]).await;

    env.patch_spec("root", json!({"desiredState": "Stopped"}))
        .await;
    let done = env
        .wait_for("root stopped despite stuck", Duration::from_secs(30), |p| {
            p.get("root").and_then(phase) == Some(Phase::Stopped)
        })
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
    env.wait_until(
        "a Warning event recording the timeout",
        Duration::from_secs(10),
        |view| {
            view.events()
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("ShutdownTimeout")
                        && e.type_.as_deref() == Some("Warning")
                })
                .then_some(())
        },
    )
    .await;
    env.shutdown().await;
}
