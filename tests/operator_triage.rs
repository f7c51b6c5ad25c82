//! Prioritised event processing: under a storm of routine pod updates, a failure and the
//! stop of its dependents go ahead of the routine re-checks queued before them.

mod operator_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use operator_support::*;
use platform_operator::controller::triage::Urgency;
use platform_operator::crd::Phase;
use platform_operator::fixtures::platform;
use platform_operator::graph::NodeKey;
use serde_json::json;

const NOISE: usize = 150;

/// Patches the noise platforms' pods over and over until `stop`; counts the patches.
fn storm(
    env: &TestEnv,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let pods: Api<Pod> = Api::namespaced(env.client(), env.namespace());
    tokio::spawn(async move {
        let noise = ListParams::default().labels("pmp.dev/platform");
        let mut tick = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Ok(list) = pods.list_metadata(&noise).await else {
                continue;
            };
            tick += 1;
            let names: Vec<String> = list
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .filter(|name| name.starts_with("noise-"))
                .collect();
            futures::stream::iter(names)
                .for_each_concurrent(16, |name| {
                    let pods = pods.clone();
                    let sent = sent.clone();
                    async move {
                        let patch = json!({"metadata": {"annotations": {"storm.pmp.dev/tick": tick.to_string()}}});
                        if pods
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .is_ok()
                        {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_storm_of_routine_pod_updates_a_failure_and_its_cascade_go_first() {
    let Some(mut env) = TestEnv::sim_only(
        "the storm needs thousands of pod updates a second, which the simulator takes and a test control plane on 2 cores does not",
    )
    .await
    else {
        return;
    };
    // One reconcile at a time, so that a backlog forms and the order is visible.
    env.kill_operator();
    env.start_operator_with(|config| config.concurrency = 1);
    env.wait_for_operator_caches().await;

    let mut platforms = chain(&["db", "api"], "100ms");
    let noise: Vec<String> = (0..NOISE).map(|i| format!("noise-{i:03}")).collect();
    for name in &noise {
        platforms.push(
            platform(name)
                .pod_annotation("sim.pmp.dev/ready-after", "100ms")
                .build(),
        );
    }
    env.apply(&platforms).await;
    let mut all: Vec<&str> = noise.iter().map(String::as_str).collect();
    all.extend(["db", "api"]);
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
        "storm: {} pod updates sent; db's OOM waited {:?} (overtook {}), api's cascade waited {:?} (overtook {}); routine backlog at the end {:?}",
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
