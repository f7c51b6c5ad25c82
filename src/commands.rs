//! The long-running command: `run`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use platform_operator::api::auth::AuthMode;
use platform_operator::api::{self, ApiSettings, ApiState, DEFAULT_CALLER_LIMIT, DEFAULT_MAX_WAIT};
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
    /// Address of the probe endpoints (`/healthz`, `/readyz`) and `/metrics`, without
    /// authentication.
    #[arg(long, default_value = "0.0.0.0:8081")]
    probe_addr: SocketAddr,
    /// Address of the REST API (`/api/v1/...`, `/openapi.json`).
    #[arg(long, default_value = "0.0.0.0:8080")]
    api_addr: SocketAddr,
    /// How REST callers are authenticated: `kubernetes` (a bearer token checked by
    /// TokenReview, access by SubjectAccessReview) or `none` (only on a loopback --api-addr).
    #[arg(long, value_enum, default_value_t = AuthMode::Kubernetes)]
    api_auth: AuthMode,
    /// REST requests per second per caller, refilled into a bucket of `--api-burst`; 0
    /// disables the limit.
    #[arg(long, default_value_t = DEFAULT_CALLER_LIMIT.qps)]
    api_qps: f64,
    /// REST requests a caller may send at once before `--api-qps` paces them.
    #[arg(long, default_value_t = DEFAULT_CALLER_LIMIT.burst)]
    api_burst: u32,
    /// The longest `?wait=true` a control request may ask for, in seconds.
    #[arg(long, default_value_t = DEFAULT_MAX_WAIT.as_secs())]
    api_max_wait_seconds: u64,
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

/// Resolves when either server stops on its own (it could not bind, or failed), saying which.
async fn server_ended(
    probes: tokio::task::JoinHandle<std::io::Result<()>>,
    rest: tokio::task::JoinHandle<std::io::Result<()>>,
) -> String {
    let (which, result) = tokio::select! {
        result = probes => ("probe server (--probe-addr)", result),
        result = rest => ("REST API (--api-addr)", result),
    };
    match result {
        Ok(Ok(())) => format!("the {which} stopped"),
        Ok(Err(error)) => format!("the {which} failed: {error}"),
        Err(error) => format!("the {which} task ended: {error}"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&format!("failed to start the async runtime: {e}")))
}

pub fn run(args: RunArgs) -> ExitCode {
    logging::init(args.log_format, "info");
    if let Err(refused) = args.api_auth.check_bind(args.api_addr) {
        return fail(&refused);
    }
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
        let settings = ApiSettings {
            auth: args.api_auth,
            rate_limit: RateLimit {
                qps: args.api_qps,
                burst: args.api_burst,
            },
            max_wait: Duration::from_secs(args.api_max_wait_seconds),
        };
        let api_state = ApiState::new(operator.context().clone(), settings);
        let (stop_tx, _) = tokio::sync::watch::channel(false);
        let stopped = |tx: &tokio::sync::watch::Sender<bool>| {
            let mut rx = tx.subscribe();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let probes = tokio::spawn(api::serve(
            args.probe_addr,
            api::probe_router(api_state.clone()),
            stopped(&stop_tx),
        ));
        let rest = tokio::spawn(api::serve(
            args.api_addr,
            api::router(api_state),
            stopped(&stop_tx),
        ));
        tracing::info!(
            api = %args.api_addr,
            probes = %args.probe_addr,
            auth = ?args.api_auth,
            "platform-operator running"
        );
        tokio::select! {
            _ = shutdown_signal() => tracing::info!("shutting down"),
            ended = server_ended(probes, rest) => {
                operator.abort();
                return fail(&ended);
            }
        }
        operator.shutdown().await;
        let _ = stop_tx.send(true);
        ExitCode::SUCCESS
    })
}
