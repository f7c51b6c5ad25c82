//! Deletion: finalizers, graceful pod deletion on the SimClock, ownerReference cascades and
//! namespace deletion.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use pmp_sim::SimCluster;
use serde_json::json;
use support::*;

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn owner_ref(kind: &str, api_version: &str, name: &str, uid: &str) -> serde_json::Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true})
}

fn pod(name: &str, owner: Option<serde_json::Value>, node: Option<&str>) -> Pod {
    let mut p = json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "img"}]}});
    if let Some(o) = owner {
        p["metadata"]["ownerReferences"] = json!([o]);
    }
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    serde_json::from_value(p).unwrap()
}

#[tokio::test]
async fn finalizer_holds_deletion_until_removed() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "f", "finalizers": ["pmp.dev/cleanup"]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let deleting = api
        .delete("f", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(0));
    assert!(
        api.get_opt("f").await.unwrap().is_some(),
        "held by the finalizer"
    );

    // No new finalizers once deleting.
    let err = api
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["pmp.dev/cleanup", "other"]}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 422));

    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        api.get_opt("f").await.unwrap().is_none(),
        "removed with its last finalizer"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn pods_get_a_grace_period_on_the_sim_clock() {
    let sim = start().await;
    let api: Api<Pod> = Api::namespaced(sim.client(), "default");
    api.create(&PostParams::default(), &pod("bound", None, Some("node-1")))
        .await
        .unwrap();
    api.create(&PostParams::default(), &pod("unbound", None, None))
        .await
        .unwrap();
    api.create(&PostParams::default(), &pod("early", None, Some("node-1")))
        .await
        .unwrap();

    api.delete("unbound", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        api.get_opt("unbound").await.unwrap().is_none(),
        "an unscheduled pod goes at once"
    );

    let terminating = api
        .delete("bound", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        api.get_opt("bound").await.unwrap().is_some(),
        "still terminating"
    );
    sim.clock().advance(Duration::from_secs(31));
    eventually("grace period end", async || {
        api.get_opt("bound").await.unwrap().is_none()
    })
    .await;

    // The simulated kubelet may end it earlier.
    api.delete("early", &DeleteParams::default()).await.unwrap();
    assert!(sim.remove_pod_now("default", "early"));
    assert!(api.get_opt("early").await.unwrap().is_none());
    let removal = sim
        .writes()
        .into_iter()
        .rev()
        .find(|w| w.name == "early")
        .unwrap();
    assert_eq!(removal.actor, "kubelet");
    sim.shutdown().await;
}

async fn platform_with_dependents(sim: &SimCluster) -> (String, String) {
    let plat = platforms(sim, "default")
        .create(&PostParams::default(), &platform("owner", "img"))
        .await
        .unwrap();
    let uid = plat.metadata.uid.clone().unwrap();
    let owner = owner_ref("Platform", "pmp.dev/v1alpha1", "owner", &uid);
    let deployments: Api<Deployment> = Api::namespaced(sim.client(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "owner", "ownerReferences": [owner.clone()]},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "img"}]}}}})).unwrap();
    let d = deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "owner-config", "ownerReferences": [owner]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let d_uid = d.meta().uid.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    for name in ["owner-1", "owner-2"] {
        pods.create(
            &PostParams::default(),
            &pod(
                name,
                Some(owner_ref("Deployment", "apps/v1", "owner", &d_uid)),
                None,
            ),
        )
        .await
        .unwrap();
    }
    (uid, d_uid)
}

#[tokio::test]
async fn deleting_an_owner_removes_its_dependents_in_the_background() {
    let sim = start().await;
    platform_with_dependents(&sim).await;
    platforms(&sim, "default")
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(sim.client(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    eventually("cascade", async || {
        deployments.get_opt("owner").await.unwrap().is_none()
            && cms.get_opt("owner-config").await.unwrap().is_none()
            && pods.get_opt("owner-1").await.unwrap().is_none()
            && pods.get_opt("owner-2").await.unwrap().is_none()
    })
    .await;
    let gc_writes = sim
        .writes()
        .into_iter()
        .filter(|w| w.actor == "generic-garbage-collector")
        .count();
    assert_eq!(gc_writes, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn foreground_and_orphan_propagation() {
    let sim = start().await;
    platform_with_dependents(&sim).await;
    let api = platforms(&sim, "default");
    let owner = api
        .delete("owner", &DeleteParams::foreground())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(
        owner
            .metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_string())
    );
    eventually("foreground completion", async || {
        api.get_opt("owner").await.unwrap().is_none()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(sim.client(), "default");
    assert!(
        pods.get_opt("owner-1").await.unwrap().is_none(),
        "dependents went before the owner"
    );

    platform_with_dependents(&sim).await;
    api.delete("owner", &DeleteParams::orphan()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let kept = cms.get("owner-config").await.unwrap();
    assert!(
        kept.metadata.owner_references.is_none(),
        "orphaned dependents lose the reference"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn namespace_deletion_removes_everything_in_it() {
    let sim = start().await;
    let results = sim.apply_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: team\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: team\n").await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let namespaces: Api<Namespace> = Api::all(sim.client());
    let terminating = namespaces
        .delete("team", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        terminating.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    eventually("namespace gone", async || {
        namespaces.get_opt("team").await.unwrap().is_none()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "team");
    assert!(cms.get_opt("a").await.unwrap().is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn creating_in_a_terminating_namespace_is_forbidden() {
    let sim = start().await;
    sim.apply_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: t\n  finalizers: [x/y]\n").await;
    let namespaces: Api<Namespace> = Api::all(sim.client());
    namespaces
        .delete("t", &DeleteParams::default())
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(sim.client(), "t");
    let err = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "new"}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 403));
    sim.shutdown().await;
}
