//! Prioritised event processing: routine updates of healthy pods queue nothing; under a storm
//! of routine changes of a shared dependency, a failure and the stop of its dependents go ahead
//! of the re-checks queued before them.

mod operator_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use operator_support::*;
use platform_operator::controller::triage::Urgency;
use platform_operator::crd::{Phase, Platform};
use platform_operator::fixtures::platform;
use platform_operator::graph::NodeKey;
use serde_json::json;

const NOISE: usize = 150;

/// Changes the hub's annotations over and over until `stop` (each change queues a re-check of
/// every platform that depends on it); counts the changes.
fn storm(
    env: &TestEnv,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let platforms: Api<Platform> = Api::namespaced(env.client(), env.namespace());
    tokio::spawn(async move {
        let mut tick = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick += 1;
            let patch =
                json!({"metadata": {"annotations": {"storm.pmp.dev/tick": tick.to_string()}}});
            if platforms
                .patch("hub", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routine_updates_of_healthy_pods_queue_no_reconcile() {
    let env = TestEnv::start().await;
    env.apply(&chain(&["a", "b"], "100ms")).await;
    env.wait_running(&["a", "b"]).await;
    env.settle().await;
    let triage = env.operator().context().triage.clone();
    let before = triage.pushed();
    let pods: Api<Pod> = Api::namespaced(env.client(), env.namespace());
    let names: Vec<String> = pods
        .list_metadata(&ListParams::default().labels("pmp.dev/platform"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    for tick in 0..20 {
        for name in &names {
            let patch =
                json!({"metadata": {"annotations": {"storm.pmp.dev/tick": tick.to_string()}}});
            pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("pod patched");
        }
    }
    env.settle().await;
    assert_eq!(
        triage.pushed(),
        before,
        "{} routine pod updates queued reconciles",
        20 * names.len()
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_storm_of_routine_changes_a_failure_and_its_cascade_go_first() {
    let Some(mut env) = TestEnv::sim_only(
        "the storm needs thousands of changes a second, which the simulator takes and a test control plane on 2 cores does not",
    )
    .await
    else {
        return;
    };
    // One reconcile at a time, so that a backlog forms and the order is visible.
    env.kill_operator();
    env.start_operator_with(|config| config.concurrency = 1);
    env.wait_for_operator_caches().await;

    // db ← api, and a hub with NOISE dependents.
    let mut platforms = chain(&["db", "api"], "100ms");
    platforms.extend(chain(&["hub"], "100ms"));
    let noise: Vec<String> = (0..NOISE).map(|i| format!("noise-{i:03}")).collect();
    for name in &noise {
        platforms.push(
            platform(name)
                .pod_annotation("sim.pmp.dev/ready-after", "100ms")
                .depends_on(["hub"])
                .build(),
        );
    }
    env.apply(&platforms).await;
    let mut all: Vec<&str> = noise.iter().map(String::as_str).collect();
    all.extend(["db", "api", "hub"]);
    env.wait_for(
        "all Running",
        Duration::from_secs(120),
        all_in(Phase::Running, &all),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let storm_task = storm(&env, stop.clone(), sent.clone());
    let triage = env.operator().context().triage.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while triage.depth()[Urgency::Change as usize] < 20 {
        assert!(
            Instant::now() < deadline,
            "no backlog of routine triggers formed (depth {:?}, {} pod updates sent)",
            triage.depth(),
            sent.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // db's pod is OOM-killed (its script says so from now on); the default reaction stops
    // db (Failed), and api, which depends on it, stops by cascade.
    let pods: Api<Pod> = Api::namespaced(env.client(), env.namespace());
    let db_pods = pods
        .list(&ListParams::default().labels("pmp.dev/platform=db"))
        .await
        .expect("db's pods");
    for pod in db_pods.items {
        let patch = json!({"metadata": {"annotations": {"sim.pmp.dev/oom-after": "1ms"}}});
        pods.patch(
            &pod.metadata.name.unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("db's pod patched");
    }
    let stopped = env
        .wait_for("db Failed and api Stopped", Duration::from_secs(120), |p| {
            p.get("db").and_then(phase) == Some(Phase::Failed)
                && p.get("api").and_then(phase) == Some(Phase::Stopped)
        })
        .await;
    let depth_after = triage.depth();
    stop.store(true, Ordering::Relaxed);
    let _ = storm_task.await;

    let urgent = triage.urgent_releases();
    if std::env::var_os("PMP_TRIAGE_DEBUG").is_some() {
        let page = env.operator().context().metrics.render(std::iter::empty());
        for line in page
            .lines()
            .filter(|l| l.contains("trigger") || l.contains("reconciles_total"))
        {
            eprintln!("{line}");
        }
    }
    let release_of = |name: &str, urgency: Urgency| {
        urgent
            .iter()
            .rev()
            .find(|(key, r)| *key == NodeKey::new(env.namespace(), name) && r.urgency == urgency)
            .map(|(_, r)| *r)
    };
    let cascade = release_of("api", Urgency::DependencyFailure).unwrap_or_else(|| {
        panic!("api was never queued as a dependency failure; urgent releases: {urgent:?}")
    });
    let failure = release_of("db", Urgency::Resource).unwrap_or_else(|| {
        panic!("db's OOM kill was never queued as a resource event; urgent releases: {urgent:?}")
    });
    eprintln!(
        "storm: {} changes of the hub; db's OOM waited {:?} (overtook {}), api's cascade waited {:?} (overtook {}); routine backlog at the end {:?}",
        sent.load(Ordering::Relaxed),
        failure.waited,
        failure.overtook,
        cascade.waited,
        cascade.overtook,
        depth_after
    );
    assert!(
        failure.overtook > 0 && cascade.overtook > 0,
        "the failure and its cascade must go ahead of routine triggers queued before them: \
         db overtook {}, api overtook {}",
        failure.overtook,
        cascade.overtook
    );
    let api_history: Vec<String> = stopped["api"]
        .status
        .as_ref()
        .map(|s| s.history.iter().map(|h| h.action.clone()).collect())
        .unwrap_or_default();
    assert_eq!(api_history.last().map(String::as_str), Some("CascadeStop"));
    env.shutdown().await;
}
