//! Simulated workloads: the parts of a cluster that a kubelet and kube-controller-manager's
//! deployment controller play, so that Deployments applied to the simulated API server get pods
//! that start, become Ready, crash, run out of memory, fail their probes and stop — on the
//! [`SimClock`], scripted per pod by annotations.
//!
//! Both parts are ordinary controllers: they talk to the API server over HTTP through the
//! `kube::Client` they are given, observe it with reflectors (Deployments, Pods), write with their
//! own field managers ([`controller::FIELD_MANAGER`], [`kubelet::FIELD_MANAGER`]), and sleep on
//! the SimClock until the next scripted transition or watch event. The decisions are pure
//! functions with their own unit tests: [`timeline`] (a pod's life from its script),
//! [`pod_status`] (the status a kubelet reports), [`rollout`] (pods to create and delete, the
//! Deployment status), [`pods`] (template hash, names, selection).
//!
//! # Simplifications
//! - No ReplicaSets: a Deployment owns its pods directly (controller owner reference); the
//!   `pod-template-hash` label separates the current template's pods from older ones. Orphans
//!   matching the selector are not adopted.
//! - No scheduler: the deployment controller creates pods already bound (`spec.nodeName`) to the
//!   one simulated node (default `sim-node`). The kubelet also runs pods created without a node.
//! - Every container of a pod follows the same script; init containers are not simulated.
//!
//! # Annotation reference (on the pod, usually via the Deployment's pod template)
//! Durations are `500ms`, `1s`, `2m`, `1h`, `1m30s` (units h, m, s, ms; decimals allowed).
//! An invalid value gives the pod a Warning event `InvalidSimAnnotation` and the default.
//!
//! | annotation | value | meaning |
//! |---|---|---|
//! | `sim.pmp.dev/ready-after` | duration, default `1s` | time from each container start until Ready |
//! | `sim.pmp.dev/never-ready` | `"true"` | the container runs but never becomes Ready |
//! | `sim.pmp.dev/start-after` | duration, default `0s` | time from admission until the container starts (waiting `ContainerCreating`, pod Pending) |
//! | `sim.pmp.dev/fail-start` | `"true"` or a reason (`ImagePullBackOff`, …) | the container never starts: waiting with that reason (`true` = `CreateContainerConfigError`), Warning `Failed`; with `recover-after` it starts that long after the failure |
//! | `sim.pmp.dev/crash-after` | duration | the container exits with code 1 (reason `Error`) that long after each start; back-off 10 s doubling to 300 s (`CrashLoopBackOff`, Warning `BackOff`), `restartCount` grows |
//! | `sim.pmp.dev/oom-after` | duration | like `crash-after` but reason `OOMKilled`, exit code 137, Warning `OOMKilling`; the earlier of the two wins |
//! | `sim.pmp.dev/unready-after` | duration | that long after the pod first became Ready its readiness probe fails: Ready and ContainersReady False, Warning `Unhealthy` every probe period (`readinessProbe.periodSeconds` of the first container, else 10 s) |
//! | `sim.pmp.dev/recover-after` | duration | time after the first failure (start failure, crash/OOM kill, or start of the probe failures) until the pod behaves well again: a crash due at or after that time does not happen, the probe passes again |
//! | `sim.pmp.dev/stop-after` | duration, default `1s` | time the container takes to stop when the pod is deleted, bounded by the grace period |
//! | `sim.pmp.dev/cpu-usage` | quantity (`250m`) or ramp (`100m..2`) | CPU reported to the usage sink while the container runs (`0` while it does not) |
//! | `sim.pmp.dev/memory-usage` | quantity (`256Mi`) or ramp (`64Mi..1Gi`) | memory, likewise |
//! | `sim.pmp.dev/usage-ramp` | duration, default `60s` | time a ramp takes from its first to its second value after each container start; ramps are re-reported every 15 s |

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::SimClock;

pub mod controller;
pub mod duration;
pub mod events;
pub mod kubelet;
mod observe;
pub mod pod_status;
pub mod pods;
pub mod quantity;
pub mod rollout;
pub mod script;
pub mod timeline;

/// A pod's resource usage as quantity strings (CPU like `250m`, memory like `65536Ki`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceUsage {
    pub cpu: String,
    pub memory: String,
}

/// A usage report for the metrics API: `usage` is `None` when the pod is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    pub namespace: String,
    pub pod: String,
    pub usage: Option<ResourceUsage>,
}

/// Receives usage reports (called from the kubelet task; keep it quick).
pub type UsageSink = Arc<dyn Fn(PodUsage) + Send + Sync>;

/// How the simulated workloads run.
#[derive(Clone)]
pub struct WorkloadConfig {
    pub clock: SimClock,
    /// Where pods with `sim.pmp.dev/cpu-usage` / `memory-usage` report their usage.
    pub usage_sink: Option<UsageSink>,
    /// The simulated node's name (`spec.nodeName` of created pods, events' host).
    pub node_name: String,
    /// The simulated node's address (`status.hostIP`).
    pub host_ip: String,
}

impl WorkloadConfig {
    pub fn new(clock: SimClock) -> Self {
        Self {
            clock,
            usage_sink: None,
            node_name: "sim-node".to_owned(),
            host_ip: "10.0.0.10".to_owned(),
        }
    }

    pub fn with_usage_sink(mut self, sink: impl Fn(PodUsage) + Send + Sync + 'static) -> Self {
        self.usage_sink = Some(Arc::new(sink));
        self
    }
}

impl std::fmt::Debug for WorkloadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadConfig")
            .field("clock", &self.clock)
            .field("usage_sink", &self.usage_sink.is_some())
            .field("node_name", &self.node_name)
            .field("host_ip", &self.host_ip)
            .finish()
    }
}

/// The running simulated workloads; dropping it aborts them, [`WorkloadHandle::shutdown`] stops
/// them cleanly.
pub struct WorkloadHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the simulated deployment controller and kubelet as tokio tasks.
pub fn spawn_workloads(client: Client, config: WorkloadConfig) -> WorkloadHandle {
    let (stop, stopped) = watch::channel(false);
    let controller = controller::DeploymentController::new(
        client.clone(),
        config.clock.clone(),
        config.node_name.clone(),
    );
    let kubelet = kubelet::Kubelet::new(
        client,
        config.clock,
        config.node_name,
        config.host_ip,
        config.usage_sink,
    );
    let tasks = vec![
        tokio::spawn(controller.run(stopped.clone())),
        tokio::spawn(kubelet.run(stopped)),
    ];
    WorkloadHandle { stop, tasks }
}

impl WorkloadHandle {
    /// Stops both loops and waits for them (aborting after a few seconds).
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for WorkloadHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
