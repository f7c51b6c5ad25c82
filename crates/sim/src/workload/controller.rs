//! The simulated deployment controller (the part of kube-controller-manager that turns
//! Deployments into pods; there are no ReplicaSets here, see [`super::rollout`]).
//!
//! Observe (reflectors on Deployments and Pods) → decide ([`plan`], pure) → write (create and
//! delete pods, the Deployment's `/status` when it changed, Events) → sleep on the SimClock until
//! the earliest recheck time or the next watch event.
//!
//! Writes outrun the caches, so like the real controller it keeps *expectations*: after creating
//! or deleting pods for a Deployment it leaves that Deployment alone until the pod cache shows
//! those changes (or a few real seconds have passed).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use tokio::sync::{Notify, watch};

use super::events::{EventType, Note, Recorder, reference};
use super::observe::{any_change, cache, pod_digest, sleep_until, stopped};
use super::pod_status::json_subset;
use super::pods::{is_terminating, owned_pods, pod_from_template, pod_name};
use super::rollout::{Plan, plan};
use crate::SimClock;

/// The field manager of the deployment controller's writes.
pub const FIELD_MANAGER: &str = "sim-deployment-controller";
/// How long unmet expectations hold a Deployment back before the controller acts anyway.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(5);
/// The status counters the real controller omits when zero (set to null to clear them).
const COUNTERS: [&str; 5] = [
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
];

/// How often every Deployment is reconsidered even when nothing seems to have changed.
const SETTLED_RESYNC: Duration = Duration::from_secs(5);

/// A digest of a Deployment's version and its pods' versions.
fn digest(deployment: &Deployment, pods: &[&Pod]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    deployment.metadata.resource_version.hash(&mut hasher);
    let mut versions: Vec<(&Option<String>, &Option<String>)> = pods
        .iter()
        .map(|p| (&p.metadata.name, &p.metadata.resource_version))
        .collect();
    versions.sort();
    versions.hash(&mut hasher);
    hasher.finish()
}

pub(super) struct DeploymentController {
    client: Client,
    clock: SimClock,
    node_name: String,
    recorder: Recorder,
    /// Per Deployment uid: pods created or deleted that the cache has not shown yet.
    expectations: HashMap<String, Expectation>,
    /// Per Deployment uid: a digest of the Deployment and its pods at the last pass, and the
    /// recheck time then; a Deployment whose digest is unchanged and has nothing due is skipped
    /// (every watch event wakes the loop for every Deployment). Cleared every few seconds so a
    /// failed write is retried.
    settled: HashMap<String, (u64, Option<Timestamp>)>,
    settled_since: Instant,
    random: u64,
}

struct Expectation {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

impl DeploymentController {
    pub(super) fn new(client: Client, clock: SimClock, node_name: String) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            FIELD_MANAGER,
            "deployment-controller",
            &node_name,
        );
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64);
        Self {
            client,
            clock,
            node_name,
            recorder,
            expectations: HashMap::new(),
            settled: HashMap::new(),
            settled_since: Instant::now(),
            random: seed,
        }
    }

    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        let (deployments, deployment_task) = cache(
            Api::<Deployment>::all(self.client.clone()),
            wake.clone(),
            any_change,
        );
        let (pods, pod_task) = cache(
            Api::<Pod>::all(self.client.clone()),
            wake.clone(),
            pod_digest,
        );
        tokio::select! {
            _ = async {
                let _ = deployments.wait_until_ready().await;
                let _ = pods.wait_until_ready().await;
            } => {}
            _ = stopped(&mut stop) => {
                deployment_task.abort();
                pod_task.abort();
                return;
            }
        }
        loop {
            let (next, waiting) = self.pass(&deployments, &pods).await;
            // Unmet expectations are normally met by the next watch event; the timeout only
            // guards against a lost one.
            let retry = async {
                if waiting {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = retry => {}
                _ = sleep_until(&self.clock, next) => {}
                _ = stopped(&mut stop) => break,
            }
        }
        deployment_task.abort();
        pod_task.abort();
    }

    /// Reconciles every Deployment once; returns the earliest recheck time and whether some
    /// Deployment waits for its expectations.
    async fn pass(
        &mut self,
        deployments: &Store<Deployment>,
        pods: &Store<Pod>,
    ) -> (Option<Timestamp>, bool) {
        let now = self.clock.now();
        let all_pods = pods.state();
        // Indexed once per pass: scanning every pod for every Deployment is quadratic.
        let mut by_owner: HashMap<&str, Vec<&Pod>> = HashMap::new();
        for pod in &all_pods {
            for owner in pod.metadata.owner_references.iter().flatten() {
                if owner.controller == Some(true) {
                    by_owner
                        .entry(owner.uid.as_str())
                        .or_default()
                        .push(pod.as_ref());
                }
            }
        }
        let by_name: HashMap<&str, &Pod> = all_pods
            .iter()
            .filter_map(|p| Some((p.metadata.name.as_deref()?, p.as_ref())))
            .collect();
        let mut next: Option<Timestamp> = None;
        let mut waiting = false;
        let mut live = HashSet::new();
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for deployment in deployments.state() {
            let Some(uid) = deployment.metadata.uid.clone() else {
                continue;
            };
            live.insert(uid.clone());
            if deployment.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if !self.expectations_met(&uid, &by_name) {
                waiting = true;
                continue;
            }
            let candidates = by_owner
                .get(uid.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let digest = digest(&deployment, candidates);
            if let Some((known, recheck)) = self.settled.get(&uid)
                && *known == digest
                && recheck.is_none_or(|at| at > now)
            {
                if let Some(at) = *recheck {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                continue;
            }
            let owned = owned_pods(&deployment, candidates.iter().copied());
            let plan = plan(&deployment, &owned, now);
            let name = deployment.metadata.name.clone().unwrap_or_default();
            let names = (0..plan.create)
                .map(|_| pod_name(&name, &plan.hash, self.next_random()))
                .collect();
            jobs.push(Job {
                deployment,
                uid,
                owned,
                plan,
                names,
                digest,
            });
        }
        // Deployments are synced concurrently, as the controller-manager's workers do; events
        // are recorded afterwards (the recorder aggregates, so it is not shared).
        let outcomes = futures::future::join_all(
            jobs.iter()
                .map(|job| execute(&self.client, &self.node_name, job, now)),
        )
        .await;
        for (job, outcome) in jobs.iter().zip(outcomes) {
            if !outcome.expectation.creates.is_empty() || !outcome.expectation.deletes.is_empty() {
                self.expectations
                    .insert(job.uid.clone(), outcome.expectation);
            }
            for note in &outcome.notes {
                self.recorder.record(&outcome.object, note, 1).await;
            }
            self.settled
                .insert(job.uid.clone(), (job.digest, job.plan.recheck_at));
            if let Some(at) = job.plan.recheck_at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.expectations.retain(|uid, _| live.contains(uid));
        self.settled.retain(|uid, _| live.contains(uid));
        if self.settled_since.elapsed() > SETTLED_RESYNC {
            self.settled.clear();
            self.settled_since = Instant::now();
        }
        (next, waiting)
    }

    fn expectations_met(&mut self, uid: &str, by_name: &HashMap<&str, &Pod>) -> bool {
        let Some(expectation) = self.expectations.get_mut(uid) else {
            return true;
        };
        expectation
            .creates
            .retain(|name| !by_name.contains_key(name.as_str()));
        expectation.deletes.retain(|name| {
            by_name
                .get(name.as_str())
                .is_some_and(|p| !is_terminating(p))
        });
        let met = (expectation.creates.is_empty() && expectation.deletes.is_empty())
            || expectation.since.elapsed() > EXPECTATION_TIMEOUT;
        if met {
            self.expectations.remove(uid);
        }
        met
    }

    /// splitmix64.
    fn next_random(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn note(type_: EventType, reason: &'static str, message: String, at: Timestamp) -> Note {
    Note {
        type_,
        reason,
        message,
        container: None,
        at,
    }
}

/// One Deployment's work in a pass.
struct Job<'a> {
    deployment: Arc<Deployment>,
    uid: String,
    owned: Vec<&'a Pod>,
    plan: Plan,
    /// Names of the pods to create (drawn before the concurrent part).
    names: Vec<String>,
    digest: u64,
}

/// What syncing one Deployment did.
struct Outcome {
    expectation: Expectation,
    notes: Vec<Note>,
    object: k8s_openapi::api::core::v1::ObjectReference,
}

async fn execute(client: &Client, node_name: &str, job: &Job<'_>, now: Timestamp) -> Outcome {
    let (deployment, owned, plan) = (job.deployment.as_ref(), job.owned.as_slice(), &job.plan);
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let object = reference(deployment);
    let mut notes = Vec::new();
    let mut expectation = Expectation {
        creates: HashSet::new(),
        deletes: HashSet::new(),
        since: Instant::now(),
    };
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    for pod_name in &job.names {
        let pod_name = pod_name.clone();
        let mut pod = pod_from_template(deployment, &plan.hash, &pod_name);
        // No scheduler: pods are created bound to the simulated node.
        if let Some(spec) = pod.spec.as_mut()
            && spec.node_name.as_deref().is_none_or(str::is_empty)
        {
            spec.node_name = Some(node_name.to_owned());
        }
        match api.create(&post, &pod).await {
            Ok(_) => {
                expectation.creates.insert(pod_name.clone());
                let note = note(
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {pod_name}"),
                    now,
                );
                notes.push(note);
            }
            Err(error) => {
                tracing::debug!(%error, deployment = %name, "failed to create a pod");
                let note = note(
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {error}"),
                    now,
                );
                notes.push(note);
            }
        }
    }
    for pod_name in &plan.delete {
        let Some(pod) = owned
            .iter()
            .find(|p| p.metadata.name.as_ref() == Some(pod_name))
        else {
            continue;
        };
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0);
        let params = DeleteParams {
            grace_period_seconds: Some(u32::try_from(grace).unwrap_or(30)),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(pod_name, &params).await {
            Ok(_) => {
                expectation.deletes.insert(pod_name.clone());
                let note = note(
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {pod_name}"),
                    now,
                );
                notes.push(note);
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => tracing::debug!(%error, pod = %pod_name, "failed to delete a pod"),
        }
    }

    // Status, only when it changed.
    let mut desired = serde_json::to_value(&plan.status).unwrap_or_default();
    if let Some(fields) = desired.as_object_mut() {
        for counter in COUNTERS {
            fields.entry(counter).or_insert(serde_json::Value::Null);
        }
    }
    let current = serde_json::to_value(&deployment.status).unwrap_or_default();
    if !json_subset(&desired, &current) {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let patch = serde_json::json!({ "status": desired });
        if let Err(error) = deployments
            .patch_status(&name, &params, &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(%error, deployment = %name, "failed to write deployment status");
        }
    }
    Outcome {
        expectation,
        notes,
        object,
    }
}
