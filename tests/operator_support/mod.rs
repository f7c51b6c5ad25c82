//! Helpers for the operator's integration tests, on the simulator or on a real cluster (see
//! [`env`]): applying fixtures as a user would (into the test's namespace), waiting on what the
//! watches show, and the facts of the recorded history ([`history`]).
#![allow(dead_code, unused_imports)]

mod env;
mod history;
mod recorder;
mod rest;
mod view;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::Value;

use platform_operator::controller::FIELD_MANAGER;
use platform_operator::crd::{Phase, Platform, PlatformGroup};
use platform_operator::fixtures::{PlatformBuilder, platform};
use pmp_sim::WriteRecord;

pub use env::{KUBECONFIG_VAR, SPEED, TestEnv, real_kubeconfig};
pub use history::{History, condition_true, managers_changed};
pub use recorder::{Action, Change, Kind};
pub use rest::{Answer, Rest};
pub use view::View;

/// Field manager of the "user" applying manifests.
pub const USER: &str = "kubectl-test";

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

pub fn chain_dependencies(names: &[&str]) -> BTreeMap<String, Vec<String>> {
    names
        .windows(2)
        .map(|w| (w[1].to_string(), vec![w[0].to_string()]))
        .collect()
}

impl TestEnv {
    /// Server-side applies each platform into the test's namespace, as a user would.
    pub async fn apply(&self, platforms: &[Platform]) {
        let api: Api<Platform> = Api::namespaced(self.client(), self.namespace());
        for platform in platforms {
            let mut body = serde_json::to_value(platform).expect("serializable");
            body["apiVersion"] = "pmp.dev/v1alpha1".into();
            body["kind"] = "Platform".into();
            body["metadata"]["namespace"] = self.namespace().into();
            api.patch(
                &platform.name_any(),
                &PatchParams::apply(USER).force(),
                &Patch::Apply(body),
            )
            .await
            .expect("platform applied");
        }
    }

    pub async fn apply_group(&self, group: &PlatformGroup) {
        let api: Api<PlatformGroup> = Api::namespaced(self.client(), self.namespace());
        let mut body = serde_json::to_value(group).expect("serializable");
        body["apiVersion"] = "pmp.dev/v1alpha1".into();
        body["kind"] = "PlatformGroup".into();
        body["metadata"]["namespace"] = self.namespace().into();
        api.patch(
            &group.name_any(),
            &PatchParams::apply(USER).force(),
            &Patch::Apply(body),
        )
        .await
        .expect("group applied");
    }

    /// Merge-patches a Platform as a user would.
    pub async fn patch_platform(&self, name: &str, patch: Value) {
        let api: Api<Platform> = Api::namespaced(self.client(), self.namespace());
        api.patch(name, &user_merge(), &Patch::Merge(patch))
            .await
            .expect("platform patched");
    }

    /// Merge-patches a Platform's spec as a user would.
    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.patch_platform(name, serde_json::json!({ "spec": spec }))
            .await;
    }

    /// Merge-patches a PlatformGroup's spec as a user would.
    pub async fn patch_group_spec(&self, name: &str, spec: Value) {
        let api: Api<PlatformGroup> = Api::namespaced(self.client(), self.namespace());
        api.patch(
            name,
            &user_merge(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .expect("group patched");
    }

    /// The platforms as the API server lists them now.
    pub async fn platforms(&self) -> BTreeMap<String, Platform> {
        let api: Api<Platform> = Api::namespaced(self.client(), self.namespace());
        api.list(&Default::default())
            .await
            .expect("list platforms")
            .items
            .into_iter()
            .map(|p| (p.name_any(), p))
            .collect()
    }

    /// Waits until `check` holds on the platforms; panics with `what` after `timeout` (real).
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&BTreeMap<String, Platform>) -> bool,
    ) -> BTreeMap<String, Platform> {
        self.wait_until(what, timeout, |view| {
            let platforms = view.platforms();
            check(&platforms).then_some(platforms)
        })
        .await
    }

    /// Waits until every named platform is Running.
    pub async fn wait_running(&self, names: &[&str]) -> BTreeMap<String, Platform> {
        self.wait_for(
            "Running",
            Duration::from_secs(30),
            all_in(Phase::Running, names),
        )
        .await
    }
}

fn user_merge() -> PatchParams {
    PatchParams {
        field_manager: Some(USER.into()),
        ..Default::default()
    }
}

/// One line per platform: its phase and status message.
pub fn describe_platforms(platforms: &BTreeMap<String, Platform>) -> String {
    platforms
        .iter()
        .map(|(n, p)| {
            format!(
                "{n}: {:?} {:?}",
                phase(p),
                p.status.as_ref().and_then(|s| s.message.clone())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
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

pub fn all_in(phase_wanted: Phase, names: &[&str]) -> impl Fn(&BTreeMap<String, Platform>) -> bool {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    move |platforms| {
        names
            .iter()
            .all(|n| platforms.get(n).and_then(phase) == Some(phase_wanted))
    }
}

/// Deployment writes by the operator in the simulator's write history, with the replicas they
/// set, in order (for the tests that run only on the simulator).
pub fn sim_deployment_writes(writes: &[WriteRecord]) -> Vec<(u64, String, i64)> {
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
