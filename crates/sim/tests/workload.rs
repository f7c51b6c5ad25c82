//! The simulated deployment controller (and the kubelet's part in it) against the simulated
//! API server, over HTTP, on a fast clock.

mod workload_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::{reflector, watcher};
use serde_json::json;
use workload_support::*;

#[tokio::test]
async fn replicas_become_ready_and_scale_to_zero() {
    let s = start().await;
    s.create(deployment("web", 3, json!({}))).await;

    let status = eventually("3 ready replicas", || async {
        let d = s.deployments().get("web").await.ok()?;
        let status = d.status.clone()?;
        (status.ready_replicas == Some(3) && status.available_replicas == Some(3)).then_some(d)
    })
    .await;
    assert_eq!(
        condition(&status, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    assert_eq!(
        condition(&status, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );
    assert_eq!(status.status.as_ref().unwrap().observed_generation, Some(1));

    let pods = s.pods_of("web").await;
    assert_eq!(pods.len(), 3);
    let uid = status.metadata.uid.clone().unwrap();
    for pod in &pods {
        assert!(is_ready(pod));
        let name = pod.metadata.name.as_deref().unwrap();
        let hash = &pod.metadata.labels.as_ref().unwrap()["pod-template-hash"];
        assert!(name.starts_with(&format!("web-{hash}-")), "{name}");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            (uid.as_str(), Some(true))
        );
        let st = pod.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert!(st.pod_ip.as_deref().unwrap().starts_with("10."));
        assert!(container(pod).state.unwrap().running.is_some());
    }
    let events = s
        .events_for(pods[0].metadata.name.as_deref().unwrap())
        .await;
    let reasons: Vec<String> = events.iter().filter_map(|e| e.reason.clone()).collect();
    for expected in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(reasons.iter().any(|r| r == expected), "{reasons:?}");
    }

    s.deployments()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    eventually("all pods removed", || async {
        s.pods_of("web").await.is_empty().then_some(())
    })
    .await;
    let d = eventually("status without replicas", || async {
        let d = s.deployments().get("web").await.ok()?;
        let st = d.status.as_ref()?;
        (st.replicas.is_none() && st.observed_generation == Some(2)).then_some(d)
    })
    .await;
    let st = d.status.unwrap();
    assert_eq!(st.ready_replicas, None);
    assert_eq!(st.available_replicas, None);
    s.stop().await;
}

#[tokio::test]
async fn a_restart_annotation_rolls_one_replica_with_a_surge_and_no_moment_of_zero_ready() {
    let max_pods = rolling_restart(1).await;
    assert_eq!(max_pods, 2, "maxSurge 1 for one replica");
}

#[tokio::test]
async fn a_restart_annotation_rolls_two_replicas_without_a_moment_of_zero_ready() {
    let max_pods = rolling_restart(2).await;
    assert_eq!(max_pods, 3, "maxSurge 25% of 2 rounds up to 1");
}

#[tokio::test]
async fn a_pod_that_never_becomes_ready_exceeds_the_progress_deadline() {
    let s = start().await;
    let mut d = deployment("stuck", 1, json!({"sim.pmp.dev/never-ready": "true"}));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(30);
    s.create(d).await;
    let d = eventually("ProgressDeadlineExceeded", || async {
        let d = s.deployments().get("stuck").await.ok()?;
        (condition(&d, "Progressing")? == ("False".into(), "ProgressDeadlineExceeded".into()))
            .then_some(d)
    })
    .await;
    assert_eq!(
        condition(&d, "Available"),
        Some(("False".into(), "MinimumReplicasUnavailable".into()))
    );
    let st = d.status.unwrap();
    assert_eq!((st.replicas, st.ready_replicas), (Some(1), None));
    // It took at least the deadline on the simulated clock.
    let created = d.metadata.creation_timestamp.unwrap().0;
    assert!(s.sim.clock().now().duration_since(created).as_secs() >= 30);
    s.stop().await;
}

#[tokio::test]
async fn a_deleted_pod_is_stopped_removed_and_replaced() {
    let s = start().await;
    s.create(deployment(
        "svc",
        1,
        json!({"sim.pmp.dev/stop-after": "2s"}),
    ))
    .await;
    let first = eventually("a ready pod", || async {
        s.pods_of("svc").await.into_iter().find(is_ready)
    })
    .await;
    let name = first.metadata.name.clone().unwrap();
    let (history, follower) = follow(s.pods());
    let started = s.sim.clock().now();
    s.pods()
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    // Stopped at once: terminated, not ready, still there during the stop time.
    let stopping = eventually("a stopped container", || async {
        let versions = history.lock().unwrap().clone();
        versions.into_iter().find(|p| {
            p.metadata.name.as_deref() == Some(name.as_str())
                && container(p).state.is_some_and(|s| s.terminated.is_some())
        })
    })
    .await;
    follower.abort();
    assert!(stopping.metadata.deletion_timestamp.is_some());
    assert!(!is_ready(&stopping));
    assert_eq!(
        container(&stopping)
            .state
            .unwrap()
            .terminated
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );
    eventually("the pod removed", || async {
        s.pods().get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    // Removed after the 2 s stop time, well before the 30 s grace period.
    let took = s.sim.clock().now().duration_since(started).as_secs_f64();
    assert!((1.5..30.0).contains(&took), "removal took {took}s");
    eventually("a replacement", || async {
        s.pods_of("svc")
            .await
            .into_iter()
            .find(|p| is_ready(p) && p.metadata.name.as_deref() != Some(name.as_str()))
    })
    .await;
    let killing = s.events_for(&name).await;
    assert!(
        killing
            .iter()
            .any(|e| e.reason.as_deref() == Some("Killing"))
    );
    s.stop().await;
}

#[tokio::test]
async fn a_settled_deployment_writes_nothing_more() {
    let s = start().await;
    s.create(deployment("calm", 2, json!({}))).await;
    eventually("a complete rollout", || async {
        let d = s.deployments().get("calm").await.ok()?;
        condition(&d, "Progressing")
            .is_some_and(|c| c.1 == "NewReplicaSetAvailable")
            .then_some(())
    })
    .await;
    // Let the caches catch up with the last writes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let managers = ["sim-kubelet", "sim-deployment-controller"];
    let ours = |writes: &[pmp_sim::WriteRecord]| {
        writes
            .iter()
            .filter(|w| managers.contains(&w.actor.as_str()))
            .count()
    };
    let before = ours(&s.sim.writes());
    assert!(
        before >= 4,
        "pods and status were written by the field managers"
    );
    // An hour of simulated time without any change: no status rewrites, no polling writes.
    s.sim.clock().advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ours(&s.sim.writes()), before);
    s.stop().await;
}

/// Restarts a Deployment of `replicas` pods through a template annotation; checks that every
/// pod is replaced, that the number of ready pods never drops below `replicas` (maxUnavailable
/// rounds down to 0) and returns the most non-terminating pods seen at once.
async fn rolling_restart(replicas: i32) -> usize {
    let s = start().await;
    let wanted = usize::try_from(replicas).unwrap();
    s.create(deployment("api", replicas, json!({}))).await;
    let old: Vec<String> = eventually("ready pods", || async {
        let pods = s.pods_of("api").await;
        (pods.len() == wanted && pods.iter().all(is_ready)).then(|| {
            pods.iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect()
        })
    })
    .await;

    // Follow every pod change from here on and count ready pods after each event.
    let (store, writer) = reflector::store::<Pod>();
    let watch = reflector::reflector(writer, watcher(s.pods(), watcher::Config::default()));
    let min_ready = Arc::new(Mutex::new(usize::MAX));
    let max_pods = Arc::new(Mutex::new(0));
    let seen = min_ready.clone();
    let most = max_pods.clone();
    let follower = tokio::spawn(async move {
        let mut watch = std::pin::pin!(watch);
        while let Some(Ok(event)) = watch.next().await {
            // The store is complete after the initial list and after every later event.
            if matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                continue;
            }
            let state = store.state();
            let ready = state.iter().filter(|p| is_ready(p)).count();
            let live = state
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count();
            let mut most = most.lock().unwrap();
            *most = (*most).max(live);
            let mut min = seen.lock().unwrap();
            *min = (*min).min(ready);
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    s.deployments()
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"
            }}}}})),
        )
        .await
        .unwrap();
    let new = eventually("new ready pods and no old ones", || async {
        let pods = s.pods_of("api").await;
        let fresh: Vec<&Pod> = pods
            .iter()
            .filter(|p| !old.contains(p.metadata.name.as_ref().unwrap()))
            .collect();
        (pods.len() == wanted && fresh.len() == wanted && fresh.iter().all(|p| is_ready(p)))
            .then_some(pods)
    })
    .await;
    let d = eventually("rollout complete", || async {
        let d = s.deployments().get("api").await.ok()?;
        let st = d.status.as_ref()?;
        (st.updated_replicas == Some(replicas)
            && st.available_replicas == Some(replicas)
            && st.replicas == Some(replicas)
            && condition(&d, "Progressing").is_some_and(|c| c.1 == "NewReplicaSetAvailable"))
        .then_some(d)
    })
    .await;
    follower.abort();
    let min = *min_ready.lock().unwrap();
    assert!(
        min >= wanted && min != usize::MAX,
        "ready pods dropped to {min} during the rollout"
    );
    for pod in &new {
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()["kubectl.kubernetes.io/restartedAt"],
            "2025-01-01T00:00:00Z"
        );
    }
    assert_eq!(d.status.unwrap().observed_generation, Some(2));
    s.stop().await;
    *max_pods.lock().unwrap()
}
