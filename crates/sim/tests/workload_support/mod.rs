//! Shared helpers of the simulated-workload integration tests: a simulated cluster with the
//! workloads running on a fast clock, fixtures, polling and watch-history helpers.
#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use pmp_sim::workload::{PodUsage, WorkloadConfig, WorkloadHandle, spawn_workloads};
use pmp_sim::{SimCluster, SimConfig};
use serde_json::json;

/// Simulated seconds per real second.
pub const SPEED: f64 = 50.0;
/// Real time a test waits for a condition.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Setup {
    pub sim: SimCluster,
    pub workloads: WorkloadHandle,
    pub usage: Arc<Mutex<Vec<PodUsage>>>,
}

pub async fn start() -> Setup {
    let sim = SimCluster::start(SimConfig::default().with_speed(SPEED))
        .await
        .expect("simulated API server starts");
    let usage = Arc::new(Mutex::new(Vec::new()));
    let sink = usage.clone();
    let config = WorkloadConfig::new(sim.clock().clone())
        .with_usage_sink(move |report| sink.lock().unwrap().push(report));
    let workloads = spawn_workloads(sim.client(), config);
    Setup {
        sim,
        workloads,
        usage,
    }
}

impl Setup {
    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.sim.client(), "default")
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.sim.client(), "default")
    }

    pub async fn create(&self, deployment: Deployment) {
        self.deployments()
            .create(&PostParams::default(), &deployment)
            .await
            .expect("deployment created");
    }

    pub async fn pods_of(&self, app: &str) -> Vec<Pod> {
        self.pods()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .expect("pods listed")
            .items
    }

    pub async fn events_for(&self, pod: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.sim.client(), "default");
        events
            .list(&ListParams::default())
            .await
            .expect("events listed")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(pod))
            .collect()
    }

    pub async fn stop(self) {
        self.workloads.shutdown().await;
        self.sim.shutdown().await;
    }
}

pub fn deployment(name: &str, replicas: i32, annotations: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]},
            },
        },
    }))
    .expect("valid deployment")
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn container(pod: &Pod) -> ContainerStatus {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first().cloned())
        .unwrap_or_default()
}

pub fn condition(d: &Deployment, type_: &str) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

/// Records every version of the objects `api` shows from now on (each watch event), so that
/// short-lived states cannot be missed by polling.
pub fn follow<K>(api: Api<K>) -> (Arc<Mutex<Vec<K>>>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let history = Arc::new(Mutex::new(Vec::new()));
    let record = history.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) = event {
                record.lock().unwrap().push(object);
            }
        }
    });
    (history, task)
}
