//! State shared by every reconcile: the client, the reflector caches (also what the REST API
//! reads), the Event queue, the clock, and the small in-memory tables the watch side feeds
//! (topology, pod index, start slots, the operator's own writes in flight).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::crd::{Platform, PlatformGroup};
use crate::graph::{Graph, NodeKey};
use crate::stack::{Membership, build_graph, key_of, membership};

use super::clock::Clock;
use super::events::EventQueue;
use super::health::Health;
use super::model::StopCause;
use super::own_writes::OwnWrites;
use super::stopping::stop_causes;

/// How often [`Stores::wait_until_synced`] looks.
const SYNC_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// The reflector caches the operator reads from.
#[derive(Clone)]
pub struct Stores {
    pub platforms: Store<Platform>,
    pub groups: Store<PlatformGroup>,
    pub deployments: Store<Deployment>,
    pub configmaps: Store<ConfigMap>,
    pub pods: Store<Pod>,
}

impl Stores {
    /// Whether every cache has done its first list (decisions on partial caches could, for
    /// example, take a dependent with pods for one without).
    pub fn synced(&self) -> bool {
        is_synced(&self.platforms)
            && is_synced(&self.groups)
            && is_synced(&self.deployments)
            && is_synced(&self.configmaps)
            && is_synced(&self.pods)
    }

    /// Waits until every cache has done its first list. It looks every few milliseconds
    /// rather than awaiting `Store::wait_until_ready`: that future keeps only the waker of its
    /// latest poll, and [`Stores::synced`] (polled from elsewhere with a no-op waker) would
    /// replace ours, leaving this wait asleep for ever.
    pub async fn wait_until_synced(&self) {
        while !self.synced() {
            tokio::time::sleep(SYNC_POLL).await;
        }
    }

    pub fn platform(&self, key: &NodeKey) -> Option<Arc<Platform>> {
        self.platforms
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }

    pub fn deployment(&self, key: &NodeKey) -> Option<Arc<Deployment>> {
        self.deployments
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }
}

/// Everything derived from the whole set of Platforms and groups.
#[derive(Debug)]
pub struct Topology {
    pub graph: Graph,
    pub membership: Membership,
    pub groups: BTreeMap<NodeKey, Arc<PlatformGroup>>,
    /// Why each platform that must stop does (see [`super::stopping`]).
    pub stop_causes: HashMap<NodeKey, StopCause>,
}

impl Topology {
    /// The topology of these objects.
    pub fn of(platforms: &[Arc<Platform>], groups: &[Arc<PlatformGroup>]) -> Topology {
        let graph = build_graph(
            platforms.iter().map(AsRef::as_ref),
            groups.iter().map(AsRef::as_ref),
        );
        let membership = membership(
            platforms.iter().map(AsRef::as_ref),
            groups.iter().map(AsRef::as_ref),
        );
        let by_key: HashMap<NodeKey, Arc<Platform>> = platforms
            .iter()
            .map(|p| (key_of(p.as_ref()), p.clone()))
            .collect();
        let groups_by_key: HashMap<NodeKey, Arc<PlatformGroup>> = groups
            .iter()
            .map(|g| (key_of(g.as_ref()), g.clone()))
            .collect();
        let stop_causes = stop_causes(&graph, &by_key, &membership, &groups_by_key);
        Topology {
            graph,
            membership,
            groups: groups_by_key.into_iter().collect(),
            stop_causes,
        }
    }

    /// The group a platform belongs to, if exactly one claims it.
    pub fn group_of(&self, platform: &NodeKey) -> Option<&Arc<PlatformGroup>> {
        self.membership
            .group_of
            .get(platform)
            .and_then(|g| self.groups.get(g))
    }
}

/// Shared reconcile context.
pub struct Context {
    pub client: Client,
    pub stores: Stores,
    /// Events to publish, off the reconcile path.
    pub events: EventQueue,
    pub clock: Arc<dyn Clock>,
    /// Field manager of every write.
    pub field_manager: String,
    /// The operator's writes the caches do not show yet.
    pub own_writes: OwnWrites,
    /// Whether each controller makes progress (for `/healthz`).
    pub health: Health,
    /// Counters and gauges for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Whether this instance leads (only the leader reconciles and writes).
    pub leadership: Arc<super::leader::Leadership>,
    /// Where supervision's alerts go (`None` in contexts that send none).
    pub alerter: Option<crate::alerts::Alerter>,
    /// Resource usage from the metrics API, and the fraction of a limit that counts as
    /// exceeded.
    pub usage: super::usage::Usage,
    pub usage_threshold: f64,
    /// Reconciles asked for by the platforms' surroundings, most urgent first.
    pub triage: Arc<super::triage::Triage>,
    /// Recent Warning Events on the platforms' pods.
    pub warnings: super::warnings::Warnings,
    topology: Mutex<Option<(u64, Arc<Topology>)>>,
    /// Bumped by the watch taps whenever a change can reshape the topology.
    topology_version: AtomicU64,
    /// Pods of each platform by name, fed by the pod watch.
    /// Each pod's health signature (what the operator reads of it), to tell a change that
    /// matters from a routine update.
    pod_index: Mutex<HashMap<NodeKey, HashMap<String, u64>>>,
    /// Members of each group that took a start slot and are not Running yet; the caches lag
    /// behind concurrent reconciles, so the limit is enforced here.
    start_slots: Mutex<HashMap<NodeKey, BTreeSet<NodeKey>>>,
    /// Entries in the platform watch tap's change signatures (kept there, counted here).
    tap_entries: AtomicUsize,
    /// Platforms whose status keeps showing blockers that became ready, and since when.
    held_blockers: Mutex<HashMap<NodeKey, Timestamp>>,
}

/// How many entries the operator's in-memory tables hold; each must shrink when objects go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    pub own_writes: usize,
    /// Platforms in the pod index.
    pub pod_index: usize,
    /// Members holding a start slot.
    pub start_slots: usize,
    /// Platforms whose change signatures the watch tap keeps.
    pub tap_signatures: usize,
    /// Platforms whose status keeps showing blockers that became ready.
    pub held_blockers: usize,
}

impl Context {
    pub fn new(client: Client, stores: Stores, events: EventQueue, clock: Arc<dyn Clock>) -> Self {
        let metrics: Arc<crate::metrics::Metrics> = Arc::default();
        let triage = super::triage::Triage::new(
            usize::from(super::run::DEFAULT_CONCURRENCY),
            metrics.triage.clone(),
        );
        Self {
            client,
            stores,
            events,
            clock,
            field_manager: super::FIELD_MANAGER.to_string(),
            own_writes: OwnWrites::default(),
            health: Health::default(),
            metrics,
            leadership: super::leader::Leadership::always(),
            alerter: None,
            usage: Default::default(),
            usage_threshold: super::usage::DEFAULT_USAGE_THRESHOLD,
            triage,
            warnings: Default::default(),
            topology: Mutex::new(None),
            topology_version: AtomicU64::new(1),
            pod_index: Mutex::new(HashMap::new()),
            start_slots: Mutex::new(HashMap::new()),
            tap_entries: AtomicUsize::new(0),
            held_blockers: Mutex::default(),
        }
    }

    /// The platform's Deployment: the cached one, or the operator's own write while the cache
    /// does not show it yet.
    pub fn fresh_deployment(&self, key: &NodeKey) -> Option<Arc<Deployment>> {
        self.own_writes.deployment(key, self.stores.deployment(key))
    }

    /// Since when `key`'s status has kept showing blockers that became ready.
    pub fn blockers_held_since(&self, key: &NodeKey) -> Option<Timestamp> {
        self.held_blockers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
    }

    /// Records what a plan did about blockers that became ready: held since `since`, or shown.
    pub fn hold_blockers(&self, key: &NodeKey, since: Option<Timestamp>) {
        let mut held = self.held_blockers.lock().unwrap_or_else(|p| p.into_inner());
        match since {
            Some(since) => {
                held.insert(key.clone(), since);
            }
            None => {
                held.remove(key);
            }
        }
    }

    /// Forgets everything kept about a deleted platform.
    pub fn forget(&self, key: &NodeKey) {
        self.hold_blockers(key, None);
        self.own_writes.forget(key);
        self.warnings.forget(key);
        self.release_slot(key);
        self.pod_index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// After a re-list of the Platforms: drops what is kept about platforms that disappeared
    /// while the watch was down (no Delete event is delivered for them).
    pub fn platforms_relisted(&self) {
        let exists = |key: &NodeKey| self.stores.platform(key).is_some();
        self.own_writes.retain(exists);
        let mut slots = self.start_slots.lock().unwrap_or_else(|p| p.into_inner());
        for members in slots.values_mut() {
            members.retain(exists);
        }
        slots.retain(|_, members| !members.is_empty());
        drop(slots);
        self.held_blockers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| exists(key));
        self.topology_changed();
    }

    /// How big the in-memory tables are.
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            own_writes: self.own_writes.len(),
            pod_index: self
                .pod_index
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
            start_slots: self
                .start_slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .map(BTreeSet::len)
                .sum(),
            tap_signatures: self.tap_entries.load(Ordering::Relaxed),
            held_blockers: self
                .held_blockers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
        }
    }

    pub(crate) fn set_tap_entries(&self, entries: usize) {
        self.tap_entries.store(entries, Ordering::Relaxed);
    }

    /// The graph and group membership of the cached objects, rebuilt only after something that
    /// shapes them (names, dependencies, labels, groups) changed.
    pub fn topology(&self) -> Arc<Topology> {
        let version = self.topology_version.load(Ordering::Acquire);
        let mut cached = self.topology.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, topology)) = cached.as_ref()
            && *known == version
        {
            return topology.clone();
        }
        let topology = Arc::new(Topology::of(
            &self.stores.platforms.state(),
            &self.stores.groups.state(),
        ));
        *cached = Some((version, topology.clone()));
        topology
    }

    /// Marks the topology as outdated (called after the cache holds the change).
    pub fn topology_changed(&self) {
        self.topology_version.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a pod event of `platform`: the pod with its health signature, or `None` when it
    /// is gone. Says whether anything the operator reads of the platform's pods changed.
    pub fn index_pod(&self, platform: NodeKey, pod: &str, signature: Option<u64>) -> bool {
        let mut index = self.pod_index.lock().unwrap_or_else(|p| p.into_inner());
        match signature {
            Some(signature) => {
                index
                    .entry(platform)
                    .or_default()
                    .insert(pod.to_string(), signature)
                    != Some(signature)
            }
            None => {
                let Some(pods) = index.get_mut(&platform) else {
                    return false;
                };
                let removed = pods.remove(pod).is_some();
                if pods.is_empty() {
                    index.remove(&platform);
                }
                removed
            }
        }
    }

    /// Rebuilds the pod index from the pod cache (after a re-list, which delivers no Delete
    /// events for pods that disappeared meanwhile); returns the platforms whose pods changed.
    pub fn reindex_pods(
        &self,
        platform_of: impl Fn(&Pod) -> Option<NodeKey>,
        signature_of: impl Fn(&Pod) -> u64,
    ) -> BTreeSet<NodeKey> {
        let mut index: HashMap<NodeKey, HashMap<String, u64>> = HashMap::new();
        for pod in self.stores.pods.state() {
            if let (Some(platform), Some(name)) = (platform_of(&pod), pod.metadata.name.clone()) {
                index
                    .entry(platform)
                    .or_default()
                    .insert(name, signature_of(&pod));
            }
        }
        let mut current = self.pod_index.lock().unwrap_or_else(|p| p.into_inner());
        let changed = current
            .keys()
            .chain(index.keys())
            .filter(|platform| current.get(*platform) != index.get(*platform))
            .cloned()
            .collect();
        *current = index;
        changed
    }

    /// Pods of a platform that exist (terminating ones included). Entries the cache no longer
    /// holds are dropped here.
    pub fn pod_count(&self, platform: &NodeKey) -> i32 {
        let mut index = self.pod_index.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pods) = index.get_mut(platform) else {
            return 0;
        };
        pods.retain(|name, _| {
            self.stores
                .pods
                .get(&ObjectRef::new(name).within(&platform.namespace))
                .is_some()
        });
        let count = pods.len();
        if count == 0 {
            index.remove(platform);
        }
        i32::try_from(count).unwrap_or(i32::MAX)
    }

    /// The cached pods of a platform.
    pub fn pods_of(&self, platform: &NodeKey) -> Vec<Arc<Pod>> {
        let index = self.pod_index.lock().unwrap_or_else(|p| p.into_inner());
        index
            .get(platform)
            .into_iter()
            .flat_map(HashMap::keys)
            .filter_map(|name| {
                self.stores
                    .pods
                    .get(&ObjectRef::new(name).within(&platform.namespace))
            })
            .collect()
    }

    /// Members of `group` holding a start slot, other than `platform`.
    pub fn slots_taken(&self, group: &NodeKey, platform: &NodeKey) -> BTreeSet<NodeKey> {
        let slots = self.start_slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .get(group)
            .map(|s| s.iter().filter(|k| *k != platform).cloned().collect())
            .unwrap_or_default()
    }

    /// Claims a start slot unless `limit` (> 0) slots are held by others: the guard of a plan's
    /// claim, re-checked at commit because concurrent reconciles of other members may have
    /// claimed since the snapshot was taken.
    pub fn claim_slot(
        &self,
        group: &NodeKey,
        platform: &NodeKey,
        limit: u32,
        also_starting: &BTreeSet<NodeKey>,
    ) -> bool {
        let mut slots = self.start_slots.lock().unwrap_or_else(|p| p.into_inner());
        let taken = slots.entry(group.clone()).or_default();
        let others = taken
            .iter()
            .chain(also_starting.iter())
            .filter(|k| *k != platform)
            .collect::<BTreeSet<_>>()
            .len();
        if limit > 0 && others >= limit as usize {
            if taken.is_empty() {
                slots.remove(group);
            }
            return false;
        }
        taken.insert(platform.clone());
        true
    }

    /// Gives a start slot back (the platform is Running, stopped, failed or gone).
    pub fn release_slot(&self, platform: &NodeKey) {
        let mut slots = self.start_slots.lock().unwrap_or_else(|p| p.into_inner());
        for members in slots.values_mut() {
            members.remove(platform);
        }
        slots.retain(|_, members| !members.is_empty());
    }
}

/// Whether a cache has done its first list.
pub fn is_synced<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    matches!(
        futures::FutureExt::now_or_never(store.wait_until_ready()),
        Some(Ok(()))
    )
}
