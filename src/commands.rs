//! The long-running command: `run`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use platform_operator::alerts::{AlertSettings, SmtpSettings, StartTls};
use platform_operator::api::auth::AuthMode;
use platform_operator::api::{self, ApiSettings, ApiState, DEFAULT_CALLER_LIMIT, DEFAULT_MAX_WAIT};
use platform_operator::client::{
    ApiTransport, RateLimit, Transport, operator_client, throttled_client,
};
use platform_operator::controller::usage::{DEFAULT_USAGE_INTERVAL, DEFAULT_USAGE_THRESHOLD};
use platform_operator::controller::{
    DEFAULT_CONCURRENCY, ElectionConfig, Leadership, Operator, OperatorConfig, run_election,
    shutdown_signal,
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
    /// HTTP version spoken to the API server: `http2` carries every request and watch on one
    /// connection (over TLS, as client-go; plain http stays HTTP/1.1), `http1` opens one
    /// connection per request in flight (kube's default client).
    #[arg(long, value_enum, default_value_t = Transport::default())]
    kube_http: Transport,
    /// Elect a leader among the replicas through a Lease: only the leader reconciles and
    /// writes; the others keep their caches warm and serve the REST API's reads.
    #[arg(long)]
    leader_elect: bool,
    /// The Lease's name.
    #[arg(long, default_value = "platform-operator")]
    leader_elect_lease_name: String,
    /// The Lease's namespace (default: `POD_NAMESPACE`, else `platform-operator-system`).
    #[arg(long)]
    leader_elect_namespace: Option<String>,
    /// Seconds a lease stays valid after its last renewal: a dead leader is replaced within it.
    #[arg(long, default_value_t = 15)]
    leader_elect_lease_duration_seconds: u64,
    /// Seconds before expiry the leader renews its lease.
    #[arg(long, default_value_t = 5)]
    leader_elect_renew_before_seconds: u64,
    /// The SMTP relay (`host:port`) Email alert channels are sent through; without it they
    /// fail (logged and counted).
    #[arg(long)]
    alert_smtp_server: Option<String>,
    /// The sender of alert emails, e.g. `platform-operator <alerts@example.com>`.
    #[arg(long, requires = "alert_smtp_server")]
    alert_smtp_from: Option<String>,
    /// STARTTLS with the relay.
    #[arg(long, value_enum, default_value_t = StartTls::Required)]
    alert_smtp_starttls: StartTls,
    /// User for the relay; the password comes from the environment variable
    /// `ALERT_SMTP_PASSWORD`.
    #[arg(long, requires = "alert_smtp_server")]
    alert_smtp_username: Option<String>,
    /// Alerts per channel and minute once the burst is used (a flapping platform cannot spam).
    #[arg(long, default_value_t = 6.0)]
    alert_rate_per_minute: f64,
    /// Alerts a channel may take at once.
    #[arg(long, default_value_t = 10)]
    alert_burst: u32,
    /// Seconds one alert delivery may take (Secret read, connect, send).
    #[arg(long, default_value_t = 10)]
    alert_timeout_seconds: u64,
    /// Seconds between two reads of resource usage from the metrics API.
    #[arg(long, default_value_t = DEFAULT_USAGE_INTERVAL.as_secs())]
    usage_interval_seconds: u64,
    /// The fraction of a CPU or memory limit at which usage counts as exceeded (0 to 1].
    #[arg(long, default_value_t = DEFAULT_USAGE_THRESHOLD, value_parser = usage_threshold)]
    usage_threshold: f64,
}

/// A fraction in (0, 1].
fn usage_threshold(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(format!("{value} is not in (0, 1]"))
    }
}

impl RunArgs {
    /// How alerts are delivered.
    fn alerts(&self) -> Result<AlertSettings, String> {
        let smtp = match &self.alert_smtp_server {
            None => None,
            Some(server) => {
                let from = self.alert_smtp_from.as_deref().ok_or_else(|| {
                    "--alert-smtp-server needs --alert-smtp-from (the sender address)".to_string()
                })?;
                let mut smtp = SmtpSettings::new(server, from, self.alert_smtp_starttls)
                    .map_err(|e| e.to_string())?;
                if let Some(user) = &self.alert_smtp_username {
                    let password = std::env::var("ALERT_SMTP_PASSWORD").map_err(|_| {
                        "--alert-smtp-username needs the password in ALERT_SMTP_PASSWORD"
                            .to_string()
                    })?;
                    smtp.credentials = Some((user.clone(), password));
                }
                Some(smtp)
            }
        };
        Ok(AlertSettings {
            smtp,
            per_channel_limit: RateLimit {
                qps: self.alert_rate_per_minute / 60.0,
                burst: self.alert_burst,
            },
            timeout: Duration::from_secs(self.alert_timeout_seconds.max(1)),
            ..AlertSettings::default()
        })
    }

    /// The election this instance takes part in, if any: as `POD_NAME` (else the host name and
    /// the process id), in `--leader-elect-namespace` or `POD_NAMESPACE`.
    fn election(&self) -> Result<Option<ElectionConfig>, String> {
        if !self.leader_elect {
            return Ok(None);
        }
        if self.leader_elect_renew_before_seconds >= self.leader_elect_lease_duration_seconds {
            return Err(format!(
                "--leader-elect-renew-before-seconds ({}) must be less than \
                 --leader-elect-lease-duration-seconds ({})",
                self.leader_elect_renew_before_seconds, self.leader_elect_lease_duration_seconds
            ));
        }
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "platform-operator".to_string());
            format!("{host}-{}", std::process::id())
        });
        let namespace = self
            .leader_elect_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "platform-operator-system".to_string());
        let mut election = ElectionConfig::new(&namespace, &identity);
        election.lease_name = self.leader_elect_lease_name.clone();
        election.lease_duration = Duration::from_secs(self.leader_elect_lease_duration_seconds);
        election.renew_before = Duration::from_secs(self.leader_elect_renew_before_seconds);
        Ok(Some(election))
    }
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
        let alerts = match args.alerts() {
            Ok(alerts) => alerts,
            Err(error) => return fail(&error),
        };
        let election = match args.election() {
            Ok(election) => election,
            Err(error) => return fail(&error),
        };
        let leadership = match &election {
            Some(election) => Leadership::elected(&election.identity),
            None => Leadership::always(),
        };
        let kube_config = match kube::Config::infer().await {
            Ok(config) => config,
            Err(error) => return fail(&format!("failed to load the kube config: {error}")),
        };
        let clients = ApiTransport::new(kube_config, args.kube_http).and_then(|transport| {
            tracing::info!(
                wanted = args.kube_http.as_str(),
                spoken = transport.transport().as_str(),
                "API server transport"
            );
            let client = operator_client(&transport, limit, leadership.clone())?;
            Ok((client, throttled_client(&transport, limit)?))
        });
        let (client, election_client) = match clients {
            Ok(clients) => clients,
            Err(error) => return fail(&format!("failed to build the kube client: {error}")),
        };
        let (stop_election, election_stopped) = tokio::sync::watch::channel(false);
        let election_task = election.map(|election| {
            tracing::info!(
                identity = election.identity,
                lease = election.lease_name,
                namespace = election.namespace,
                "leader election: standby until elected"
            );
            tokio::spawn(run_election(
                election_client,
                election,
                leadership.clone(),
                election_stopped,
            ))
        });
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
            leadership,
            alerts,
            usage_interval: Duration::from_secs(args.usage_interval_seconds.max(1)),
            usage_threshold: args.usage_threshold,
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
        // Only now that no reconcile runs: a standby may take over at once.
        let _ = stop_election.send(true);
        if let Some(task) = election_task {
            let _ = task.await;
        }
        let _ = stop_tx.send(true);
        ExitCode::SUCCESS
    })
}
