//! The simulated kubelet: one node that runs every pod bound to it (or not bound at all).
//!
//! Observe (a pod reflector) → decide ([`simulate`] + [`pod_status`], pure) → write (status via
//! the `/status` subresource when it changed, Events, the final DELETE) → sleep on the SimClock
//! until the earliest scripted transition or the next watch event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use tokio::sync::{Notify, watch};

use super::events::{EventType, Note, Recorder, reference};
use super::observe::{cache, pod_digest, sleep_until, stopped};
use super::pod_status::{Placement, json_subset, pod_status};
use super::quantity::Resource;
use super::script::{PodScript, parse_script};
use super::timeline::{
    Anchors, Happening, Snapshot, State, Stopping, Timed, add, elapsed, simulate,
};
use super::{PodUsage, ResourceUsage, UsageSink};
use crate::SimClock;

/// The field manager of the kubelet's writes.
pub const FIELD_MANAGER: &str = "sim-kubelet";

pub(super) struct Kubelet {
    client: Client,
    clock: SimClock,
    node_name: String,
    host_ip: String,
    usage_sink: Option<UsageSink>,
    recorder: Recorder,
    /// Per pod uid. Never held across an await: pods are synced concurrently.
    pods: Mutex<HashMap<String, PodMemory>>,
    next_ip: AtomicU32,
}

/// Pods synced at once, as a real kubelet runs one worker per pod: a burst of pods due at the
/// same instant must not queue behind each other's API writes.
const POD_WORKERS: usize = 64;

/// What the kubelet remembers of a pod between passes (all of it can be rebuilt from the pod).
struct PodMemory {
    uid: String,
    admitted: Timestamp,
    pod_ip: String,
    /// Events were emitted for happenings up to this time.
    emitted_through: Option<Timestamp>,
    removal_requested: bool,
    last_usage: Option<ResourceUsage>,
    namespace: String,
    name: String,
    /// The pod version last synced and its next transition then: an unchanged pod with no
    /// transition due needs no work (every watch event wakes the loop for every pod).
    synced: Option<(Option<String>, Option<Timestamp>)>,
}

impl Kubelet {
    pub(super) fn new(
        client: Client,
        clock: SimClock,
        node_name: String,
        host_ip: String,
        usage_sink: Option<UsageSink>,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), FIELD_MANAGER, "kubelet", &node_name);
        Self {
            client,
            clock,
            node_name,
            host_ip,
            usage_sink,
            recorder,
            pods: Mutex::new(HashMap::new()),
            next_ip: AtomicU32::new(0),
        }
    }

    fn memory(&self) -> MutexGuard<'_, HashMap<String, PodMemory>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        let (store, watch_task) = cache(
            Api::<Pod>::all(self.client.clone()),
            wake.clone(),
            pod_digest,
        );
        tokio::select! {
            _ = store.wait_until_ready() => {}
            _ = stopped(&mut stop) => {
                watch_task.abort();
                return;
            }
        }
        loop {
            let next = self.pass(&store).await;
            tokio::select! {
                _ = wake.notified() => {}
                _ = sleep_until(&self.clock, next) => {}
                _ = stopped(&mut stop) => break,
            }
        }
        watch_task.abort();
        for memory in self.memory().values() {
            report(&self.usage_sink, &memory.namespace, &memory.name, None);
        }
    }

    /// Syncs every pod once (those with work, concurrently); returns the earliest next
    /// transition.
    async fn pass(&self, store: &Store<Pod>) -> Option<Timestamp> {
        let now = self.clock.now();
        let mut next: Option<Timestamp> = None;
        let mut present = HashSet::new();
        let mut work = Vec::new();
        for pod in store.state() {
            let bound_elsewhere = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty() && n != self.node_name);
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            if bound_elsewhere {
                continue;
            }
            present.insert(uid.clone());
            let unchanged = self
                .memory()
                .get(&uid)
                .and_then(|m| m.synced.clone())
                .and_then(|(version, due)| {
                    (version == pod.metadata.resource_version && due.is_none_or(|at| at > now))
                        .then_some(due)
                });
            match unchanged {
                Some(due) => next = earliest(next, due),
                None => work.push((pod, uid)),
            }
        }
        let dues: Vec<Option<Timestamp>> = futures::stream::iter(work)
            .map(|(pod, uid)| async move {
                let due = self.sync(&pod, &uid, now).await;
                if let Some(memory) = self.memory().get_mut(&uid) {
                    memory.synced = Some((pod.metadata.resource_version.clone(), due));
                }
                due
            })
            .buffer_unordered(POD_WORKERS)
            .collect()
            .await;
        for due in dues {
            next = earliest(next, due);
        }
        let gone: Vec<PodMemory> = {
            let mut pods = self.memory();
            let uids: Vec<String> = pods
                .keys()
                .filter(|uid| !present.contains(*uid))
                .cloned()
                .collect();
            uids.iter().filter_map(|uid| pods.remove(uid)).collect()
        };
        for memory in gone {
            if memory.last_usage.is_some() {
                report(&self.usage_sink, &memory.namespace, &memory.name, None);
            }
            self.recorder.forget(&memory.uid);
        }
        next
    }

    async fn sync(&self, pod: &Pod, uid: &str, now: Timestamp) -> Option<Timestamp> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let first_sight = !self.memory().contains_key(uid);
        let probe_period = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.readiness_probe.as_ref())
            .and_then(|p| p.period_seconds);
        let empty = BTreeMap::new();
        let (script, warnings) = parse_script(
            pod.metadata.annotations.as_ref().unwrap_or(&empty),
            probe_period,
        );
        if first_sight {
            let status = pod.status.as_ref();
            // The kubelet remembers to the sub-second when it admitted a pod (as a real
            // container runtime does); status timestamps only carry whole seconds, so only a
            // pod admitted by an earlier kubelet is anchored on its truncated startTime.
            let admitted = status
                .and_then(|s| s.start_time.as_ref())
                .map_or(now, |t| t.0);
            let pod_ip = status
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_else(|| self.allocate_ip());
            // A pod that already has a start time was admitted by an earlier kubelet, which
            // also reported its past: only what happens from now on gets events.
            let emitted_through = status.and_then(|s| s.start_time.as_ref()).map(|_| now);
            self.memory().insert(
                uid.to_owned(),
                PodMemory {
                    uid: uid.to_owned(),
                    admitted,
                    pod_ip,
                    emitted_through,
                    removal_requested: false,
                    last_usage: None,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    synced: None,
                },
            );
            let object = reference(pod);
            for warning in warnings {
                let note = Note {
                    type_: EventType::Warning,
                    reason: "InvalidSimAnnotation",
                    message: warning,
                    container: None,
                    at: now,
                };
                self.recorder.record(&object, &note, 1).await;
            }
        }
        let (admitted, emitted_through, pod_ip, removal_requested) = {
            let pods = self.memory();
            let memory = pods.get(uid)?;
            (
                memory.admitted,
                memory.emitted_through,
                memory.pod_ip.clone(),
                memory.removal_requested,
            )
        };
        let anchors = Anchors {
            admitted,
            stopping: stopping(pod),
        };
        let (snapshot, happenings) = simulate(&script, anchors, now, emitted_through);
        let placement = Placement {
            host_ip: self.host_ip.clone(),
            pod_ip,
        };

        // Events.
        let object = reference(pod);
        for (note, times) in aggregate(notes(pod, &happenings, &self.node_name)) {
            self.recorder.record(&object, &note, times).await;
        }
        if let Some(memory) = self.memory().get_mut(uid) {
            memory.emitted_through = Some(now);
        }

        // Status.
        let desired = pod_status(pod, &snapshot, anchors.admitted, &placement);
        let desired = serde_json::to_value(&desired).unwrap_or_default();
        let current = serde_json::to_value(&pod.status).unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        if !json_subset(&desired, &current) {
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            let patch = serde_json::json!({ "status": desired });
            if let Err(error) = api
                .patch_status(&name, &params, &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(%error, pod = %name, "failed to write simulated pod status");
            }
        }

        // Usage.
        let usage = usage(&script, &snapshot, now);
        if let Some(memory) = self.memory().get_mut(uid)
            && usage.is_some()
            && memory.last_usage != usage
        {
            report(&self.usage_sink, &namespace, &name, usage.clone());
            memory.last_usage = usage;
        }

        // Removal once the container has stopped.
        if let Some(remove_at) = snapshot.remove_at
            && remove_at <= now
            && !removal_requested
        {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_owned()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(error) => {
                    tracing::debug!(%error, pod = %name, "failed to remove a stopped pod");
                    return Some(add(now, std::time::Duration::from_secs(1)));
                }
            }
            if let Some(memory) = self.memory().get_mut(uid) {
                memory.removal_requested = true;
            }
            return None;
        }
        if removal_requested {
            // Removal was requested: the watch event of the deletion comes next.
            return None;
        }
        snapshot.next_transition
    }

    fn allocate_ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed) + 1;
        format!("10.244.{}.{}", (n / 250) % 256, n % 250 + 2)
    }
}

/// The deletion in progress, from `deletionTimestamp` and `deletionGracePeriodSeconds`.
fn earliest(next: Option<Timestamp>, due: Option<Timestamp>) -> Option<Timestamp> {
    match (next, due) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn stopping(pod: &Pod) -> Option<Stopping> {
    let deadline = pod.metadata.deletion_timestamp.as_ref()?.0;
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(0)
        .max(0);
    let requested_at = deadline
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(grace))
        .unwrap_or(deadline);
    Some(Stopping {
        requested_at,
        deadline,
    })
}

fn report(sink: &Option<UsageSink>, namespace: &str, pod: &str, usage: Option<ResourceUsage>) {
    if let Some(sink) = sink {
        sink(PodUsage {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            usage,
        });
    }
}

/// The usage to report for a pod with scripted usage: the scripted values while the container
/// runs, zero while it does not; `None` for pods without usage annotations.
pub fn usage(script: &PodScript, snapshot: &Snapshot, now: Timestamp) -> Option<ResourceUsage> {
    if script.cpu.is_none() && script.memory.is_none() {
        return None;
    }
    Some(match snapshot.state {
        State::Running { started_at } => {
            let running_for = elapsed(started_at, now);
            let value = |usage: &Option<super::quantity::Usage>, resource| {
                usage.as_ref().map_or_else(
                    || "0".to_owned(),
                    |u| u.at(resource, running_for, script.usage_ramp),
                )
            };
            ResourceUsage {
                cpu: value(&script.cpu, Resource::Cpu),
                memory: value(&script.memory, Resource::Memory),
            }
        }
        _ => ResourceUsage {
            cpu: "0".to_owned(),
            memory: "0".to_owned(),
        },
    })
}

/// The Events for what happened to a pod, one per container where the kubelet reports per
/// container.
pub fn notes(pod: &Pod, happenings: &[Timed], node: &str) -> Vec<Note> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let containers: Vec<(&str, &str)> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or("")))
        .collect();
    let mut notes = Vec::new();
    for happening in happenings {
        let at = happening.at;
        let pod_note = |type_, reason, message: String| Note {
            type_,
            reason,
            message,
            container: None,
            at,
        };
        if happening.what == Happening::Scheduled {
            notes.push(pod_note(
                EventType::Normal,
                "Scheduled",
                format!("Successfully assigned {namespace}/{name} to {node}"),
            ));
            continue;
        }
        for &(container, image) in &containers {
            let (type_, reason, message) = match &happening.what {
                Happening::Scheduled => continue,
                Happening::Pulled => (
                    EventType::Normal,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                ),
                Happening::Created => (
                    EventType::Normal,
                    "Created",
                    format!("Created container: {container}"),
                ),
                Happening::Started => (
                    EventType::Normal,
                    "Started",
                    format!("Started container {container}"),
                ),
                Happening::FailedStart(reason) => {
                    (EventType::Warning, "Failed", format!("Error: {reason}"))
                }
                Happening::Crashed => continue,
                Happening::OomKilled => (
                    EventType::Warning,
                    "OOMKilling",
                    format!("Memory cgroup out of memory: killed container {container} (simulated)"),
                ),
                Happening::BackOff(_) => (
                    EventType::Warning,
                    "BackOff",
                    format!("Back-off restarting failed container {container} in pod {name}_{namespace}({uid})"),
                ),
                Happening::ReadinessProbeFailed => (
                    EventType::Warning,
                    "Unhealthy",
                    "Readiness probe failed: HTTP probe failed with statuscode: 503 (simulated: sim.pmp.dev/unready-after)".to_owned(),
                ),
                Happening::Killing => (
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {container}"),
                ),
            };
            notes.push(Note {
                type_,
                reason,
                message,
                container: Some(container.to_owned()),
                at,
            });
        }
    }
    notes
}

/// Folds repeats of the same (reason, message, container) into one note with a count, keeping
/// the latest time and the first-seen order.
pub fn aggregate(notes: Vec<Note>) -> Vec<(Note, i32)> {
    let mut folded: Vec<(Note, i32)> = Vec::new();
    for note in notes {
        match folded.iter_mut().find(|(n, _)| {
            n.reason == note.reason && n.message == note.message && n.container == note.container
        }) {
            Some((existing, count)) => {
                existing.at = existing.at.max(note.at);
                *count += 1;
            }
            None => folded.push((note, 1)),
        }
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::quantity::parse_usage;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use std::time::Duration;

    fn pod() -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("nginx:1".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    fn t(s: u64) -> Timestamp {
        add(
            Timestamp::from_second(1_700_000_000).unwrap(),
            Duration::from_secs(s),
        )
    }

    #[test]
    fn happenings_become_kubelet_events() {
        let script = PodScript {
            crash_after: Some(Duration::from_secs(2)),
            ..PodScript::default()
        };
        let anchors = Anchors {
            admitted: t(0),
            stopping: None,
        };
        let (_, happenings) = simulate(&script, anchors, t(40), None);
        let notes = notes(&pod(), &happenings, "sim-node");
        let reasons: Vec<&str> = notes.iter().map(|n| n.reason).collect();
        assert_eq!(&reasons[..4], ["Scheduled", "Pulled", "Created", "Started"]);
        assert!(reasons.contains(&"BackOff"));
        assert!(notes[0].message.contains("shop/web-1 to sim-node"));
        let backoff = notes.iter().find(|n| n.reason == "BackOff").unwrap();
        assert_eq!(backoff.type_, EventType::Warning);
        assert_eq!(backoff.container.as_deref(), Some("app"));

        let folded = aggregate(notes);
        let (started, count) = folded.iter().find(|(n, _)| n.reason == "Started").unwrap();
        // Runs started at 0, 12 and 34 (back-offs 10 s and 20 s).
        assert_eq!(*count, 3);
        assert_eq!(started.at, t(34));
    }

    #[test]
    fn usage_is_reported_while_running_and_zero_otherwise() {
        let script = PodScript {
            cpu: Some(parse_usage("100m..1100m").unwrap()),
            memory: Some(parse_usage("64Mi").unwrap()),
            oom_after: Some(Duration::from_secs(60)),
            ..PodScript::default()
        };
        let anchors = Anchors {
            admitted: t(0),
            stopping: None,
        };
        let (running, _) = simulate(&script, anchors, t(30), None);
        assert_eq!(
            usage(&script, &running, t(30)),
            Some(ResourceUsage {
                cpu: "600m".into(),
                memory: "64Mi".into()
            })
        );
        let (down, _) = simulate(&script, anchors, t(61), None);
        assert_eq!(usage(&script, &down, t(61)).unwrap().cpu, "0");
        assert_eq!(usage(&PodScript::default(), &down, t(61)), None);
    }

    #[test]
    fn stopping_is_read_from_the_deletion_fields() {
        let mut p = pod();
        assert_eq!(stopping(&p), None);
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(30)));
        p.metadata.deletion_grace_period_seconds = Some(30);
        assert_eq!(
            stopping(&p),
            Some(Stopping {
                requested_at: t(0),
                deadline: t(30)
            })
        );
    }
}
