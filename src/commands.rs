//! The long-running command: `run`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use platform_operator::api::{self, ApiState};
use platform_operator::client::{RateLimit, throttled_client};
use platform_operator::controller::{
    DEFAULT_CONCURRENCY, Operator, OperatorConfig, shutdown_signal,
};
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
    /// Reconciles at once per controller (0: unlimited).
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: u16,
    /// Requests per second to the API server, refilled into a bucket of `--kube-burst`
    /// (as client-go's QPS); 0 disables the limit.
    #[arg(long, default_value_t = RateLimit::DEFAULT.qps)]
    kube_qps: f64,
    /// Requests that may be sent at once before `--kube-qps` paces them.
    #[arg(long, default_value_t = RateLimit::DEFAULT.burst)]
    kube_burst: u32,
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
        let limit = RateLimit {
            qps: args.kube_qps,
            burst: args.kube_burst,
        };
        let client = match kube::Config::infer().await {
            Ok(config) => match throttled_client(config, limit) {
                Ok(client) => client,
                Err(error) => return fail(&format!("failed to build the kube client: {error}")),
            },
            Err(error) => return fail(&format!("failed to load the kube config: {error}")),
        };
        tracing::info!(
            qps = limit.qps,
            burst = limit.burst,
            concurrency = args.concurrency,
            "client limits"
        );
        let config = OperatorConfig {
            namespace: args.namespace,
            instance: std::env::var("POD_NAME").ok(),
            concurrency: args.concurrency,
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
