//! The simulated kubelet's pod scripts (`sim.pmp.dev/*` annotations) against the simulated API
//! server, over HTTP, on a fast clock.

mod workload_support;

use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use serde_json::json;
use workload_support::*;

#[tokio::test]
async fn crash_after_shows_crash_loop_back_off_and_growing_restarts() {
    let s = start().await;
    s.create(deployment(
        "crashy",
        1,
        json!({"sim.pmp.dev/crash-after": "2s"}),
    ))
    .await;
    let pod = eventually("two restarts and CrashLoopBackOff", || async {
        let pod = s.pods_of("crashy").await.into_iter().next()?;
        let c = container(&pod);
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        (c.restart_count >= 2 && waiting.reason.as_deref() == Some("CrashLoopBackOff"))
            .then_some(pod)
    })
    .await;
    let c = container(&pod);
    let last = c.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 1);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert!(!c.ready);
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    let name = pod.metadata.name.clone().unwrap();
    let backoff = eventually("a BackOff event", || async {
        s.events_for(&name)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("BackOff"))
    })
    .await;
    assert_eq!(backoff.type_.as_deref(), Some("Warning"));
    s.stop().await;
}

#[tokio::test]
async fn oom_after_shows_oomkilled() {
    let s = start().await;
    s.create(deployment(
        "hungry",
        1,
        json!({"sim.pmp.dev/oom-after": "3s"}),
    ))
    .await;
    let pod = eventually("an OOMKilled last state", || async {
        let pod = s.pods_of("hungry").await.into_iter().next()?;
        let last = container(&pod).last_state?.terminated?;
        (last.reason.as_deref() == Some("OOMKilled")).then_some(pod)
    })
    .await;
    let last = container(&pod).last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 137);
    let name = pod.metadata.name.clone().unwrap();
    eventually("an OOMKilling event", || async {
        s.events_for(&name)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("OOMKilling"))
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn unready_after_flips_ready_and_recover_after_restores_it() {
    let s = start().await;
    let (pods, pod_follower) = follow(s.pods());
    let (deployments, deployment_follower) = follow(s.deployments());
    s.create(deployment(
        "flaky",
        1,
        json!({"sim.pmp.dev/unready-after": "5s", "sim.pmp.dev/recover-after": "30s"}),
    ))
    .await;
    // Ready, then not ready while the container keeps running, then ready again.
    let flips = eventually("ready → not ready → ready", || async {
        let history = pods.lock().unwrap().clone();
        let ready_at = history.iter().position(is_ready)?;
        let unready_at = ready_at + history[ready_at..].iter().position(|p| !is_ready(p))?;
        let again = unready_at + history[unready_at..].iter().position(is_ready)?;
        Some((history[unready_at].clone(), history[again].clone()))
    })
    .await;
    let (unready, again) = flips;
    let c = container(&unready);
    assert!(
        c.state.unwrap().running.is_some(),
        "the container keeps running"
    );
    assert_eq!(c.restart_count, 0);
    assert_eq!(container(&again).restart_count, 0);
    let ready_condition = |p: &Pod| {
        p.status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .last_transition_time
            .clone()
            .unwrap()
            .0
    };
    // Recovery 30 s (simulated) after the readiness probe started failing.
    let outage = ready_condition(&again).duration_since(ready_condition(&unready));
    assert!((29..=31).contains(&outage.as_secs()), "{outage:?}");

    let name = unready.metadata.name.clone().unwrap();
    let unhealthy = eventually("an Unhealthy event", || async {
        s.events_for(&name)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Unhealthy"))
    })
    .await;
    assert_eq!(unhealthy.type_.as_deref(), Some("Warning"));
    assert!(
        unhealthy
            .message
            .unwrap()
            .contains("Readiness probe failed")
    );
    // Probe failures every 10 s during 30 s: aggregated into one event with a count.
    assert!(
        unhealthy.count.unwrap_or(0) >= 2,
        "count {:?}",
        unhealthy.count
    );

    // The Deployment followed: ready, then one unavailable replica, then ready again.
    let statuses: Vec<_> = deployments
        .lock()
        .unwrap()
        .iter()
        .filter_map(|d| d.status.clone())
        .collect();
    let dropped = statuses
        .iter()
        .skip_while(|st| st.ready_replicas != Some(1))
        .position(|st| st.ready_replicas.is_none() && st.unavailable_replicas == Some(1));
    assert!(dropped.is_some(), "{statuses:?}");
    eventually("the deployment ready again", || async {
        let d = s.deployments().get("flaky").await.ok()?;
        (d.status?.ready_replicas == Some(1)).then_some(())
    })
    .await;
    pod_follower.abort();
    deployment_follower.abort();
    s.stop().await;
}

#[tokio::test]
async fn usage_is_reported_while_running_and_cleared_when_the_pod_is_gone() {
    let s = start().await;
    s.create(deployment(
        "metered",
        1,
        json!({"sim.pmp.dev/cpu-usage": "250m", "sim.pmp.dev/memory-usage": "64Mi..128Mi"}),
    ))
    .await;
    let pod = eventually("a usage report", || async {
        let reports = s.usage.lock().unwrap().clone();
        reports.into_iter().find(|r| r.usage.is_some())
    })
    .await;
    assert!(pod.pod.starts_with("metered-"));
    assert_eq!(pod.namespace, "default");
    assert_eq!(pod.usage.as_ref().unwrap().cpu, "250m");
    eventually("the ramp climbing", || async {
        let reports = s.usage.lock().unwrap().clone();
        reports
            .iter()
            .any(|r| r.usage.as_ref().is_some_and(|u| u.memory == "131072Ki"))
            .then_some(())
    })
    .await;
    s.deployments()
        .delete("metered", &DeleteParams::default())
        .await
        .unwrap();
    eventually("a None report for the pod", || async {
        let reports = s.usage.lock().unwrap().clone();
        reports
            .iter()
            .any(|r| r.pod == pod.pod && r.usage.is_none())
            .then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn an_invalid_annotation_gives_a_warning_and_the_default() {
    let s = start().await;
    s.create(deployment(
        "typo",
        1,
        json!({"sim.pmp.dev/ready-after": "soon"}),
    ))
    .await;
    let pod = eventually("a ready pod", || async {
        s.pods_of("typo").await.into_iter().find(is_ready)
    })
    .await;
    let name = pod.metadata.name.unwrap();
    let warning = eventually("a warning event", || async {
        s.events_for(&name)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("InvalidSimAnnotation"))
    })
    .await;
    assert!(warning.message.unwrap().contains("sim.pmp.dev/ready-after"));
    s.stop().await;
}

#[tokio::test]
async fn fail_start_keeps_the_pod_pending_until_it_recovers() {
    let s = start().await;
    let (pods, follower) = follow(s.pods());
    s.create(deployment(
        "pull",
        1,
        json!({"sim.pmp.dev/fail-start": "ImagePullBackOff", "sim.pmp.dev/recover-after": "20s"}),
    ))
    .await;
    let running = eventually("the pod running and ready", || async {
        s.pods_of("pull").await.into_iter().find(is_ready)
    })
    .await;
    assert_eq!(container(&running).restart_count, 0);
    let history = pods.lock().unwrap().clone();
    let stuck = history
        .iter()
        .find(|p| {
            container(p)
                .state
                .and_then(|s| s.waiting)
                .is_some_and(|w| w.reason.as_deref() == Some("ImagePullBackOff"))
        })
        .expect("the pod waited with ImagePullBackOff");
    assert_eq!(
        stuck.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    let name = running.metadata.name.clone().unwrap();
    let failed = s.events_for(&name).await;
    assert!(failed.iter().any(|e| e.reason.as_deref() == Some("Failed")
        && e.type_.as_deref() == Some("Warning")));
    follower.abort();
    s.stop().await;
}
