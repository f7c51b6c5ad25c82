//! The operator against the simulated cluster: the only crate that links both.
//!
//! [`Sandbox`] is a whole simulated environment: the simulated API server (`pmp_sim`) with the
//! project's CRDs admitted by the operator's own schema checks ([`SchemaAdmission`]), the
//! simulated workloads (deployment controller and kubelet), and the operator connected to the
//! API server through an ordinary kube `Client`, reading the simulator's clock
//! ([`OperatorClock`]). The `platform-sandbox` binary (`sandbox`, `bench`) and the operator's
//! integration tests all run on it.

mod admission;
pub mod bench;
mod clock;
mod display;

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Client;

use platform_operator::controller::{Operator, OperatorConfig};
use platform_operator::crd::all_crds;
use pmp_sim::workload::{WorkloadConfig, WorkloadHandle, spawn_workloads};
use pmp_sim::{SimCluster, SimConfig, SimError};

pub use admission::SchemaAdmission;
pub use clock::OperatorClock;
pub use display::{Display, DisplayMode};

/// A simulator configuration serving the project's CRDs, admitted as the operator's `plan`
/// checks them; the other settings are the simulator's defaults.
pub fn sim_config() -> SimConfig {
    SimConfig::default()
        .with_crds(all_crds())
        .with_admission(SchemaAdmission)
}

/// How the environment starts.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address of the simulated API server (port 0 for a free one).
    pub kube_addr: SocketAddr,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Events the simulated API server keeps for watches (older watches get 410 Gone).
    pub watch_window: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            kube_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            speed: 1.0,
            watch_window: SimConfig::default().watch_window,
        }
    }
}

/// A running simulated environment.
pub struct Sandbox {
    pub cluster: SimCluster,
    workloads: Option<WorkloadHandle>,
    operator: Option<Operator>,
}

impl Sandbox {
    /// Starts the API server and the workloads (not the operator: see [`Sandbox::start_operator`]).
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, SimError> {
        let sim_config = sim_config()
            .with_addr(config.kube_addr)
            .with_speed(config.speed)
            .with_watch_window(config.watch_window);
        let cluster = SimCluster::start(sim_config).await?;
        let usage = cluster.usage_recorder();
        let workloads = spawn_workloads(
            cluster.try_client()?,
            WorkloadConfig::new(cluster.clock().clone()).with_usage_sink(
                move |report| match report.usage {
                    Some(now) => usage.set(&report.namespace, &report.pod, &now.cpu, &now.memory),
                    None => usage.clear(&report.namespace, &report.pod),
                },
            ),
        );
        Ok(Sandbox {
            cluster,
            workloads: Some(workloads),
            operator: None,
        })
    }

    /// A client of the simulated API server, as `kubectl` or a user would have.
    pub fn client(&self) -> Client {
        self.cluster.client()
    }

    /// Starts the operator (watching all namespaces), with the simulator's clock.
    pub fn start_operator(&mut self) -> Result<&Operator, SimError> {
        self.start_operator_with(|_| {})
    }

    /// Starts the operator with its configuration adjusted by `adjust`.
    pub fn start_operator_with(
        &mut self,
        adjust: impl FnOnce(&mut OperatorConfig),
    ) -> Result<&Operator, SimError> {
        let mut config = OperatorConfig {
            clock: Arc::new(OperatorClock(self.cluster.clock().clone())),
            instance: Some("sandbox".into()),
            ..OperatorConfig::default()
        };
        adjust(&mut config);
        let operator = Operator::start(self.cluster.try_client()?, config);
        Ok(self.operator.insert(operator))
    }

    pub fn operator(&self) -> Option<&Operator> {
        self.operator.as_ref()
    }

    /// Stops the operator gracefully.
    pub async fn stop_operator(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.shutdown().await;
        }
    }

    /// Stops the operator at once, as a crash would.
    pub fn kill_operator(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.abort();
        }
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        self.stop_operator().await;
        if let Some(workloads) = self.workloads.take() {
            workloads.shutdown().await;
        }
        self.cluster.shutdown().await;
    }
}
