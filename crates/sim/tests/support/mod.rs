//! Shared helpers for the simulator's integration tests: a small real CRD and a raw HTTP client.
#![allow(dead_code)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use pmp_sim::{SimCluster, SimConfig};
use serde_json::{Value, json};

/// A CustomResourceDefinition for `platforms.pmp.dev`, written as it would be deployed.
pub fn platform_crd() -> CustomResourceDefinition {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "platforms.pmp.dev"},
        "spec": {
            "group": "pmp.dev",
            "scope": "Namespaced",
            "names": {"plural": "platforms", "singular": "platform", "kind": "Platform", "listKind": "PlatformList",
                      "shortNames": ["plat"], "categories": ["pmp"]},
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
                            "dependsOn": {"type": "array", "items": {"type": "string"}},
                        }},
                        "status": {"type": "object", "properties": {
                            "phase": {"type": "string"},
                            "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                                "x-kubernetes-list-map-keys": ["type"],
                                "items": {"type": "object", "properties": {
                                    "type": {"type": "string"}, "status": {"type": "string"}}}},
                        }},
                    },
                }},
            }],
        },
    });
    serde_json::from_value(crd).expect("valid CRD")
}

pub fn platform_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("pmp.dev", "v1alpha1", "Platform"),
        "platforms",
    )
}

pub async fn start() -> SimCluster {
    start_with(SimConfig::default()).await
}

pub async fn start_with(config: SimConfig) -> SimCluster {
    let config = if config.crds.is_empty() {
        config.with_crds(vec![platform_crd()])
    } else {
        config
    };
    SimCluster::start(config).await.expect("simulator starts")
}

pub fn platforms(sim: &SimCluster, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(sim.client(), ns, &platform_resource())
}

pub fn platform(name: &str, image: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "pmp.dev/v1alpha1", "kind": "Platform",
        "metadata": {"name": name}, "spec": {"image": image},
    }))
    .expect("platform object")
}

/// A raw HTTP request, for what kube's typed API cannot express.
pub async fn raw(
    sim: &SimCluster,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value) {
    let (status, text) = raw_text(sim, method, path, content_type, body).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

pub async fn raw_text(
    sim: &SimCluster,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(sim.addr())
        .await
        .expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nUser-Agent: raw-test/1.0\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
