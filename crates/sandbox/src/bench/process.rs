//! The operator under measurement as a process of its own (the `platform-operator run` binary
//! users deploy), connected to the simulated API server through a kubeconfig, so that its
//! memory, CPU and connections are its own and not the simulator's. Linux only: the samples
//! come from `/proc/<pid>`.

use std::collections::HashSet;
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
    /// The operator's `--kube-http`: `http1` or `http2`.
    pub kube_http: String,
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
            .args(["--kube-http", &self.kube_http])
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
    /// Most TCP connections the process held to the API server's port at once (when known).
    pub peak_api_connections: Option<usize>,
    /// Most API requests (all clients: operator and simulated workloads) in one second.
    pub peak_requests_per_second: f64,
}

/// Samples `pid` and the API server's request counter every 100 ms until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<ProcessSamples>,
}

impl Sampler {
    /// `api_port`: the API server's port, whose connections are counted apart.
    pub fn start(
        pid: u32,
        api_port: Option<u16>,
        requests: impl Fn() -> u64 + Send + 'static,
    ) -> Self {
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
                let held = socket_inodes(pid);
                samples.peak_sockets = samples.peak_sockets.max(held.len());
                if let Some(port) = api_port {
                    let held = connections_to(pid, port, &held);
                    samples.peak_api_connections =
                        Some(samples.peak_api_connections.unwrap_or(0).max(held));
                }
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

pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are space-separated.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks; 100 per second on every Linux configuration in use.
    Some((utime + stime) / 100.0)
}

/// The inodes of the sockets `pid` holds open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Established TCP connections of `pid` to remote `port`: the rows of its network namespace's
/// `/proc/<pid>/net/tcp{,6}` whose socket is among `held`, the process's own.
fn connections_to(pid: u32, port: u16, held: &HashSet<u64>) -> usize {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .map(|table| count_established(&table, port, held))
        .sum()
}

/// Counts the rows of a `/proc/net/tcp` table established to remote `port` whose inode is held.
fn count_established(table: &str, port: u16, held: &HashSet<u64>) -> usize {
    const ESTABLISHED: &str = "01";
    table
        .lines()
        .skip(1)
        .filter(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|remote| remote.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            let inode = fields.get(9).and_then(|i| i.parse::<u64>().ok());
            remote_port == Some(port)
                && fields.get(3) == Some(&ESTABLISHED)
                && inode.is_some_and(|i| held.contains(&i))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_established_rows_to_the_port_of_held_sockets_count() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:D2F0 0100007F:1A0B 01 00000000:00000000 00:00000000 00000000     0        0 111 1 0 20 4 30 10 -1
   1: 0100007F:D2F2 0100007F:1A0B 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1
   2: 0100007F:D2F4 0100007F:1A0B 06 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1
   3: 0100007F:D2F6 0100007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 444 1 0 20 4 30 10 -1
   4: 0100007F:D2F8 0100007F:1A0B 01 00000000:00000000 00:00000000 00000000     0        0 555 1 0 20 4 30 10 -1
";
        // 0x1A0B is 6667; 222 is another process's, 333 is in TIME_WAIT, 444 goes elsewhere.
        let held: HashSet<u64> = [111, 333, 444, 555].into_iter().collect();
        assert_eq!(count_established(table, 6667, &held), 2);
    }
}
