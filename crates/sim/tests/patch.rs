//! Patch formats, server-side apply and the status / scale subresources.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

fn deployment(name: &str) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
                {"name": "side", "image": "side:1"}]}}}})
}

#[tokio::test]
async fn json_patch_with_failing_test_is_422() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "j"}, "data": {"a": "1"}})).unwrap(),
    )
    .await
    .unwrap();
    let path = "/api/v1/namespaces/default/configmaps/j";
    let ok = br#"[{"op":"test","path":"/data/a","value":"1"},{"op":"replace","path":"/data/a","value":"2"}]"#;
    let (code, patched) = raw(&sim, "PATCH", path, "application/json-patch+json", ok).await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["data"]["a"], "2");
    let failing = br#"[{"op":"test","path":"/data/a","value":"1"}]"#;
    let (code, status) = raw(&sim, "PATCH", path, "application/json-patch+json", failing).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["kind"], "Status");
    let (code, _) = raw(
        &sim,
        "PATCH",
        path,
        "application/json-patch+json",
        b"{not json",
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = raw(&sim, "PATCH", path, "text/plain", b"{}").await;
    assert_eq!(code, 415);
    sim.shutdown().await;
}

#[tokio::test]
async fn strategic_merge_merges_containers_env_and_ports_by_key() {
    let sim = start().await;
    let api: Api<Deployment> = Api::namespaced(sim.client(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(deployment("s")).unwrap(),
    )
    .await
    .unwrap();
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}], "ports": [{"containerPort": 443}]},
        {"name": "side", "$patch": "delete"}]}}}});
    let d = api
        .patch("s", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let containers = d.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("app:2"));
    assert_eq!(containers[0].env.as_ref().unwrap().len(), 2);
    assert_eq!(containers[0].ports.as_ref().unwrap().len(), 2);

    // Custom resources do not support strategic merge patch.
    platforms(&sim, "default")
        .create(&PostParams::default(), &platform("p", "x"))
        .await
        .unwrap();
    let err = platforms(&sim, "default")
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 415));
    sim.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_creates_records_ownership_and_conflicts() {
    let sim = start().await;
    let api = platforms(&sim, "default");
    let config = json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform", "metadata": {"name": "ssa", "labels": {"a": "1"}},
        "spec": {"image": "img:1", "replicas": 2}});
    let created = api
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&config))
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["replicas"], 2);
    let managed = created.metadata.managed_fields.clone().unwrap();
    let alice = managed
        .iter()
        .find(|m| m.manager.as_deref() == Some("alice"))
        .unwrap();
    assert_eq!(alice.operation.as_deref(), Some("Apply"));
    let fields = &alice.fields_v1.as_ref().unwrap().0;
    assert!(fields["f:spec"]["f:replicas"].is_object(), "{fields}");
    assert!(
        fields["f:metadata"]["f:labels"]["f:a"].is_object(),
        "{fields}"
    );

    // bob wants a different replicas: 409 listing the field and the manager, unless forced.
    let bob = json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform", "metadata": {"name": "ssa"}, "spec": {"replicas": 3}});
    let err = api
        .patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&bob))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected API error")
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains("conflict with \"alice\"")
            && status.message.contains(".spec.replicas"),
        "{}",
        status.message
    );
    let (code, raw_status) = raw(&sim, "PATCH", "/apis/pmp.dev/v1alpha1/namespaces/default/platforms/ssa?fieldManager=bob",
        "application/apply-patch+yaml", b"apiVersion: pmp.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: ssa\nspec:\n  replicas: 3\n").await;
    assert_eq!(code, 409);
    assert_eq!(
        raw_status["details"]["causes"][0]["reason"],
        "FieldManagerConflict"
    );
    assert_eq!(
        raw_status["details"]["causes"][0]["field"],
        ".spec.replicas"
    );

    // Same value: shared ownership, no conflict.
    let same = json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform", "metadata": {"name": "ssa"}, "spec": {"replicas": 2}});
    api.patch("ssa", &PatchParams::apply("carol"), &Patch::Apply(&same))
        .await
        .unwrap();

    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["replicas"], 3);

    // alice stops applying the label: nobody else owns it, so it is removed.
    let alice2 = json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform", "metadata": {"name": "ssa"}, "spec": {"image": "img:1"}});
    let after = api
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&alice2))
        .await
        .unwrap();
    assert!(
        after
            .metadata
            .labels
            .as_ref()
            .is_none_or(|l| !l.contains_key("a")),
        "{:?}",
        after.metadata.labels
    );
    assert_eq!(after.data["spec"]["replicas"], 3, "bob still owns replicas");

    // fieldManager is required for apply.
    let (code, _) = raw(
        &sim,
        "PATCH",
        "/apis/pmp.dev/v1alpha1/namespaces/default/platforms/ssa",
        "application/apply-patch+yaml",
        b"{}",
    )
    .await;
    assert_eq!(code, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn status_subresource_semantics() {
    let sim = start().await;
    let api = platforms(&sim, "default");
    api.create(&PostParams::default(), &platform("st", "img"))
        .await
        .unwrap();
    // Main resource writes ignore status.
    let main = api
        .patch(
            "st",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Hacked"}, "spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    assert!(main.data.get("status").is_none());
    assert_eq!(main.data["spec"]["replicas"], 2);
    // Status writes ignore everything but status.
    let st = api.patch_status("st", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"replicas": 9}, "metadata": {"labels": {"x": "y"}}}))).await.unwrap();
    assert_eq!(st.data["status"]["phase"], "Ready");
    assert_eq!(st.data["spec"]["replicas"], 2);
    assert!(st.metadata.labels.is_none());
    assert_eq!(
        st.metadata.generation,
        Some(2),
        "status writes never bump generation"
    );

    // Server-side apply on /status.
    let status_cfg = json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform", "metadata": {"name": "st"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    // The merge patch above made its manager own status.phase: applying another value conflicts.
    let err = api
        .patch_status(
            "st",
            &PatchParams::apply("status-writer"),
            &Patch::Apply(&status_cfg),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
    let applied = api
        .patch_status(
            "st",
            &PatchParams::apply("status-writer").force(),
            &Patch::Apply(&status_cfg),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["status"]["phase"], "Running");
    let entry = applied
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("status-writer"))
        .unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    let rv = applied.metadata.resource_version.clone();
    let again = api
        .patch_status(
            "st",
            &PatchParams::apply("status-writer").force(),
            &Patch::Apply(&status_cfg),
        )
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version, rv,
        "a repeated status apply is a no-op"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn scale_subresource_on_deployments() {
    let sim = start().await;
    let api: Api<Deployment> = Api::namespaced(sim.client(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(deployment("sc")).unwrap(),
    )
    .await
    .unwrap();
    let scale: Scale = api.get_scale("sc").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=sc"));
    let patched = api
        .patch_scale(
            "sc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(4));
    let d = api.get("sc").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4));
    assert_eq!(d.metadata.generation, Some(2));
    let write = sim
        .writes()
        .into_iter()
        .rev()
        .find(|w| w.resource.plural == "deployments")
        .unwrap();
    assert_eq!(write.subresource.as_deref(), Some("scale"));
    sim.shutdown().await;
}
