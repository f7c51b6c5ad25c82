//! The operator under measurement as a process of its own (the `platform-operator run` binary
//! users deploy), connected to the simulated API server through a kubeconfig, so that its
//! memory, CPU and connections are its own and not the simulator's. Linux only: the samples
//! come from `/proc/<pid>`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How the operator process is started.
#[derive(Debug, Clone)]
pub struct OperatorProcess {
    pub binary: PathBuf,
    pub kube_qps: f64,
    pub kube_burst: u32,
    pub concurrency: u16,
}

impl OperatorProcess {
    /// The `platform-operator` binary next to the running one (`target/<profile>/`).
    pub fn beside_current_exe() -> Option<PathBuf> {
        let binary = std::env::current_exe()
            .ok()?
            .with_file_name("platform-operator");
        binary.is_file().then_some(binary)
    }

    pub fn spawn(&self, kubeconfig: &Path, log: &Path) -> std::io::Result<Child> {
        self.spawn_with(kubeconfig, log, "127.0.0.1:0", &[])
    }

    /// As [`Self::spawn`], with the probe server (which serves `/metrics`) on `probe_addr` and
    /// more `run` flags.
    pub fn spawn_with(
        &self,
        kubeconfig: &Path,
        log: &Path,
        probe_addr: &str,
        extra: &[&str],
    ) -> std::io::Result<Child> {
        let log = std::fs::File::create(log)?;
        Command::new(&self.binary)
            .args(["run", "--log-format", "text", "--probe-addr", probe_addr])
            .args(["--api-addr", "127.0.0.1:0"])
            .args(extra)
            .args(["--kube-qps", &self.kube_qps.to_string()])
            .args(["--kube-burst", &self.kube_burst.to_string()])
            .args(["--concurrency", &self.concurrency.to_string()])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
    }
}

/// What was sampled of the operator process and the API server while the stack came up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessSamples {
    /// Peak resident memory (`VmHWM`), MiB.
    pub peak_rss_mb: f64,
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Most sockets the process held at once (its connections to the API server, and the
    /// probe and REST API listeners).
    pub peak_sockets: usize,
    /// Most API requests (all clients: operator and simulated workloads) in one second.
    pub peak_requests_per_second: f64,
}

/// Samples `pid` and the API server's request counter every 100 ms until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<ProcessSamples>,
}

impl Sampler {
    pub fn start(pid: u32, requests: impl Fn() -> u64 + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = ProcessSamples::default();
            let mut window: std::collections::VecDeque<(Instant, u64)> = Default::default();
            while !stopping.load(Ordering::Relaxed) {
                let now = Instant::now();
                let count = requests();
                window.push_back((now, count));
                while window
                    .front()
                    .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(1))
                {
                    window.pop_front();
                }
                if let Some((first, first_count)) = window.front() {
                    let span = now.duration_since(*first).as_secs_f64();
                    if span >= 0.5 {
                        let rate = (count - first_count) as f64 / span;
                        samples.peak_requests_per_second =
                            samples.peak_requests_per_second.max(rate);
                    }
                }
                samples.peak_sockets = samples.peak_sockets.max(sockets(pid));
                if let Some(peak) = status_kib(&pid.to_string(), "VmHWM:") {
                    samples.peak_rss_mb = peak / 1024.0;
                }
                if let Some(cpu) = cpu_seconds(pid) {
                    samples.cpu_seconds = cpu;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> ProcessSamples {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// A `kB` field of `/proc/<process>/status` (`process`: a pid, or `self`).
pub(super) fn status_kib(process: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are space-separated.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks; 100 per second on every Linux configuration in use.
    Some((utime + stime) / 100.0)
}

fn sockets(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}
