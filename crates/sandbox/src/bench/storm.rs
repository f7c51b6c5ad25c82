//! `platform-sandbox bench storm`: how fast a dependency failure is acted on while a storm of
//! routine pod updates floods the operator. `db ← api` and `noise` independent platforms run;
//! the noise platforms' pods are updated at `rate` per second straight in the simulator's
//! store (the storm must not be limited by HTTP); then `db`'s pod is OOM-killed. Measured
//! from the simulator's write history: from the OOM kill to the operator's stop of `db` (the
//! failure acted on) and to its stop of `api` (the cascade), with the triage queue's own
//! figures beside them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};

use platform_operator::controller::FIELD_MANAGER;
use platform_operator::controller::triage::Urgency;
use platform_operator::crd::{Phase, Platform};
use platform_operator::fixtures::{TEST_NAMESPACE, platform};
use platform_operator::graph::NodeKey;
use pmp_sim::resources::ResourceRef;
use pmp_sim::store::{Key, Store, WriteCtx, WriteVerb};
use pmp_sim::{SimError, WriteRecord};

use super::apply_all;
use crate::{Sandbox, SandboxConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct StormBench {
    pub noise: usize,
    /// Routine pod updates per second.
    pub rate: u32,
    /// How long the storm runs before the failure.
    pub lead: Duration,
    pub concurrency: u16,
}

/// The measurements.
#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub noise_platforms: usize,
    pub concurrency: u16,
    /// Routine pod updates per second achieved while the failure was handled.
    pub storm_updates_per_second: f64,
    /// Routine triggers waiting when the failure happened.
    pub routine_backlog_at_failure: usize,
    /// From the OOM kill (the pod status write) to the operator's first status write of
    /// `db` that reports it (the decision).
    pub failure_to_decision_ms: f64,
    /// From the OOM kill to the operator's scale-down of `api`, which depends on `db` (the
    /// first action: dependents stop first).
    pub failure_to_dependents_stopped_ms: f64,
    /// From the OOM kill to the scale-down of `db` itself, once `api`'s pods are gone (this
    /// includes their graceful termination in the simulated kubelet).
    pub failure_to_platform_stopped_ms: f64,
    /// How long `db`'s resource trigger and `api`'s dependency-failure trigger waited in the
    /// triage queue, and how many routine triggers queued before them they went ahead of.
    pub failure_queue_wait_ms: Option<f64>,
    pub failure_overtook: Option<usize>,
    pub cascade_queue_wait_ms: Option<f64>,
    pub cascade_overtook: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum StormError {
    #[error("failed to start the simulated cluster: {0}")]
    Sim(#[from] SimError),
    #[error("failed to write {name}: {source}")]
    Write { name: String, source: kube::Error },
    #[error("failed to create the stack: {0}")]
    Create(#[from] super::ApplyError),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("{0}")]
    Stalled(String),
}

pub async fn run_storm_bench(bench: &StormBench) -> Result<StormReport, StormError> {
    let mut sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let triage = sandbox
        .start_operator_with(|config| config.concurrency = bench.concurrency)?
        .context()
        .triage
        .clone();
    let api: Api<Platform> = Api::namespaced(sandbox.client(), TEST_NAMESPACE);
    let noise: Vec<String> = (0..bench.noise).map(|i| format!("noise-{i:05}")).collect();
    let mut stack = vec![
        platform("db").pod_annotation("sim.pmp.dev/ready-after", "100ms"),
        platform("api")
            .pod_annotation("sim.pmp.dev/ready-after", "100ms")
            .depends_on(["db"]),
    ];
    stack.extend(
        noise
            .iter()
            .map(|n| platform(n).pod_annotation("sim.pmp.dev/ready-after", "100ms")),
    );
    let platforms = stack.into_iter().map(|b| b.build()).collect();
    apply_all(&api, "bench", 16, platforms).await?;
    wait_all_running(&api, bench.noise + 2).await?;

    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let storm = storm(sandbox.cluster.store(), &noise, bench.rate, &stop, &sent);
    let measure = async {
        tokio::time::sleep(bench.lead).await;
        let backlog = triage.depth()[Urgency::Change as usize];
        let from_seq = sandbox.cluster.writes().last().map_or(0, |w| w.seq);
        let (sent_before, began) = (sent.load(Ordering::Relaxed), Instant::now());
        let outcome = fail_db(&sandbox, from_seq).await;
        let rate =
            (sent.load(Ordering::Relaxed) - sent_before) as f64 / began.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        outcome.map(|marks| (marks, backlog, rate))
    };
    let ((), outcome) = tokio::join!(storm, measure);
    let (marks, backlog, rate) = outcome?;
    let urgent = triage.urgent_releases();
    let release = |name: &str, urgency: Urgency| {
        urgent
            .iter()
            .rev()
            .find(|(k, r)| *k == NodeKey::new(TEST_NAMESPACE, name) && r.urgency == urgency)
            .map(|(_, r)| *r)
    };
    let failure = release("db", Urgency::Resource);
    let cascade = release("api", Urgency::DependencyFailure);
    sandbox.shutdown().await;
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
    Ok(StormReport {
        noise_platforms: bench.noise,
        concurrency: bench.concurrency,
        storm_updates_per_second: rate,
        routine_backlog_at_failure: backlog,
        failure_to_decision_ms: ms(marks.oom, marks.decided),
        failure_to_dependents_stopped_ms: ms(marks.oom, marks.api_stopped),
        failure_to_platform_stopped_ms: ms(marks.oom, marks.db_stopped),
        failure_queue_wait_ms: failure.map(|r| r.waited.as_secs_f64() * 1e3),
        failure_overtook: failure.map(|r| r.overtook),
        cascade_queue_wait_ms: cascade.map(|r| r.waited.as_secs_f64() * 1e3),
        cascade_overtook: cascade.map(|r| r.overtook),
    })
}

async fn wait_all_running(api: &Api<Platform>, count: usize) -> Result<(), StormError> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(list) = api.list(&Default::default()).await {
            let running = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase) == Some(Phase::Running))
                .count();
            if running == count {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(StormError::Timeout("every platform Running"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// OOM-kills db's running pod (its script says so from now on) and waits for the operator to
/// stop db and then api.
async fn fail_db(sandbox: &Sandbox, from_seq: u64) -> Result<FailureMarks, StormError> {
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), TEST_NAMESPACE);
    let db_pods = pods
        .list(&ListParams::default().labels("pmp.dev/platform=db"))
        .await
        .map_err(|source| StormError::Write {
            name: "db's pods".into(),
            source,
        })?;
    let patch = json!({"metadata": {"annotations": {"sim.pmp.dev/oom-after": "1ms"}}});
    for pod in db_pods.items {
        let name = pod.metadata.name.unwrap_or_default();
        pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| StormError::Write { name, source })?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    // Only what matters is kept, read a little at a time: copying the storm's history on
    // every poll would take the CPU the operator is measured on.
    let mut writes: Vec<WriteRecord> = Vec::new();
    let mut seen = from_seq;
    loop {
        let new = sandbox.cluster.store().writes_since(seen);
        seen = new.last().map_or(seen, |w| w.seq);
        writes.extend(
            new.into_iter()
                .filter(|w| w.actor == FIELD_MANAGER || w.name.starts_with("db-")),
        );
        if let Some(marks) = failure_marks(&writes) {
            return Ok(marks);
        }
        if Instant::now() > deadline {
            let seen =
                |what: &dyn Fn(&WriteRecord) -> bool| writes.iter().filter(|w| what(w)).count();
            return Err(StormError::Stalled(format!(
                "db's failure and api's cascade stop not seen in 60 s: {} status writes of db's pods, {} operator writes ({} of Deployments)",
                seen(&|w| w.name.starts_with("db-") && w.subresource.as_deref() == Some("status")),
                seen(&|w| w.actor == FIELD_MANAGER),
                seen(&|w| w.actor == FIELD_MANAGER && w.resource.plural == "deployments"),
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Updates an annotation of the noise platforms' pods, round robin, at `rate` per second
/// (in batches, one a millisecond), until `stop`.
async fn storm(store: &Store, noise: &[String], rate: u32, stop: &AtomicBool, sent: &AtomicU64) {
    let pods = ResourceRef::new("", "v1", "pods");
    let ctx = WriteCtx {
        actor: "storm".into(),
        verb: WriteVerb::Update,
        resource: pods.clone(),
        subresource: None,
    };
    let prefixes: Vec<String> = noise.iter().map(|n| format!("{n}-")).collect();
    let names: Vec<String> = store
        .list(&pods, Some(TEST_NAMESPACE))
        .into_iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .filter(|name| prefixes.iter().any(|p| name.starts_with(p.as_str())))
        .collect();
    let begin = Instant::now();
    let mut tick: u64 = 0;
    while !stop.load(Ordering::Relaxed) && !names.is_empty() {
        let name = &names[(tick as usize) % names.len()];
        tick += 1;
        let key = Key::new("", "pods", Some(TEST_NAMESPACE), name);
        store.transact(|txn| {
            if let Some(pod) = txn.get(&key) {
                let mut pod = (*pod).clone();
                pod["metadata"]["annotations"]["storm.pmp.dev/tick"] = tick.to_string().into();
                txn.put(key.clone(), pod, &ctx);
            }
        });
        sent.fetch_add(1, Ordering::Relaxed);
        let due = begin + Duration::from_secs_f64(tick as f64 / f64::from(rate.max(1)));
        match due.checked_duration_since(Instant::now()) {
            Some(wait) if wait >= Duration::from_millis(1) => tokio::time::sleep(wait).await,
            // Behind the rate: still let the measurement (same task) run now and then.
            _ if tick.is_multiple_of(64) => tokio::task::yield_now().await,
            _ => {}
        }
    }
}

struct FailureMarks {
    oom: Instant,
    decided: Instant,
    db_stopped: Instant,
    api_stopped: Instant,
}

/// When db's pod was OOM-killed, and when the operator scaled db and then api down.
fn failure_marks(writes: &[WriteRecord]) -> Option<FailureMarks> {
    let oom = writes.iter().find(|w| {
        w.resource.plural == "pods"
            && w.subresource.as_deref() == Some("status")
            && w.name.starts_with("db-")
            && w.object["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c["lastState"]["terminated"]["reason"] == "OOMKilled"
                            || c["state"]["terminated"]["reason"] == "OOMKilled"
                    })
                })
    })?;
    let scaled_down: BTreeMap<&str, Instant> = writes
        .iter()
        .filter(|w| {
            w.seq > oom.seq
                && w.actor == FIELD_MANAGER
                && w.resource.plural == "deployments"
                && w.subresource.is_none()
                && w.object.pointer("/spec/replicas").and_then(Value::as_i64) == Some(0)
        })
        .fold(BTreeMap::new(), |mut first, w| {
            first.entry(w.name.as_str()).or_insert(w.at);
            first
        });
    let decided = writes.iter().find(|w| {
        w.seq > oom.seq
            && w.actor == FIELD_MANAGER
            && w.name == "db"
            && w.subresource.as_deref() == Some("status")
            && w.object["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["reason"] == "ResourceExceeded"))
    })?;
    Some(FailureMarks {
        oom: oom.at,
        decided: decided.at,
        db_stopped: *scaled_down.get("db")?,
        api_stopped: *scaled_down.get("api")?,
    })
}
