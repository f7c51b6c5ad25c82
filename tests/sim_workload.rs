//! The simulated workloads against the simulated API server, over HTTP, on a fast clock.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher};
use platform_operator::sim::workload::{PodUsage, WorkloadConfig, WorkloadHandle, spawn_workloads};
use platform_operator::sim::{SimCluster, SimConfig};
use serde_json::json;

/// Simulated seconds per real second.
const SPEED: f64 = 50.0;
/// Real time a test waits for a condition.
const PATIENCE: Duration = Duration::from_secs(20);

struct Setup {
    sim: SimCluster,
    workloads: WorkloadHandle,
    usage: Arc<Mutex<Vec<PodUsage>>>,
}

async fn start() -> Setup {
    let sim = SimCluster::start(SimConfig::default().with_speed(SPEED))
        .await
        .expect("simulated API server starts");
    let usage = Arc::new(Mutex::new(Vec::new()));
    let sink = usage.clone();
    let config = WorkloadConfig::new(sim.clock().clone())
        .with_usage_sink(move |report| sink.lock().unwrap().push(report));
    let workloads = spawn_workloads(sim.client(), config);
    Setup {
        sim,
        workloads,
        usage,
    }
}

impl Setup {
    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.sim.client(), "default")
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.sim.client(), "default")
    }

    async fn create(&self, deployment: Deployment) {
        self.deployments()
            .create(&PostParams::default(), &deployment)
            .await
            .expect("deployment created");
    }

    async fn pods_of(&self, app: &str) -> Vec<Pod> {
        self.pods()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .expect("pods listed")
            .items
    }

    async fn events_for(&self, pod: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.sim.client(), "default");
        events
            .list(&ListParams::default())
            .await
            .expect("events listed")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(pod))
            .collect()
    }

    async fn stop(self) {
        self.workloads.shutdown().await;
        self.sim.shutdown().await;
    }
}

fn deployment(name: &str, replicas: i32, annotations: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]},
            },
        },
    }))
    .expect("valid deployment")
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn container(pod: &Pod) -> k8s_openapi::api::core::v1::ContainerStatus {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first().cloned())
        .unwrap_or_default()
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

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

/// Records every version of the objects `api` shows from now on (each watch event), so that
/// short-lived states cannot be missed by polling.
fn follow<K>(api: Api<K>) -> (Arc<Mutex<Vec<K>>>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let history = Arc::new(Mutex::new(Vec::new()));
    let record = history.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) = event {
                record.lock().unwrap().push(object);
            }
        }
    });
    (history, task)
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
    let started = s.sim.clock().now();
    s.pods()
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    // Stopped at once: terminated, not ready, still there during the stop time.
    let stopping = eventually("a stopped container", || async {
        let pod = s.pods().get(&name).await.ok()?;
        container(&pod).state?.terminated.is_some().then_some(pod)
    })
    .await;
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
    let ours = |writes: &[platform_operator::sim::WriteRecord]| {
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
