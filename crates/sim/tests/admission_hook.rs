//! The admission hook contract: the simulator prepares a hook once per served CRD version and,
//! on every write of a custom resource, asks it for unknown fields (strict), prunes, defaults
//! and validates, answering `400` / `422` with the hook's causes. The checks here are a toy;
//! the project's real schema checks are tested with the glue in `crates/sandbox`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use pmp_sim::{CrdAdmission, SchemaHook, SimConfig, StatusCause};
use serde_json::{Value, json};
use support::*;

/// Requires `spec.image`, defaults `spec.replicas` to 1 and knows no other spec field.
#[derive(Debug, Default)]
struct ToyAdmission {
    prepared: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct ToySchema;

impl CrdAdmission for ToyAdmission {
    fn prepare(
        &self,
        _crd: &CustomResourceDefinition,
        _version: &str,
    ) -> Option<Arc<dyn SchemaHook>> {
        self.prepared.fetch_add(1, Ordering::SeqCst);
        Some(Arc::new(ToySchema))
    }
}

const KNOWN: [&str; 3] = ["image", "replicas", "dependsOn"];

impl SchemaHook for ToySchema {
    fn unknown_fields(&self, object: &Value) -> Vec<String> {
        let Some(spec) = object.get("spec").and_then(Value::as_object) else {
            return Vec::new();
        };
        spec.keys()
            .filter(|k| !KNOWN.contains(&k.as_str()))
            .map(|k| format!("spec.{k}"))
            .collect()
    }

    fn prune(&self, object: &mut Value) {
        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
            spec.retain(|k, _| KNOWN.contains(&k.as_str()));
        }
    }

    fn apply_defaults(&self, object: &mut Value) {
        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("replicas").or_insert(json!(1));
        }
    }

    fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<StatusCause> {
        let mut causes = Vec::new();
        if object.pointer("/spec/image").is_none() {
            causes.push(StatusCause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "spec.image".into(),
            });
        }
        let image = |o: &Value| o.pointer("/spec/image").cloned();
        if old.is_some_and(|old| image(old) != image(object)) {
            causes.push(StatusCause {
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: image is immutable".into(),
                field: "spec.image".into(),
            });
        }
        causes
    }
}

async fn start_toy() -> (pmp_sim::SimCluster, Arc<AtomicUsize>) {
    let admission = ToyAdmission::default();
    let prepared = admission.prepared.clone();
    let sim = start_with(
        SimConfig::default()
            .with_crds(vec![platform_crd()])
            .with_admission(admission),
    )
    .await;
    (sim, prepared)
}

#[tokio::test]
async fn the_hook_is_prepared_once_per_served_version() {
    let (sim, prepared) = start_toy().await;
    let api = platforms(&sim, "default");
    for name in ["a", "b", "c"] {
        api.create(&PostParams::default(), &platform(name, "nginx"))
            .await
            .unwrap();
    }
    assert_eq!(prepared.load(Ordering::SeqCst), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn writes_are_pruned_defaulted_and_validated_by_the_hook() {
    let (sim, _) = start_toy().await;
    let api = platforms(&sim, "default");

    let mut obj = platform("d", "nginx");
    obj.data["spec"]["unknownField"] = json!("dropped");
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.data["spec"]["replicas"], 1, "defaulted");
    assert!(created.data["spec"].get("unknownField").is_none(), "pruned");

    // The hook's causes become a 422 Invalid with details.causes.
    let body = serde_json::to_vec(
        &json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform",
        "metadata": {"name": "bad"}, "spec": {}}),
    )
    .unwrap();
    let (code, status) = raw(
        &sim,
        "POST",
        "/apis/pmp.dev/v1alpha1/namespaces/default/platforms",
        "application/json",
        &body,
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "Platform.pmp.dev \"bad\" is invalid: spec.image: Required value"
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.image"}])
    );

    // Updates pass the stored object as `old`.
    let err = api
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": "other"}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 422 && s.message.contains("immutable")));

    // Strict field validation asks the hook for unknown fields and rejects with 400.
    let body = serde_json::to_vec(
        &json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform",
        "metadata": {"name": "strict"}, "spec": {"image": "x", "nope": 1}}),
    )
    .unwrap();
    let (code, status) = raw(
        &sim,
        "POST",
        "/apis/pmp.dev/v1alpha1/namespaces/default/platforms?fieldValidation=Strict",
        "application/json",
        &body,
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(
        status["message"],
        "strict decoding error: unknown field \"spec.nope\""
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn without_a_hook_custom_resources_are_stored_as_sent() {
    let sim = start().await;
    let api = platforms(&sim, "default");
    let mut obj = platform("as-sent", "nginx");
    obj.data["spec"]["unknownField"] = json!("kept");
    obj.data["spec"]["replicas"] = json!(50);
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.data["spec"]["unknownField"], "kept");
    assert_eq!(created.data["spec"]["replicas"], 50);
    sim.shutdown().await;
}
