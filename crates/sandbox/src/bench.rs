//! `platform-sandbox bench startup`: the operator bringing up a layered stack in the simulated
//! cluster, measured from the simulator's write history. By default the operator is the
//! `platform-operator` binary in a process of its own (so that its memory, CPU and connections
//! are measured alone); `--in-process` runs it inside the benchmark instead. [`real`] runs the
//! same stack against a real control plane, beside a baseline without the operator.

mod apply;
mod process;
mod real;
pub mod storm;

pub use apply::{ApplyError, apply_all};
pub use process::{OperatorProcess, ProcessSamples};
pub use real::{ControlPlane, RealBench, RealError, RealReport, run_real_bench};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::Api;
use serde::Serialize;
use serde_json::Value;

use platform_operator::controller::FIELD_MANAGER;
use platform_operator::crd::Platform;
use platform_operator::fixtures::{TEST_NAMESPACE, platform};
use platform_operator::graph::{Graph, NodeInput, NodeKey};
use pmp_sim::{SimError, WriteRecord};

use crate::{Sandbox, SandboxConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct StartupBench {
    pub platforms: usize,
    pub depth: usize,
    /// Simulated time from a pod's start to its readiness.
    pub ready_after: Duration,
    /// Each platform depends on this many platforms of the previous layer (at most).
    pub fan_in: usize,
    pub speed: f64,
    pub seed: u64,
    /// The operator as a process of its own (real time: the simulator runs at speed 1), or
    /// `None` for the operator inside the benchmark's process.
    pub operator: Option<OperatorProcess>,
}

/// The measurements (JSON keys as documented in the README).
#[derive(Debug, Clone, Serialize)]
pub struct StartupReport {
    pub platforms: usize,
    pub depth: usize,
    pub gating_latency_ms_p50: f64,
    pub gating_latency_ms_p99: f64,
    pub gating_latency_ms_max: f64,
    pub converge_ms: f64,
    pub critical_path_ms: f64,
    pub overhead_ratio: f64,
    /// (critical path + the operator's own hops along the critical chain) / critical path:
    /// what the operator adds, without the simulated workloads' share.
    pub operator_overhead_ratio: f64,
    pub writes_per_platform: f64,
    /// Operator writes in the 3 s after the last platform was Ready (should be 0).
    pub steady_state_writes: usize,
    pub events_per_platform: f64,
    /// Median time of each hop from a start to the platform's Ready, in milliseconds: the
    /// operator's scale-up write → pod created (simulated deployment controller) → pod Ready
    /// (simulated kubelet, includes `ready-after`) → Deployment `readyReplicas` (simulated
    /// deployment controller) → Platform `Ready` (operator).
    pub hops_ms_p50: BTreeMap<String, f64>,
    /// The same hops at the 99th percentile.
    pub hops_ms_p99: BTreeMap<String, f64>,
    /// The operator's writes by target (`platforms/status`, `deployments`, ...).
    pub operator_writes: BTreeMap<String, usize>,
    /// Peak RSS of the benchmark process (with `--in-process`: operator and simulator).
    pub peak_rss_mb: f64,
    /// `process` or `in-process`.
    pub operator_mode: String,
    /// The operator process alone (not measured in-process).
    pub operator_peak_rss_mb: Option<f64>,
    pub operator_cpu_seconds: Option<f64>,
    pub operator_peak_sockets: Option<usize>,
    /// Most API requests in one second (all clients).
    pub api_requests_per_second_peak: Option<f64>,
    pub kube_qps: Option<f64>,
    pub kube_burst: Option<u32>,
    pub concurrency: Option<u16>,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("failed to start the simulated cluster: {0}")]
    Sim(#[from] SimError),
    #[error("failed to create the stack: {0}")]
    Create(#[from] ApplyError),
    #[error("the stack did not converge within {0:?}")]
    Timeout(Duration),
    #[error("failed to start the operator process: {0}")]
    Operator(std::io::Error),
}

/// Runs the benchmark once.
pub async fn run_startup_bench(bench: &StartupBench) -> Result<StartupReport, BenchError> {
    let speed = if bench.operator.is_some() {
        1.0
    } else {
        bench.speed
    };
    let mut sandbox = Sandbox::start(SandboxConfig {
        speed,
        ..SandboxConfig::default()
    })
    .await?;
    let stack = layered_stack(bench.platforms, bench.depth, bench.fan_in, bench.seed);
    create_all(&sandbox, &stack, bench.ready_after).await?;

    let begin = Instant::now();
    let mut running = match &bench.operator {
        Some(operator) => Some(spawn_operator(&sandbox, operator)?),
        None => {
            sandbox.start_operator()?;
            None
        }
    };
    let real_critical =
        Duration::from_secs_f64(bench.ready_after.as_secs_f64() * bench.depth as f64 / speed);
    let timeout = real_critical * 10 + Duration::from_secs(60);
    let converged = wait_all_ready(&sandbox, stack.len(), begin, timeout).await;
    let settled_from = sandbox.cluster.writes().last().map_or(0, |w| w.seq);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let steady_state_writes = sandbox
        .cluster
        .store()
        .writes_since(settled_from)
        .iter()
        .filter(|w| w.actor == FIELD_MANAGER)
        .count();
    let writes = sandbox.cluster.writes();
    let samples = match running.take() {
        Some(running) => Some(running.stop().await),
        None => None,
    };
    sandbox.shutdown().await;
    let converged = converged.ok_or(BenchError::Timeout(timeout))?;

    let graph = Graph::build(
        stack.iter().map(|(name, deps)| NodeInput {
            key: NodeKey::new(TEST_NAMESPACE, name.clone()),
            depends_on: deps
                .iter()
                .map(|d| NodeKey::new(TEST_NAMESPACE, d.clone()))
                .collect(),
        }),
        &[],
    );
    let critical = graph.critical_path(|_| bench.ready_after);
    let critical_ms = critical.total.as_secs_f64() * 1000.0 / speed;
    let operator_hops_ms = operator_hops_on(&critical.chain, &writes, &stack);
    let converge_ms = converged.as_secs_f64() * 1000.0;
    let hops = hop_latencies(&writes);
    let mut latencies = gating_latencies(&writes, &stack);
    latencies.sort_by(f64::total_cmp);
    let operator_writes = writes.iter().filter(|w| w.actor == FIELD_MANAGER).count();
    let mut by_target: BTreeMap<String, usize> = BTreeMap::new();
    for w in writes.iter().filter(|w| w.actor == FIELD_MANAGER) {
        let target = match &w.subresource {
            Some(sub) => format!("{}/{sub}", w.resource.plural),
            None => w.resource.plural.clone(),
        };
        *by_target.entry(target).or_default() += 1;
    }
    let events = writes
        .iter()
        .filter(|w| w.resource.plural == "events")
        .count();
    Ok(StartupReport {
        platforms: stack.len(),
        depth: bench.depth,
        gating_latency_ms_p50: percentile(&latencies, 0.50),
        gating_latency_ms_p99: percentile(&latencies, 0.99),
        gating_latency_ms_max: latencies.last().copied().unwrap_or(0.0),
        converge_ms,
        critical_path_ms: critical_ms,
        overhead_ratio: if critical_ms > 0.0 {
            converge_ms / critical_ms
        } else {
            0.0
        },
        operator_overhead_ratio: if critical_ms > 0.0 {
            (critical_ms + operator_hops_ms) / critical_ms
        } else {
            0.0
        },
        steady_state_writes,
        writes_per_platform: operator_writes as f64 / stack.len().max(1) as f64,
        events_per_platform: events as f64 / stack.len().max(1) as f64,
        operator_writes: by_target,
        hops_ms_p50: hops
            .iter()
            .map(|(k, v)| (k.clone(), percentile(v, 0.5)))
            .collect(),
        hops_ms_p99: hops
            .iter()
            .map(|(k, v)| (k.clone(), percentile(v, 0.99)))
            .collect(),
        peak_rss_mb: peak_rss_mb(),
        operator_mode: if bench.operator.is_some() {
            "process"
        } else {
            "in-process"
        }
        .into(),
        operator_peak_rss_mb: samples.as_ref().map(|s| s.peak_rss_mb),
        operator_cpu_seconds: samples.as_ref().map(|s| s.cpu_seconds),
        operator_peak_sockets: samples.as_ref().map(|s| s.peak_sockets),
        api_requests_per_second_peak: samples.as_ref().map(|s| s.peak_requests_per_second),
        kube_qps: bench.operator.as_ref().map(|o| o.kube_qps),
        kube_burst: bench.operator.as_ref().map(|o| o.kube_burst),
        concurrency: bench.operator.as_ref().map(|o| o.concurrency),
    })
}

/// The operator process and its sampler.
struct RunningOperator {
    child: std::process::Child,
    sampler: process::Sampler,
}

impl RunningOperator {
    async fn stop(mut self) -> ProcessSamples {
        let samples = self.sampler.finish().await;
        let _ = self.child.kill();
        let _ = self.child.wait();
        samples
    }
}

fn spawn_operator(
    sandbox: &Sandbox,
    operator: &OperatorProcess,
) -> Result<RunningOperator, BenchError> {
    let dir = std::env::temp_dir();
    let kubeconfig = dir.join(format!("pmp-bench-{}.kubeconfig", std::process::id()));
    let log = dir.join(format!("pmp-bench-{}.operator.log", std::process::id()));
    sandbox
        .cluster
        .write_kubeconfig(&kubeconfig)
        .map_err(BenchError::Operator)?;
    let child = operator
        .spawn(&kubeconfig, &log)
        .map_err(BenchError::Operator)?;
    let requests = sandbox.cluster.request_counter();
    let sampler = process::Sampler::start(child.id(), None, requests);
    Ok(RunningOperator { child, sampler })
}

/// The operator's own time along `chain`, in milliseconds: for each platform, from its last
/// dependency's Ready to its Deployment scale-up (gating), and from its Deployment's
/// `readyReplicas` to its own Ready (reporting).
fn operator_hops_on(
    chain: &[NodeKey],
    writes: &[WriteRecord],
    stack: &[(String, Vec<String>)],
) -> f64 {
    let marks = hop_marks(writes);
    let ready = first_ready_writes(writes);
    let deps: BTreeMap<&str, &Vec<String>> = stack.iter().map(|(n, d)| (n.as_str(), d)).collect();
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
    chain
        .iter()
        .map(|key| {
            let name = key.name.as_str();
            let Some(steps) = marks.get(name) else {
                return 0.0;
            };
            let gating = deps
                .get(name)
                .and_then(|d| d.iter().filter_map(|d| ready.get(d)).max())
                .zip(steps[0])
                .map_or(0.0, |(from, to)| ms(*from, to));
            let reporting = steps[3]
                .zip(steps[4])
                .map_or(0.0, |(from, to)| ms(from, to));
            gating + reporting
        })
        .sum()
}

/// `depth` layers of about `platforms / depth` platforms; each depends on up to `fan_in`
/// platforms of the layer before (deterministic from the seed).
fn layered_stack(
    platforms: usize,
    depth: usize,
    fan_in: usize,
    seed: u64,
) -> Vec<(String, Vec<String>)> {
    let depth = depth.max(1);
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut layers: Vec<Vec<String>> = vec![Vec::new(); depth];
    for i in 0..platforms.max(depth) {
        layers[i % depth].push(format!("p{:02}-{i:05}", i % depth));
    }
    let mut stack = Vec::new();
    for (level, layer) in layers.iter().enumerate() {
        for name in layer {
            let mut deps = Vec::new();
            if level > 0 {
                let previous = &layers[level - 1];
                for _ in 0..fan_in.max(1) {
                    let pick = previous[(next() % previous.len() as u64) as usize].clone();
                    if !deps.contains(&pick) {
                        deps.push(pick);
                    }
                }
            }
            stack.push((name.clone(), deps));
        }
    }
    stack
}

async fn create_all(
    sandbox: &Sandbox,
    stack: &[(String, Vec<String>)],
    ready_after: Duration,
) -> Result<(), BenchError> {
    let api: Api<Platform> = Api::namespaced(sandbox.client(), TEST_NAMESPACE);
    let ready_after = format!("{}ms", ready_after.as_millis());
    let platforms = stack
        .iter()
        .map(|(name, deps)| {
            platform(name)
                .depends_on(deps.iter().map(String::as_str))
                .pod_annotation("sim.pmp.dev/ready-after", &ready_after)
                .build()
        })
        .collect();
    Ok(apply_all(&api, "bench", 16, platforms).await?)
}

async fn wait_all_ready(
    sandbox: &Sandbox,
    total: usize,
    begin: Instant,
    timeout: Duration,
) -> Option<Duration> {
    // Reads only the new part of the history each time: the benchmark must not compete with
    // the operator for CPU.
    let mut seen = 0;
    let mut ready: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let new = sandbox.cluster.store().writes_since(seen);
        if let Some(last) = new.last() {
            seen = last.seq;
        }
        for (name, at) in first_ready_writes(&new) {
            ready.entry(name).or_insert(at);
        }
        if ready.len() >= total {
            let last = ready.values().max().copied()?;
            return Some(last.saturating_duration_since(begin));
        }
        if begin.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When each platform's Ready condition first became True (status write time).
fn first_ready_writes(writes: &[WriteRecord]) -> BTreeMap<String, Instant> {
    let mut ready = BTreeMap::new();
    for w in writes {
        if w.resource.plural == "platforms"
            && w.subresource.as_deref() == Some("status")
            && is_ready(&w.object)
        {
            ready.entry(w.name.clone()).or_insert(w.at);
        }
    }
    ready
}

fn is_ready(object: &Value) -> bool {
    is_condition_true(object, "Ready")
}

/// For every platform with dependencies: time from its last dependency's Ready transition to
/// its own Deployment scale-up write, in milliseconds.
fn gating_latencies(writes: &[WriteRecord], stack: &[(String, Vec<String>)]) -> Vec<f64> {
    let ready = first_ready_writes(writes);
    let mut started: BTreeMap<&str, Instant> = BTreeMap::new();
    for w in writes {
        let replicas = w
            .object
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if w.actor == FIELD_MANAGER
            && w.resource.plural == "deployments"
            && w.subresource.is_none()
            && replicas > 0
        {
            started.entry(w.name.as_str()).or_insert(w.at);
        }
    }
    stack
        .iter()
        .filter(|(_, deps)| !deps.is_empty())
        .filter_map(|(name, deps)| {
            let last_dependency = deps
                .iter()
                .map(|d| ready.get(d))
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .max()?;
            let start = started.get(name.as_str())?;
            Some(
                start
                    .saturating_duration_since(*last_dependency)
                    .as_secs_f64()
                    * 1000.0,
            )
        })
        .collect()
}

/// Per platform, the time of each step between its start and its Ready (sorted, per hop).
fn hop_latencies(writes: &[WriteRecord]) -> BTreeMap<String, Vec<f64>> {
    let marks = hop_marks(writes);
    const HOPS: [&str; 4] = [
        "start_to_pod",
        "pod_to_ready",
        "ready_to_deployment",
        "deployment_to_platform",
    ];
    let mut hops: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for steps in marks.values() {
        for (i, hop) in HOPS.iter().enumerate() {
            if let (Some(from), Some(to)) = (steps[i], steps[i + 1]) {
                hops.entry(hop.to_string())
                    .or_default()
                    .push(to.saturating_duration_since(from).as_secs_f64() * 1000.0);
            }
        }
    }
    for values in hops.values_mut() {
        values.sort_by(f64::total_cmp);
    }
    hops
}

/// Per platform, when it passed each step: its Deployment's scale-up by the operator, its
/// first pod created, a pod Ready, its Deployment's `readyReplicas`, its own Ready.
fn hop_marks(writes: &[WriteRecord]) -> BTreeMap<&str, [Option<Instant>; 5]> {
    let mut marks: BTreeMap<&str, [Option<Instant>; 5]> = BTreeMap::new();
    for w in writes {
        let object = &w.object;
        let (name, step) = match (w.resource.plural.as_str(), w.subresource.as_deref()) {
            ("deployments", None)
                if w.actor == FIELD_MANAGER
                    && object
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                        > 0 =>
            {
                (w.name.as_str(), 0)
            }
            ("pods", None) if w.verb == pmp_sim::WriteVerb::Create => {
                let Some(platform) = object
                    .pointer("/metadata/labels/pmp.dev~1platform")
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                (platform, 1)
            }
            ("pods", Some("status")) if is_condition_true(object, "Ready") => {
                let Some(platform) = object
                    .pointer("/metadata/labels/pmp.dev~1platform")
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                (platform, 2)
            }
            ("deployments", Some("status"))
                if object
                    .pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    > 0 =>
            {
                (w.name.as_str(), 3)
            }
            ("platforms", Some("status")) if is_ready(object) => (w.name.as_str(), 4),
            _ => continue,
        };
        let slot = &mut marks.entry(name).or_default()[step];
        if slot.is_none() {
            *slot = Some(w.at);
        }
    }
    marks
}

fn is_condition_true(object: &Value, type_: &str) -> bool {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == type_ && c["status"] == "True")
        })
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Peak resident memory of this process (operator and simulator together), from
/// `/proc/self/status`; 0 where that file does not exist.
fn peak_rss_mb() -> f64 {
    process::status_kib("self", "VmHWM:").map_or(0.0, |kib| kib / 1024.0)
}
