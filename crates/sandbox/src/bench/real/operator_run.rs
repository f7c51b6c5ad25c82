//! The measured run with the operator: the Platforms are created first, then the operator
//! process starts, and a watch on the namespace's Platforms sees each one become Ready.
//! Nothing but the operator writes Platforms after the creates, so every change the watch
//! delivers afterwards is one of the operator's writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};

use platform_operator::crd::Platform;
use platform_operator::fixtures::platform;

use super::cluster::{BENCH_MANAGER, IN_FLIGHT};
use super::cpu::{CpuWatch, PhaseCpu};
use super::scrape::{RequestCounts, Scraper};
use super::server::{self, ServerCounter, ServerCounts};
use super::writes::WriteKinds;
use super::{READY_AFTER_ANNOTATION, RealBench, RealError};
use crate::bench::process::Sampler;
use crate::bench::{ProcessSamples, apply_all};

/// After the last Ready, how long writes are still counted (there should be none).
const AT_REST: Duration = Duration::from_secs(3);
/// The initial list of the Platforms just created.
const LIST_TIMEOUT: Duration = Duration::from_secs(120);

/// What is watched beside the Platforms.
pub(super) struct Instruments {
    /// The API server's port: the operator's connections to it are counted.
    pub api_port: u16,
    /// The control plane's processes (the operator's is added).
    pub cpu: CpuWatch,
    /// The API server's own request counters.
    pub server: ServerCounter,
}

/// What the run measured.
pub(super) struct OperatorRun {
    /// How long creating the Platforms took (before the operator starts; not in `converge`).
    pub created_in: Duration,
    /// From the operator's start to the last Platform seen Ready.
    pub converge: Duration,
    /// When the last platform of each layer was seen Ready, from the operator's start.
    pub layer_ready: Vec<Duration>,
    /// Platform changes after the creates, up to [`AT_REST`] after convergence.
    pub writes: usize,
    /// The changes in the [`AT_REST`] after convergence.
    pub writes_at_rest: usize,
    /// The changes by what they changed.
    pub writes_by_kind: std::collections::BTreeMap<String, usize>,
    /// Times the watch had to list again (changes during a gap are not counted).
    pub watch_restarts: usize,
    pub samples: ProcessSamples,
    pub requests: RequestCounts,
    /// CPU from the operator's start to the last Ready (to the failure, if it did not converge).
    pub cpu: PhaseCpu,
    /// What the API server counted over the same span.
    pub server: Option<ServerCounts>,
}

pub(super) async fn run(
    client: &Client,
    namespace: &str,
    bench: &RealBench,
    stack: &[(String, Vec<String>)],
    layers: &[Vec<&str>],
    instruments: Instruments,
    timeout: Duration,
) -> Result<OperatorRun, RealError> {
    let began = Instant::now();
    create_platforms(client, namespace, stack, &bench.ready_after_value()).await?;
    let created_in = began.elapsed();

    let api: Api<Platform> = Api::namespaced(client.clone(), namespace);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut tally = Tally::default();
    let listed = Instant::now() + LIST_TIMEOUT;
    while !tally.listed {
        let event = next(&mut events, listed).await?;
        tally.observe(event);
    }

    let port = free_port().map_err(RealError::Spawn)?;
    let log = operator_log();
    let probe_addr = format!("127.0.0.1:{port}");
    let kubeconfig = bench.kubeconfig.as_path();
    let mut child = bench
        .operator
        .spawn_with(kubeconfig, &log, &probe_addr, &["--namespace", namespace])
        .map_err(RealError::Spawn)?;
    let start = Instant::now();
    say!(
        "{} platforms created in {:.1} s; operator started (pid {}, /metrics on {probe_addr})",
        stack.len(),
        created_in.as_secs_f64(),
        child.id()
    );
    let cpu = instruments.cpu.with("platform-operator", child.id());
    let (cpu_at_start, counted_at_start) = (cpu.read(), instruments.server.read().await);
    let sampler = Sampler::start(child.id(), Some(instruments.api_port), || 0);
    let scraper = Scraper::start(port);

    let converged = wait_all_ready(
        &mut events,
        &mut tally,
        (&mut child, &log),
        stack.len(),
        timeout,
    )
    .await;
    let phase_cpu = cpu.read().since(&cpu_at_start);
    let phase_server = server::phase_counts(counted_at_start, instruments.server.read().await);
    if let Ok(last_ready) = &converged {
        let took = last_ready.saturating_duration_since(start).as_secs_f64();
        say!(
            "all {} platforms Ready after {:.1} s; CPU {}",
            stack.len(),
            took,
            phase_cpu.describe()
        );
        if let Some(counts) = &phase_server {
            say!("API server, operator: {}", counts.describe(8));
        }
    }
    let settled = converged.as_ref().map_or(start, |at| *at + AT_REST);
    while converged.is_ok() && Instant::now() < settled {
        match tokio::time::timeout_at(settled.into(), events.next()).await {
            Ok(Some(Ok(event))) => tally.observe(event),
            Ok(Some(Err(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    if converged.is_ok() {
        say!(
            "Platform writes by what they changed: {}",
            tally.kinds.describe()
        );
    }
    let requests = scraper.finish().await;
    let samples = sampler.finish().await;
    let _ = child.kill();
    let _ = child.wait();
    if converged.is_err() {
        // What the operator did until then, for a look at why it did not converge.
        // Layers all Ready, each with when its last platform became Ready.
        let complete: Vec<String> = layers
            .iter()
            .map_while(|layer| {
                let ready: Vec<&Instant> = layer
                    .iter()
                    .filter_map(|name| tally.ready.get(*name))
                    .collect();
                let last = ready.iter().max().filter(|_| ready.len() == layer.len())?;
                Some(format!(
                    "{:.1}",
                    last.saturating_duration_since(start).as_secs_f64()
                ))
            })
            .collect();
        say!(
            "operator until the failure: {} requests by class {:?}, {:.1} CPU-s, peak RSS {:.0} \
             MiB, at most {} sockets ({} to the API server), at most {} Events waiting; {} platform writes; {} of {} \
             layers all Ready (at {} s); its log: {}",
            requests.total(),
            requests.by_class,
            samples.cpu_seconds,
            samples.peak_rss_mb,
            samples.peak_sockets,
            samples.peak_api_connections.unwrap_or_default(),
            requests.peak_event_queue,
            tally.modified.len(),
            complete.len(),
            layers.len(),
            complete.join(", "),
            log.display()
        );
    }
    let last_ready = converged?;
    let writes_at_rest = tally.modified.iter().filter(|at| **at > last_ready).count();
    Ok(OperatorRun {
        created_in,
        converge: last_ready.saturating_duration_since(start),
        layer_ready: layers
            .iter()
            .map(|layer| {
                let last = layer.iter().filter_map(|name| tally.ready.get(*name)).max();
                last.map_or(Duration::ZERO, |at| at.saturating_duration_since(start))
            })
            .collect(),
        writes: tally.modified.len(),
        writes_at_rest,
        writes_by_kind: tally.kinds.counts(),
        watch_restarts: tally.restarts,
        samples,
        requests,
        cpu: phase_cpu,
        server: phase_server,
    })
}

/// What the watch saw.
#[derive(Default)]
struct Tally {
    /// The initial list is complete.
    listed: bool,
    lists: usize,
    restarts: usize,
    /// When each platform was first seen Ready.
    ready: HashMap<String, Instant>,
    /// When each change after the initial list arrived.
    modified: Vec<Instant>,
    kinds: WriteKinds,
}

impl Tally {
    fn observe(&mut self, event: Event<Platform>) {
        let now = Instant::now();
        match event {
            Event::Init => {
                self.lists += 1;
                self.restarts = self.lists - 1;
            }
            Event::InitApply(platform) => {
                self.kinds.listed(&platform);
                self.note(&platform, now);
            }
            Event::InitDone => self.listed = true,
            Event::Apply(platform) => {
                self.modified.push(now);
                self.kinds.written(&platform);
                self.note(&platform, now);
            }
            Event::Delete(_) => {}
        }
    }

    fn note(&mut self, platform: &Platform, now: Instant) {
        let ready = platform.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            self.ready.entry(platform.name_any()).or_insert(now);
        }
    }
}

/// Follows the watch until `total` platforms were seen Ready, for up to `timeout`; returns
/// when the last one was. Fails at once when the operator process exits.
async fn wait_all_ready(
    events: &mut (impl Stream<Item = Result<Event<Platform>, watcher::Error>> + Unpin),
    tally: &mut Tally,
    (child, log): (&mut Child, &Path),
    total: usize,
    timeout: Duration,
) -> Result<Instant, RealError> {
    let deadline = Instant::now() + timeout;
    while tally.ready.len() < total {
        // Wakes at least every second to notice an operator that died.
        let wake = deadline.min(Instant::now() + Duration::from_secs(1));
        match tokio::time::timeout_at(wake.into(), events.next()).await {
            Ok(Some(Ok(event))) => tally.observe(event),
            Ok(Some(Err(error))) => say!("warning: platform watch: {error}"),
            Ok(None) => return Err(RealError::WatchEnded),
            Err(_) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(RealError::OperatorExited {
                status: status.to_string(),
                log: log.to_path_buf(),
            });
        }
        if Instant::now() >= deadline {
            let what = format!("all {total} platforms Ready ({} were)", tally.ready.len());
            return Err(RealError::Timeout {
                what,
                after: timeout,
            });
        }
    }
    Ok(tally
        .ready
        .values()
        .max()
        .copied()
        .unwrap_or_else(Instant::now))
}

async fn next(
    events: &mut (impl Stream<Item = Result<Event<Platform>, watcher::Error>> + Unpin),
    deadline: Instant,
) -> Result<Event<Platform>, RealError> {
    loop {
        match tokio::time::timeout_at(deadline.into(), events.next()).await {
            Ok(Some(Ok(event))) => return Ok(event),
            Ok(Some(Err(error))) => say!("warning: platform watch: {error}"),
            Ok(None) => return Err(RealError::WatchEnded),
            Err(_) => {
                let what = "the platforms listed".to_string();
                return Err(RealError::Timeout {
                    what,
                    after: LIST_TIMEOUT,
                });
            }
        }
    }
}

/// The stack as Platforms (the sim benchmark's fixture), `IN_FLIGHT` creates at a time.
async fn create_platforms(
    client: &Client,
    namespace: &str,
    stack: &[(String, Vec<String>)],
    ready_after: &str,
) -> Result<(), RealError> {
    let api: Api<Platform> = Api::namespaced(client.clone(), namespace);
    let platforms = stack
        .iter()
        .map(|(name, deps)| {
            platform(name)
                .namespace(namespace)
                .depends_on(deps.iter().map(String::as_str))
                .pod_annotation(READY_AFTER_ANNOTATION, ready_after)
                .build()
        })
        .collect();
    apply_all(&api, BENCH_MANAGER, IN_FLIGHT, platforms)
        .await
        .map_err(RealError::from)
}

/// A port free right now on 127.0.0.1, for the operator's probe server.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Where the operator's log goes (kept after the run, for a look when something failed).
pub(super) fn operator_log() -> PathBuf {
    std::env::temp_dir().join(format!(
        "pmp-bench-real-{}.operator.log",
        std::process::id()
    ))
}
