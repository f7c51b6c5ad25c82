//! Helpers for the operator's integration tests: a sandbox (simulated API server, workloads and
//! the operator), applying fixtures as a user would, waiting on conditions, and reading the
//! simulator's write history.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use platform_operator::controller::FIELD_MANAGER;
use platform_operator::crd::{Phase, Platform, PlatformGroup};
use platform_operator::fixtures::{PlatformBuilder, TEST_NAMESPACE, platform};
use platform_sandbox::{Sandbox, SandboxConfig};
use pmp_sim::{WriteRecord, WriteVerb};

/// Simulated seconds per real second in these tests.
pub const SPEED: f64 = 20.0;
/// Field manager of the "user" applying manifests.
pub const USER: &str = "kubectl-test";

pub async fn sandbox() -> Sandbox {
    let mut sandbox = Sandbox::start(SandboxConfig {
        speed: SPEED,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    sandbox.start_operator().expect("operator starts");
    sandbox
}

/// The trading stack: six platforms, each depending on the previous one.
pub const TRADING: [&str; 6] = [
    "market-data-service",
    "feature-engineering",
    "ml-inference",
    "strategy-generation",
    "order-management",
    "position-management",
];

pub fn chain(names: &[&str], ready_after: &str) -> Vec<Platform> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut builder: PlatformBuilder =
                platform(name).pod_annotation("sim.pmp.dev/ready-after", ready_after);
            if i > 0 {
                builder = builder.depends_on([names[i - 1]]);
            }
            builder.build()
        })
        .collect()
}

pub async fn apply(client: &Client, platforms: &[Platform]) {
    let api: Api<Platform> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    for platform in platforms {
        let mut body = serde_json::to_value(platform).expect("serializable");
        body["apiVersion"] = "pmp.dev/v1alpha1".into();
        body["kind"] = "Platform".into();
        api.patch(
            &platform.name_any(),
            &PatchParams::apply(USER).force(),
            &Patch::Apply(body),
        )
        .await
        .expect("platform applied");
    }
}

pub async fn apply_group(client: &Client, group: &PlatformGroup) {
    let api: Api<PlatformGroup> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    let mut body = serde_json::to_value(group).expect("serializable");
    body["apiVersion"] = "pmp.dev/v1alpha1".into();
    body["kind"] = "PlatformGroup".into();
    api.patch(
        &group.name_any(),
        &PatchParams::apply(USER).force(),
        &Patch::Apply(body),
    )
    .await
    .expect("group applied");
}

/// Merge-patches a Platform as a user would.
pub async fn patch_platform(client: &Client, name: &str, patch: Value) {
    let api: Api<Platform> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    let params = PatchParams {
        field_manager: Some(USER.into()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Merge(patch))
        .await
        .expect("platform patched");
}

/// Merge-patches a Platform's spec as a user would.
pub async fn patch_spec(client: &Client, name: &str, spec: Value) {
    patch_platform(client, name, serde_json::json!({ "spec": spec })).await;
}

pub async fn platforms(client: &Client) -> BTreeMap<String, Platform> {
    let api: Api<Platform> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    api.list(&Default::default())
        .await
        .expect("list platforms")
        .items
        .into_iter()
        .map(|p| (p.name_any(), p))
        .collect()
}

pub fn phase(platform: &Platform) -> Option<Phase> {
    platform.status.as_ref().and_then(|s| s.phase)
}

pub fn condition(platform: &Platform, type_: &str) -> Option<(String, String)> {
    platform
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.message.clone()))
}

/// Polls `check` on the platforms until it holds; panics with `what` after `timeout` (real).
pub async fn wait_for(
    client: &Client,
    what: &str,
    timeout: Duration,
    check: impl Fn(&BTreeMap<String, Platform>) -> bool,
) -> BTreeMap<String, Platform> {
    let deadline = Instant::now() + timeout;
    loop {
        let current = platforms(client).await;
        if check(&current) {
            return current;
        }
        if Instant::now() > deadline {
            let phases: Vec<String> = current
                .iter()
                .map(|(n, p)| {
                    format!(
                        "{n}: {:?} {:?}",
                        phase(p),
                        p.status.as_ref().and_then(|s| s.message.clone())
                    )
                })
                .collect();
            panic!(
                "timed out waiting for {what}; platforms:\n{}",
                phases.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every named platform is Running.
pub async fn wait_running(client: &Client, names: &[&str]) -> BTreeMap<String, Platform> {
    wait_for(
        client,
        "Running",
        Duration::from_secs(30),
        all_in(Phase::Running, names),
    )
    .await
}

pub fn all_in(phase_wanted: Phase, names: &[&str]) -> impl Fn(&BTreeMap<String, Platform>) -> bool {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    move |platforms| {
        names
            .iter()
            .all(|n| platforms.get(n).and_then(phase) == Some(phase_wanted))
    }
}

/// Deployment writes by the operator, with the replicas they set, in order.
pub fn deployment_writes(writes: &[WriteRecord]) -> Vec<(u64, String, i64)> {
    writes
        .iter()
        .filter(|w| {
            w.actor == FIELD_MANAGER
                && w.resource.plural == "deployments"
                && w.subresource.is_none()
        })
        .map(|w| {
            (
                w.seq,
                w.name.clone(),
                w.object
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
            )
        })
        .collect()
}

/// The first write that scaled each platform's Deployment above zero (its start).
pub fn starts(writes: &[WriteRecord]) -> BTreeMap<String, u64> {
    let mut starts = BTreeMap::new();
    for (seq, name, replicas) in deployment_writes(writes) {
        if replicas > 0 {
            starts.entry(name).or_insert(seq);
        }
    }
    starts
}

/// The writes that scaled each Deployment to zero, in order.
pub fn stops(writes: &[WriteRecord]) -> Vec<(u64, String)> {
    deployment_writes(writes)
        .into_iter()
        .filter(|(_, _, r)| *r == 0)
        .map(|(seq, name, _)| (seq, name))
        .collect()
}

/// The first operator status write that set each platform's Ready condition to True.
pub fn first_ready(writes: &[WriteRecord]) -> BTreeMap<String, u64> {
    let mut ready = BTreeMap::new();
    for w in writes {
        if w.resource.plural != "platforms" || w.subresource.as_deref() != Some("status") {
            continue;
        }
        let is_ready = w
            .object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        if is_ready {
            ready.entry(w.name.clone()).or_insert(w.seq);
        }
    }
    ready
}

/// The last write removing each pod of a platform (its pods are gone after this).
pub fn pods_gone(writes: &[WriteRecord], platform: &str) -> Option<u64> {
    writes
        .iter()
        .filter(|w| w.resource.plural == "pods" && w.kind() == "Pod")
        .filter(|w| {
            w.object
                .pointer("/metadata/labels/pmp.dev~1platform")
                .and_then(Value::as_str)
                == Some(platform)
        })
        .filter(|w| w.verb == WriteVerb::Delete)
        .map(|w| w.seq)
        .max()
}

/// Checks that no platform was started before all its dependencies were Ready.
pub fn assert_started_in_order(
    writes: &[WriteRecord],
    dependencies: &BTreeMap<String, Vec<String>>,
) {
    let starts = starts(writes);
    let ready = first_ready(writes);
    for (name, start) in &starts {
        for dependency in dependencies.get(name).into_iter().flatten() {
            let dependency_ready = ready.get(dependency).copied().unwrap_or(u64::MAX);
            assert!(
                dependency_ready < *start,
                "{name} was started (write {start}) before its dependency {dependency} was Ready (write {dependency_ready})"
            );
        }
    }
}

pub fn chain_dependencies(names: &[&str]) -> BTreeMap<String, Vec<String>> {
    names
        .windows(2)
        .map(|w| (w[1].to_string(), vec![w[0].to_string()]))
        .collect()
}
