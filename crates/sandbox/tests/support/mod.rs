//! Shared helpers for the glue's tests: the simulator with a small CRD (or the project's) whose
//! writes the operator's schema checks admit, and raw HTTP requests.
#![allow(dead_code)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use platform_sandbox::SchemaAdmission;
use pmp_sim::{SimCluster, SimConfig};
use serde_json::{Value, json};

/// A CustomResourceDefinition for `platforms.pmp.dev` with a range, a required field, a default
/// and a CEL rule, written as it would be deployed.
pub fn platform_crd() -> CustomResourceDefinition {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "platforms.pmp.dev"},
        "spec": {
            "group": "pmp.dev",
            "scope": "Namespaced",
            "names": {"plural": "platforms", "singular": "platform", "kind": "Platform", "listKind": "PlatformList"},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "required": ["image"],
                            "x-kubernetes-validations": [{"rule": "!self.image.startsWith('bad/')", "message": "image must not come from bad/"}],
                            "properties": {
                            "image": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                        }},
                        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                    },
                }},
            }],
        },
    });
    serde_json::from_value(crd).expect("valid CRD")
}

/// The small CRD, admitted by the operator's schema checks.
pub async fn start() -> SimCluster {
    start_with(
        SimConfig::default()
            .with_crds(vec![platform_crd()])
            .with_admission(SchemaAdmission),
    )
    .await
}

pub async fn start_with(config: SimConfig) -> SimCluster {
    SimCluster::start(config).await.expect("simulator starts")
}

pub fn platforms(sim: &SimCluster, ns: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("pmp.dev", "v1alpha1", "Platform"),
        "platforms",
    );
    Api::namespaced_with(sim.client(), ns, &resource)
}

pub fn platform(name: &str, image: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "pmp.dev/v1alpha1", "kind": "Platform",
        "metadata": {"name": name}, "spec": {"image": image},
    }))
    .expect("platform object")
}

/// A raw request through the cluster's client: the status code and the body as JSON (or as a
/// string when it is not JSON).
pub async fn raw(
    sim: &SimCluster,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let mut request = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(kube::client::Body::from(body.to_vec()))
        .expect("request");
    let response = sim.client().send(request).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.expect("body");
    let text = String::from_utf8_lossy(&bytes).to_string();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
