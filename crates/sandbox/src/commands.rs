//! The commands: `sandbox` and `bench graph|startup`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use platform_operator::api::auth::AuthMode;
use platform_operator::api::{self, ApiSettings, ApiState, DEFAULT_CALLER_LIMIT};
use platform_operator::client::RateLimit;
use platform_operator::controller::shutdown_signal;
use platform_operator::crd::{Phase, Platform};
use platform_operator::graph;
use platform_operator::logging::{self, LogFormat};
use platform_operator::manifest::read_documents;
use platform_sandbox::bench::{OperatorProcess, StartupBench, run_startup_bench};
use platform_sandbox::{Display, DisplayMode, Sandbox, SandboxConfig};

use crate::fail;

mod real;
mod storm;

pub use real::{TableArgs, bench_table};
pub use storm::{StormArgs, bench_storm};

#[derive(Args)]
pub struct SandboxArgs {
    /// Manifest files or directories to load.
    #[arg(
        short = 'f',
        long = "filename",
        default_value = "deploy/examples/trading-stack.yaml"
    )]
    files: Vec<PathBuf>,
    /// Address of the simulated API server (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:6443")]
    kube_addr: SocketAddr,
    /// Address of the operator's REST API (`/api/v1/...`, `/openapi.json`, `/healthz`,
    /// `/readyz`, `/metrics`), without authentication: loopback addresses only.
    #[arg(long, default_value = "127.0.0.1:8080")]
    api_addr: SocketAddr,
    /// REST requests per second per caller (0: no limit, e.g. for load tests).
    #[arg(long, default_value_t = DEFAULT_CALLER_LIMIT.qps)]
    api_qps: f64,
    /// REST requests a caller may send at once before `--api-qps` paces them.
    #[arg(long, default_value_t = DEFAULT_CALLER_LIMIT.burst)]
    api_burst: u32,
    /// Where to write the kubeconfig for `kubectl`.
    #[arg(long, default_value = "./sandbox.kubeconfig")]
    kubeconfig_out: PathBuf,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Args)]
pub struct StartupArgs {
    #[arg(long, default_value_t = 1000)]
    platforms: usize,
    #[arg(long, default_value_t = 20)]
    depth: usize,
    /// Simulated milliseconds from a pod's start to its readiness.
    #[arg(long, default_value_t = 1000)]
    ready_after_ms: u64,
    /// Dependencies per platform on the previous layer (at most).
    #[arg(long, default_value_t = 2)]
    fan_in: usize,
    /// Simulated seconds per real second (only with `--in-process`: a separate operator
    /// process keeps real time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Run the operator inside the benchmark's process instead of the `platform-operator`
    /// binary beside this one (memory is then reported for both together).
    #[arg(long)]
    in_process: bool,
    /// The operator binary (default: `platform-operator` beside this binary).
    #[arg(long)]
    operator_binary: Option<PathBuf>,
    /// The operator's `--kube-qps` (0: unlimited).
    #[arg(long, default_value_t = platform_operator::client::RateLimit::DEFAULT.qps)]
    kube_qps: f64,
    /// The operator's `--kube-burst`.
    #[arg(long, default_value_t = platform_operator::client::RateLimit::DEFAULT.burst)]
    kube_burst: u32,
    /// The operator's `--kube-http`.
    #[arg(long, value_enum, default_value_t = platform_operator::client::Transport::default())]
    kube_http: platform_operator::client::Transport,
    /// The operator's `--concurrency`.
    #[arg(long, default_value_t = platform_operator::controller::DEFAULT_CONCURRENCY)]
    concurrency: u16,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run against the real control plane of this kubeconfig (`target/testenv/kubeconfig`)
    /// instead of the simulator, beside a baseline without the operator.
    #[arg(long, conflicts_with_all = ["in_process", "speed"])]
    kubeconfig: Option<PathBuf>,
}

#[derive(Args)]
pub struct GraphArgs {
    #[arg(long, default_value_t = 100_000)]
    platforms: usize,
    #[arg(long, default_value_t = 300_000)]
    edges: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Runs; the report shows the best and the median.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&format!("failed to start the async runtime: {e}")))
}

pub fn sandbox(args: SandboxArgs) -> ExitCode {
    // The sandbox's REST API has no authentication, so it may listen on loopback only.
    if let Err(refused) = AuthMode::None.check_bind(args.api_addr) {
        return fail(&refused);
    }
    let live = std::io::stdout().is_terminal();
    // On a terminal the live table owns the screen: only warnings go to the log.
    logging::init(args.log_format, if live { "warn" } else { "info" });
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(run_sandbox(args, live))
}

async fn run_sandbox(args: SandboxArgs, live: bool) -> ExitCode {
    let config = SandboxConfig {
        kube_addr: args.kube_addr,
        speed: args.speed,
        ..SandboxConfig::default()
    };
    let mut sandbox = match Sandbox::start(config).await {
        Ok(sandbox) => sandbox,
        Err(error) => return fail(&format!("failed to start the simulated cluster: {error}")),
    };
    if let Err(error) = sandbox.cluster.write_kubeconfig(&args.kubeconfig_out) {
        return fail(&format!(
            "failed to write {}: {error}",
            args.kubeconfig_out.display()
        ));
    }
    println!(
        "Simulated cluster on http://{} (speed {}x).",
        sandbox.cluster.addr(),
        args.speed
    );
    println!(
        "Use it with: kubectl --kubeconfig {} get platforms -A",
        args.kubeconfig_out.display()
    );

    let loaded = load_manifests(&sandbox, &args.files);
    println!(
        "Loaded {loaded} objects. Starting the operator; Ctrl-C stops the stack in reverse order.\n"
    );
    let operator = match sandbox.start_operator() {
        Ok(operator) => operator,
        Err(error) => return fail(&format!("failed to start the operator: {error}")),
    };
    let state = ApiState::new(
        operator.context().clone(),
        ApiSettings {
            auth: AuthMode::None,
            rate_limit: RateLimit {
                qps: args.api_qps,
                burst: args.api_burst,
            },
            ..ApiSettings::default()
        },
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(args.api_addr, api::router(state), async {
        let _ = stop_rx.await;
    }));
    println!(
        "REST API: curl -X POST http://{}/api/v1/platform/market_data_service/control -d '{{\"action\":\"stop\"}}'",
        args.api_addr
    );
    let display = Display::spawn(
        sandbox.client(),
        if live {
            DisplayMode::Live
        } else {
            DisplayMode::Lines
        },
    );

    shutdown_signal().await;
    println!("\nStopping the stack in reverse dependency order...");
    let stopped = stop_everything(&sandbox).await;
    display.stop();
    let _ = stop_tx.send(());
    if let Ok(Err(error)) = server.await {
        eprintln!(
            "warning: the HTTP server on {} failed: {error}",
            args.api_addr
        );
    }
    sandbox.shutdown().await;
    match stopped {
        Ok(()) => {
            println!("All platforms stopped.");
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

/// Loads every document; invalid ones are reported with the API server's causes, the rest load.
fn load_manifests(sandbox: &Sandbox, files: &[PathBuf]) -> usize {
    let (documents, errors) = read_documents(files);
    for error in errors {
        eprintln!("error: {error}");
    }
    let mut loaded = 0;
    for document in documents {
        let what = document.describe();
        match sandbox.cluster.apply_document(document.value) {
            Ok(_) => loaded += 1,
            Err(error) => {
                eprintln!("error: {}: {what}: {}", document.source, error.message);
                for cause in &error.details.causes {
                    eprintln!("  - {}: {}", cause.field, cause.message);
                }
            }
        }
    }
    loaded
}

/// Sets every Platform to Stopped (the operator stops them dependents first) and waits until
/// none has pods left.
async fn stop_everything(sandbox: &Sandbox) -> Result<(), String> {
    let api: Api<Platform> = Api::all(sandbox.client());
    let platforms = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("failed to list platforms: {e}"))?;
    for platform in &platforms.items {
        let (Some(namespace), Some(name)) = (&platform.metadata.namespace, &platform.metadata.name)
        else {
            continue;
        };
        let namespaced: Api<Platform> = Api::namespaced(sandbox.client(), namespace);
        let patch = json!({"spec": {"desiredState": "Stopped"}});
        let params = PatchParams {
            field_manager: Some("sandbox".into()),
            ..Default::default()
        };
        namespaced
            .patch(name, &params, &Patch::Merge(patch))
            .await
            .map_err(|e| format!("failed to stop {namespace}/{name}: {e}"))?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let current = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("failed to list platforms: {e}"))?;
        let settled = current.items.iter().all(|p| {
            matches!(
                p.status.as_ref().and_then(|s| s.phase),
                Some(Phase::Stopped | Phase::Blocked | Phase::Pending) | None
            ) && p
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                == 0
        });
        if settled {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the stack did not stop within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn bench_startup(args: StartupArgs) -> ExitCode {
    if let Some(kubeconfig) = args.kubeconfig.clone() {
        return real::bench_startup(args, kubeconfig);
    }
    logging::init(LogFormat::Text, "error");
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let operator = if args.in_process {
        None
    } else {
        match operator_process(&args) {
            Ok(operator) => Some(operator),
            Err(code) => return code,
        }
    };
    let bench = StartupBench {
        platforms: args.platforms,
        depth: args.depth,
        ready_after: Duration::from_millis(args.ready_after_ms),
        fan_in: args.fan_in,
        speed: args.speed,
        seed: args.seed,
        operator,
    };
    let report = match runtime.block_on(run_startup_bench(&bench)) {
        Ok(report) => report,
        Err(error) => return fail(&error.to_string()),
    };
    println!(
        "startup: {} platforms, depth {} (operator {}): gating latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         converged in {:.0} ms vs critical path {:.0} ms: overhead ratio {:.3}, operator overhead ratio {:.3}; \
         {:.2} operator writes per platform, {} at steady state, {:.2} events per platform",
        report.platforms,
        report.depth,
        report.operator_mode,
        report.gating_latency_ms_p50,
        report.gating_latency_ms_p99,
        report.gating_latency_ms_max,
        report.converge_ms,
        report.critical_path_ms,
        report.overhead_ratio,
        report.operator_overhead_ratio,
        report.writes_per_platform,
        report.steady_state_writes,
        report.events_per_platform,
    );
    match report.operator_peak_rss_mb {
        Some(rss) => println!(
            "operator process: peak RSS {rss:.0} MiB, {:.1} CPU-s, at most {} sockets; \
             API requests at peak {:.0}/s (all clients); qps {:?}, burst {:?}, concurrency {:?}",
            report.operator_cpu_seconds.unwrap_or_default(),
            report.operator_peak_sockets.unwrap_or_default(),
            report.api_requests_per_second_peak.unwrap_or_default(),
            report.kube_qps,
            report.kube_burst,
            report.concurrency,
        ),
        None => println!(
            "peak RSS {:.0} MiB (operator and simulator in one process)",
            report.peak_rss_mb
        ),
    }
    println!("operator writes by target: {:?}", report.operator_writes);
    println!("hops p50 (ms): {:?}", report.hops_ms_p50);
    println!("hops p99 (ms): {:?}", report.hops_ms_p99);
    if let Some(path) = args.json {
        let text = match serde_json::to_string_pretty(&report) {
            Ok(text) => text,
            Err(error) => return fail(&format!("failed to render the report: {error}")),
        };
        if let Err(error) = std::fs::write(&path, text) {
            return fail(&format!("failed to write {}: {error}", path.display()));
        }
    }
    ExitCode::SUCCESS
}

/// The `platform-operator` process to measure, as the flags say.
fn operator_process(args: &StartupArgs) -> Result<OperatorProcess, ExitCode> {
    let Some(binary) = args
        .operator_binary
        .clone()
        .or_else(OperatorProcess::beside_current_exe)
    else {
        return Err(fail(
            "no platform-operator binary beside this one: build it (cargo build --release \
             -p platform-operator), pass --operator-binary, or use --in-process",
        ));
    };
    Ok(OperatorProcess {
        binary,
        kube_qps: args.kube_qps,
        kube_burst: args.kube_burst,
        concurrency: args.concurrency,
        kube_http: args.kube_http.as_str().to_string(),
    })
}

pub fn bench_graph(args: GraphArgs) -> ExitCode {
    let mut reports: Vec<_> = (0..args.runs.max(1))
        .map(|_| graph::bench::run_graph_bench(args.platforms, args.edges, args.seed))
        .collect();
    reports.sort_by(|a, b| a.total_ms.total_cmp(&b.total_ms));
    let best = &reports[0];
    let median = &reports[reports.len() / 2];
    println!(
        "graph: {} platforms, {} edges, {} waves: best {:.1} ms (build {:.1} ms + waves {:.1} ms), median {:.1} ms over {} runs; target < 100 ms",
        best.platforms,
        best.edges,
        best.waves,
        best.total_ms,
        best.build_ms,
        best.waves_ms,
        median.total_ms,
        reports.len()
    );
    if let Some(path) = args.json {
        let document = json!({"best": best, "median": median, "runs": reports.len()});
        if let Err(error) = std::fs::write(&path, document.to_string()) {
            return fail(&format!("failed to write {}: {error}", path.display()));
        }
    }
    ExitCode::SUCCESS
}
