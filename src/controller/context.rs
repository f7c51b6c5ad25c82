//! State shared by every reconcile: the client, the reflector caches (also what the REST API
//! reads), the event recorder, the clock, and two small in-memory indexes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::crd::{Platform, PlatformGroup};
use crate::graph::{Graph, NodeKey};
use crate::stack::{Membership, build_graph, key_of, membership};

use super::clock::Clock;
use super::model::StopCause;
use super::stopping::stop_causes;

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
    pub recorder: Recorder,
    pub clock: Arc<dyn Clock>,
    /// Field manager of every write.
    pub field_manager: String,
    topology: Mutex<Option<(u64, Arc<Topology>)>>,
    /// Bumped by the watch taps whenever a change can reshape the topology.
    topology_version: AtomicU64,
    /// Pods of each platform by name, fed by the pod watch (checked against the cache on read).
    pod_index: Mutex<HashMap<NodeKey, HashSet<String>>>,
    /// Members of each group that took a start slot and are not Running yet; the caches lag
    /// behind concurrent reconciles, so the limit is enforced here.
    start_slots: Mutex<HashMap<NodeKey, BTreeSet<NodeKey>>>,
    /// The operator's own latest writes, until the caches show them (see [`Context::fresh_platform`]).
    own_writes: Mutex<HashMap<NodeKey, OwnWrites>>,
}

/// Objects as the operator last wrote them, with the resourceVersion they were based on.
#[derive(Default)]
struct OwnWrites {
    /// Versions older than the written one (the cached one and intermediate writes).
    platform: Option<(Vec<Option<String>>, Arc<Platform>)>,
    deployment: Option<(Option<String>, Arc<Deployment>)>,
}

impl Context {
    pub fn new(client: Client, stores: Stores, recorder: Recorder, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            stores,
            recorder,
            clock,
            field_manager: super::FIELD_MANAGER.to_string(),
            topology: Mutex::new(None),
            topology_version: AtomicU64::new(1),
            pod_index: Mutex::new(HashMap::new()),
            start_slots: Mutex::new(HashMap::new()),
            own_writes: Mutex::new(HashMap::new()),
        }
    }

    /// The Platform as the operator last wrote it while the cache still holds the version that
    /// write was based on; otherwise the cached one. Without this, a reconcile that runs before
    /// the watch delivers the operator's own write would decide from the old state (and audit
    /// an action twice).
    pub fn fresh_platform(&self, key: &NodeKey, cached: Arc<Platform>) -> Arc<Platform> {
        let mut own = self.own_writes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = own.get_mut(key) else {
            return cached;
        };
        match &entry.platform {
            Some((older, written)) if older.contains(&cached.metadata.resource_version) => {
                written.clone()
            }
            _ => {
                entry.platform = None;
                cached
            }
        }
    }

    /// The platform's Deployment, with the same overlay as [`Context::fresh_platform`].
    pub fn fresh_deployment(&self, key: &NodeKey) -> Option<Arc<Deployment>> {
        let cached = self.stores.deployment(key);
        let mut own = self.own_writes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = own.get_mut(key) else {
            return cached;
        };
        let cached_version = cached
            .as_ref()
            .and_then(|d| d.metadata.resource_version.clone());
        match &entry.deployment {
            Some((base, written)) if *base == cached_version => Some(written.clone()),
            _ => {
                entry.deployment = None;
                cached
            }
        }
    }

    /// Remembers a Platform write; `older` are the versions the cache may still show.
    pub fn remember_platform(
        &self,
        key: &NodeKey,
        older: Vec<Option<String>>,
        written: Arc<Platform>,
    ) {
        let mut own = self.own_writes.lock().unwrap_or_else(|p| p.into_inner());
        own.entry(key.clone()).or_default().platform = Some((older, written));
    }

    /// Remembers a Deployment write based on the version `base` (`None`: it did not exist).
    pub fn remember_deployment(&self, key: &NodeKey, base: Option<String>, written: Deployment) {
        let mut own = self.own_writes.lock().unwrap_or_else(|p| p.into_inner());
        own.entry(key.clone()).or_default().deployment = Some((base, Arc::new(written)));
    }

    /// Forgets a deleted platform's writes.
    pub fn forget(&self, key: &NodeKey) {
        self.own_writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
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
        let platforms = self.stores.platforms.state();
        let groups = self.stores.groups.state();
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
        let topology = Arc::new(Topology {
            graph,
            membership,
            groups: groups_by_key.into_iter().collect(),
            stop_causes,
        });
        *cached = Some((version, topology.clone()));
        topology
    }

    /// Marks the topology as outdated (called after the cache holds the change).
    pub fn topology_changed(&self) {
        self.topology_version.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a pod event of `platform` (`exists`: the cache holds the pod).
    pub fn index_pod(&self, platform: NodeKey, pod: &str, exists: bool) {
        let mut index = self.pod_index.lock().unwrap_or_else(|p| p.into_inner());
        let pods = index.entry(platform).or_default();
        if exists {
            pods.insert(pod.to_string());
        } else {
            pods.remove(pod);
        }
    }

    /// Pods of a platform that exist (terminating ones included). Entries the cache no longer
    /// holds (removed while a watch was re-listing) are dropped here.
    pub fn pod_count(&self, platform: &NodeKey) -> i32 {
        let mut index = self.pod_index.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pods) = index.get_mut(platform) else {
            return 0;
        };
        pods.retain(|name| {
            self.stores
                .pods
                .get(&ObjectRef::new(name).within(&platform.namespace))
                .is_some()
        });
        i32::try_from(pods.len()).unwrap_or(i32::MAX)
    }

    /// Members of `group` holding a start slot, other than `platform`.
    pub fn slots_taken(&self, group: &NodeKey, platform: &NodeKey) -> BTreeSet<NodeKey> {
        let slots = self.start_slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .get(group)
            .map(|s| s.iter().filter(|k| *k != platform).cloned().collect())
            .unwrap_or_default()
    }

    /// Takes a start slot unless `limit` (> 0) slots are taken by others.
    pub fn try_take_slot(
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
            return false;
        }
        taken.insert(platform.clone());
        true
    }

    /// Gives a start slot back (the platform is Running, stopped or gone).
    pub fn release_slot(&self, platform: &NodeKey) {
        let mut slots = self.start_slots.lock().unwrap_or_else(|p| p.into_inner());
        for members in slots.values_mut() {
            members.remove(platform);
        }
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
