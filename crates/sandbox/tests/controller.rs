//! A kube-runtime Controller over Platforms works against the simulator: reconciles fire on
//! create, on an owned Deployment's change and on a mapped Pod's change.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use platform_operator::crd::Platform;
use platform_operator::fixtures::{TEST_NAMESPACE, platform};
use platform_sandbox::sim_config;
use pmp_sim::SimCluster;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

async fn settle(count: &AtomicUsize) -> usize {
    let mut last = count.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = count.load(Ordering::SeqCst);
        if now == last {
            return now;
        }
        last = now;
    }
}

async fn wait_above(count: &AtomicUsize, floor: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::SeqCst) <= floor {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconcile on {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_reconciles_on_create_owned_and_mapped_changes() {
    let sim = SimCluster::start(sim_config()).await.expect("sim");
    let client = sim.client();
    let count = Arc::new(AtomicUsize::new(0));
    let controller = Controller::new(
        Api::<Platform>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
        |pod: Pod| {
            let name = pod.labels().get("pmp.dev/platform")?.clone();
            Some(ObjectRef::<Platform>::new(&name).within(&pod.namespace()?))
        },
    )
    .run(
        |_platform: Arc<Platform>, count: Arc<AtomicUsize>| async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Never>(Action::await_change())
        },
        |_, _, _| Action::await_change(),
        count.clone(),
    )
    .for_each(|_| futures::future::ready(()));
    let task = tokio::spawn(controller);

    let platforms: Api<Platform> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    let created = platforms
        .create(&PostParams::default(), &platform("web").build())
        .await
        .expect("created");
    wait_above(&count, 0, "create").await;
    let after_create = settle(&count).await;

    let owner = created.controller_owner_ref(&()).expect("owner ref");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": TEST_NAMESPACE, "ownerReferences": [owner]},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), TEST_NAMESPACE)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("deployment created");
    wait_above(&count, after_create, "an owned Deployment").await;
    let after_owned = settle(&count).await;

    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-pod", "namespace": TEST_NAMESPACE, "labels": {"pmp.dev/platform": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod");
    Api::<Pod>::namespaced(client.clone(), TEST_NAMESPACE)
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
    wait_above(&count, after_owned, "a mapped Pod").await;

    task.abort();
    sim.shutdown().await;
}
