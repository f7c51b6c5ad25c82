//! The long-running command: `run`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use platform_operator::api::{self, ApiState};
use platform_operator::controller::{Operator, OperatorConfig, shutdown_signal};
use platform_operator::logging::{self, LogFormat};

use crate::fail;

#[derive(Args)]
pub struct RunArgs {
    /// Watch only this namespace (default: all).
    #[arg(long)]
    namespace: Option<String>,
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
    /// Address of the probe endpoints (`/healthz`, `/readyz`).
    #[arg(long, default_value = "0.0.0.0:8081")]
    probe_addr: SocketAddr,
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&format!("failed to start the async runtime: {e}")))
}

pub fn run(args: RunArgs) -> ExitCode {
    logging::init(args.log_format, "info");
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(client) => client,
            Err(error) => return fail(&format!("failed to connect to Kubernetes: {error}")),
        };
        let config = OperatorConfig {
            namespace: args.namespace,
            instance: std::env::var("POD_NAME").ok(),
            ..OperatorConfig::default()
        };
        let operator = Operator::start(client, config);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let probes = tokio::spawn(api::serve(
            args.probe_addr,
            ApiState::of(&operator),
            async {
                let _ = stop_rx.await;
            },
        ));
        tracing::info!("platform-operator running");
        shutdown_signal().await;
        tracing::info!("shutting down");
        operator.shutdown().await;
        let _ = stop_tx.send(());
        let _ = probes.await;
        ExitCode::SUCCESS
    })
}
