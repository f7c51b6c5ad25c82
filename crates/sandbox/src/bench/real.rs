//! `platform-sandbox bench startup --kubeconfig PATH`: the startup benchmark against a real
//! control plane (the testenv: `make testenv`), the operator beside a baseline without it.
//!
//! The same layered stack as in the simulator, twice, each in a fresh namespace: first the
//! baseline (plain Deployments created layer by layer by the benchmark, [`baseline`]); its
//! namespace is deleted and awaited, the control plane gets a pause; then the Platforms with
//! the operator as a process of its own ([`operator_run`]). The operator's figures come from
//! the watch on its Platforms, from `/proc/<pid>`, and from its own `/metrics`
//! (`pmp_kube_requests_total`, [`scrape`]).

/// Progress and warnings on stderr, with the seconds since the benchmark began.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!(
            "[{:>6.1} s] {}",
            crate::bench::real::STARTED.elapsed().as_secs_f64(),
            format_args!($($arg)*)
        )
    };
}

mod baseline;
mod cluster;
mod cpu;
mod operator_run;
mod scrape;
mod server;
mod writes;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::OperatorProcess;
pub use cpu::PhaseCpu;

/// The pod annotation the testenv's kwok stages (and the simulator) read for readiness.
const READY_AFTER_ANNOTATION: &str = "sim.pmp.dev/ready-after";
/// Between the baseline and the operator's run, for the control plane to settle (garbage
/// collection, the namespace controller).
const PAUSE: Duration = Duration::from_secs(5);
/// The longest wait for a namespace (the baseline's, an earlier run's) to be gone before a
/// measured run.
const NAMESPACE_DELETION: Duration = Duration::from_secs(600);

/// When the benchmark began (progress lines count from there).
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

/// What to run.
#[derive(Debug, Clone)]
pub struct RealBench {
    /// Admin kubeconfig of the control plane (`target/testenv/kubeconfig`).
    pub kubeconfig: PathBuf,
    pub platforms: usize,
    pub depth: usize,
    pub fan_in: usize,
    pub seed: u64,
    /// From a pod's start to its readiness (kwok honours `sim.pmp.dev/ready-after`).
    pub ready_after: Duration,
    pub operator: OperatorProcess,
}

impl RealBench {
    fn ready_after_value(&self) -> String {
        format!("{}ms", self.ready_after.as_millis())
    }
}

/// The measurements (JSON keys as documented in the README).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RealReport {
    /// `real`.
    pub cluster: String,
    pub platforms: usize,
    pub depth: usize,
    pub ready_after_ms: u64,
    /// `baseline-first`: which of the two runs went first.
    pub order: String,
    /// depth × ready-after: the least any order of starts can take.
    pub critical_path_ms: f64,
    /// Operator start to the last Platform seen Ready by the benchmark's watch.
    pub converge_ms: f64,
    /// The baseline's first create to its last layer ready.
    pub baseline_converge_ms: f64,
    /// When the last platform of each layer was Ready, from the operator's start.
    #[serde(default)]
    pub layer_ready_ms: Vec<f64>,
    /// When the baseline saw each layer ready, from its first create.
    #[serde(default)]
    pub baseline_layer_ready_ms: Vec<f64>,
    pub ratio_operator_to_baseline: f64,
    /// Creating the Platforms, before the operator starts (not in `converge_ms`).
    pub create_ms: f64,
    /// Platform changes (watch MODIFIED events) after the creates, per platform.
    pub writes_per_platform: f64,
    /// Platform changes in the 3 s after convergence (should be 0).
    pub steady_state_writes: usize,
    /// The Platform changes by what they changed (finalizers, phase from → to, or within a
    /// phase the dependency count, the message, other status).
    #[serde(default)]
    pub writes_by_kind: BTreeMap<String, usize>,
    pub operator_peak_rss_mb: f64,
    pub operator_cpu_seconds: f64,
    pub operator_peak_sockets: usize,
    /// Most TCP connections the operator held to the API server at once.
    #[serde(default)]
    pub operator_api_connections: usize,
    /// The HTTP version the operator was told to speak (`--kube-http`).
    #[serde(default)]
    pub kube_http: String,
    /// The operator's own API requests, most in one second (from its `/metrics`).
    pub api_requests_per_second_peak: f64,
    pub operator_requests_total: u64,
    pub operator_5xx: u64,
    pub operator_429: u64,
    pub operator_requests_by_class: BTreeMap<String, u64>,
    /// Most Events waiting in the operator's queue at one scrape (its capacity is 1,024).
    pub operator_event_queue_peak: u64,
    pub kube_qps: f64,
    pub kube_burst: u32,
    pub concurrency: u16,
    /// Times the benchmark's Platform watch listed again (its counts miss such gaps).
    pub watch_restarts: usize,
    /// CPU used while the baseline came up, per control-plane process and for the machine.
    #[serde(default)]
    pub baseline_cpu: Option<PhaseCpu>,
    /// The same from the operator's start to the last platform Ready, the operator included.
    #[serde(default)]
    pub operator_cpu: Option<PhaseCpu>,
    /// What the API server counted while the baseline came up (see `server.rs`).
    #[serde(default)]
    pub baseline_server: Option<server::ServerCounts>,
    /// The same from the operator's start to the last platform Ready.
    #[serde(default)]
    pub operator_server: Option<server::ServerCounts>,
    /// The control plane's client settings, from `control-plane.env` beside the kubeconfig
    /// (written by testenv/up.sh); `null` when there is none.
    pub control_plane: Option<ControlPlane>,
}

impl RealReport {
    /// One line, the operator's figures beside the baseline's.
    pub fn summary(&self) -> String {
        format!(
            "startup on a real control plane: {} platforms, depth {}, ready-after {} ms \
             (baseline first): operator {:.0} ms vs layer-by-layer baseline {:.0} ms, \
             ratio {:.2} (critical path {:.0} ms); operator peak RSS {:.0} MiB, {:.1} CPU-s, \
             {} sockets ({} connections to the API server over {}), {:.0} requests/s at peak \
             ({} in all, {} 5xx, {} 429); {:.2} platform writes per platform, {} at rest; qps {} \
             burst {} concurrency {}; \
             control plane: {}",
            self.platforms,
            self.depth,
            self.ready_after_ms,
            self.converge_ms,
            self.baseline_converge_ms,
            self.ratio_operator_to_baseline,
            self.critical_path_ms,
            self.operator_peak_rss_mb,
            self.operator_cpu_seconds,
            self.operator_peak_sockets,
            self.operator_api_connections,
            self.kube_http,
            self.api_requests_per_second_peak,
            self.operator_requests_total,
            self.operator_5xx,
            self.operator_429,
            self.writes_per_platform,
            self.steady_state_writes,
            self.kube_qps,
            self.kube_burst,
            self.concurrency,
            self.control_plane
                .as_ref()
                .map_or_else(|| "settings unknown".to_string(), ControlPlane::describe),
        )
    }
}

/// The test control plane's client settings (`KEY=VALUE` lines of `control-plane.env`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ControlPlane(pub BTreeMap<String, String>);

impl ControlPlane {
    /// `control-plane.env` in the kubeconfig's directory, if there is one.
    pub fn read_beside(kubeconfig: &Path) -> Option<Self> {
        let path = kubeconfig.parent()?.join("control-plane.env");
        let text = std::fs::read_to_string(path).ok()?;
        Some(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let settings = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
            .collect();
        Self(settings)
    }

    /// The settings as `KEY=VALUE` words.
    pub fn describe(&self) -> String {
        let words: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        words.join(" ")
    }
}

/// The stack's names by layer: a platform without dependencies is in layer 0, any other one
/// layer after its deepest dependency.
fn layers(stack: &[(String, Vec<String>)]) -> Vec<Vec<&str>> {
    let mut level_of: HashMap<&str, usize> = HashMap::new();
    let mut layers: Vec<Vec<&str>> = Vec::new();
    // `layered_stack` lists every platform after its dependencies.
    for (name, deps) in stack {
        let level = deps
            .iter()
            .filter_map(|d| level_of.get(d.as_str()))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level_of.insert(name, level);
        if layers.len() <= level {
            layers.resize_with(level + 1, Vec::new);
        }
        layers[level].push(name);
    }
    layers
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum RealError {
    #[error("failed to read the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("failed to reach the API server: {0} (is the control plane up? make testenv)")]
    Unreachable(kube::Error),
    #[error("failed to {what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("the benchmark's platform watch ended")]
    WatchEnded,
    #[error("failed to build the object {name}: {message}")]
    Fixture { name: String, message: String },
    #[error("failed to start the operator process: {0}")]
    Spawn(std::io::Error),
    #[error("the operator process exited ({status}) before the stack converged; log: {}", log.display())]
    OperatorExited { status: String, log: PathBuf },
}

impl From<super::ApplyError> for RealError {
    fn from(error: super::ApplyError) -> Self {
        match error {
            super::ApplyError::Encode { name, source } => Self::Fixture {
                name,
                message: source.to_string(),
            },
            super::ApplyError::Api { name, source } => Self::api(format!("apply {name}"), source),
        }
    }
}

impl RealError {
    fn api(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Api {
            what: what.into(),
            source,
        }
    }
}

/// Runs the baseline, then the operator; progress goes to stderr.
pub async fn run_real_bench(bench: &RealBench) -> Result<RealReport, RealError> {
    LazyLock::force(&STARTED);
    let (client, api_port) = cluster::connect(&bench.kubeconfig).await?;
    let control_plane = ControlPlane::read_beside(&bench.kubeconfig);
    if control_plane.is_none() {
        say!(
            "warning: no control-plane.env beside {}: the control plane's client settings are \
             unknown (testenv/up.sh writes it)",
            bench.kubeconfig.display()
        );
    }
    cluster::wait_for_earlier_runs(&client, NAMESPACE_DELETION).await;
    cluster::apply_crds(&client).await?;
    let stack = super::layered_stack(bench.platforms, bench.depth, bench.fan_in, bench.seed);
    let critical = bench.ready_after * bench.depth.max(1) as u32;
    // A stall, not a slow run, is what it catches: 10,000 platforms take 15–16 s a layer on
    // a 2-core machine (the baseline about 10), which a 10× bound would cut short.
    let timeout = critical * 20 + Duration::from_secs(300);
    let ready_after = bench.ready_after_value();

    say!(
        "baseline: {} deployments in {} layers, layer by layer...",
        stack.len(),
        bench.depth
    );
    let namespace = cluster::BenchNamespace::create(&client, "baseline").await?;
    let layers = layers(&stack);
    let cpu = cpu::CpuWatch::control_plane_beside(&bench.kubeconfig);
    let counter = server::ServerCounter::new(client.clone());
    let (before, counted_before) = (cpu.read(), counter.read().await);
    let baseline = baseline::run(&client, &namespace.name, &layers, &ready_after, timeout).await;
    let baseline_cpu = cpu.read().since(&before);
    let baseline_server = server::phase_counts(counted_before, counter.read().await);
    let baseline = baseline.map(|ready| {
        let took = ready.last().copied().unwrap_or_default();
        (took, ready)
    });
    if let Ok((took, _)) = &baseline {
        say!(
            "baseline converged in {:.0} ms; CPU {}",
            took.as_secs_f64() * 1000.0,
            baseline_cpu.describe()
        );
        if let Some(counts) = &baseline_server {
            say!("API server, baseline: {}", counts.describe(8));
        }
    }
    namespace.delete_and_wait(&client, NAMESPACE_DELETION).await;
    let (baseline, baseline_layer_ready) = baseline?;
    tokio::time::sleep(PAUSE).await;

    say!("operator: {} platforms...", stack.len());
    let namespace = cluster::BenchNamespace::create(&client, "operator").await?;
    let run = operator_run::run(
        &client,
        &namespace.name,
        bench,
        &stack,
        &layers,
        operator_run::Instruments {
            api_port,
            cpu,
            server: counter,
        },
        timeout,
    )
    .await;
    namespace.release(&client).await;
    let run = run?;
    if run.requests.by_class.is_empty() {
        say!(
            "warning: none of the operator's /metrics pages could be read ({} tries): its \
             request counts are missing",
            run.requests.failed_scrapes
        );
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let platforms = stack.len();
    Ok(RealReport {
        cluster: "real".into(),
        platforms,
        depth: bench.depth,
        ready_after_ms: bench.ready_after.as_millis() as u64,
        order: "baseline-first".into(),
        critical_path_ms: ms(critical),
        converge_ms: ms(run.converge),
        baseline_converge_ms: ms(baseline),
        layer_ready_ms: run.layer_ready.iter().copied().map(ms).collect(),
        baseline_layer_ready_ms: baseline_layer_ready.into_iter().map(ms).collect(),
        ratio_operator_to_baseline: if baseline.is_zero() {
            0.0
        } else {
            run.converge.as_secs_f64() / baseline.as_secs_f64()
        },
        create_ms: ms(run.created_in),
        writes_per_platform: run.writes as f64 / platforms.max(1) as f64,
        steady_state_writes: run.writes_at_rest,
        writes_by_kind: run.writes_by_kind.clone(),
        operator_peak_rss_mb: run.samples.peak_rss_mb,
        operator_cpu_seconds: run.samples.cpu_seconds,
        operator_peak_sockets: run.samples.peak_sockets,
        operator_api_connections: run.samples.peak_api_connections.unwrap_or_default(),
        kube_http: bench.operator.kube_http.clone(),
        api_requests_per_second_peak: run.requests.peak_per_second,
        operator_requests_total: run.requests.total(),
        operator_5xx: run.requests.class("5xx"),
        operator_429: run.requests.class("429"),
        operator_requests_by_class: run.requests.by_class.clone(),
        operator_event_queue_peak: run.requests.peak_event_queue,
        kube_qps: bench.operator.kube_qps,
        kube_burst: bench.operator.kube_burst,
        concurrency: bench.operator.concurrency,
        watch_restarts: run.watch_restarts,
        baseline_cpu: Some(baseline_cpu),
        operator_cpu: Some(run.cpu.clone()),
        baseline_server,
        operator_server: run.server.clone(),
        control_plane,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_follow_the_deepest_dependency() {
        let stack: Vec<(String, Vec<String>)> = [
            ("a", vec![]),
            ("b", vec![]),
            ("c", vec!["a"]),
            ("d", vec!["b", "c"]),
        ]
        .into_iter()
        .map(|(n, d)| (n.to_string(), d.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(layers(&stack), vec![vec!["a", "b"], vec!["c"], vec!["d"]]);
    }

    #[test]
    fn control_plane_settings_are_read_as_key_value_lines() {
        let settings = ControlPlane::parse(
            "# written by testenv/up.sh\nKCM_KUBE_API_QPS=2000\n\nSCHEDULER_KUBE_API_QPS = 500\n",
        );
        assert_eq!(
            settings.describe(),
            "KCM_KUBE_API_QPS=2000 SCHEDULER_KUBE_API_QPS=500"
        );
    }
}
