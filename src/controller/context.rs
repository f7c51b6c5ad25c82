//! State shared by every reconcile: the client, the reflector caches (also what the REST API
//! reads), the event recorder, the clock, and two small in-memory indexes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::crd::{Platform, PlatformGroup};
use crate::graph::{Graph, NodeKey};
use crate::stack::{Membership, build_graph, key_of, membership};

use super::build::PLATFORM_LABEL;
use super::clock::Clock;

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
    pub fn platform(&self, key: &NodeKey) -> Option<Arc<Platform>> {
        self.platforms
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }

    pub fn deployment(&self, key: &NodeKey) -> Option<Arc<Deployment>> {
        self.deployments
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }

    /// Pods of a platform (by label), terminating ones included.
    pub fn pod_count(&self, key: &NodeKey) -> i32 {
        let count = self
            .pods
            .state()
            .iter()
            .filter(|pod| {
                pod.metadata.namespace.as_deref() == Some(key.namespace.as_str())
                    && pod.labels().get(PLATFORM_LABEL) == Some(&key.name)
            })
            .count();
        i32::try_from(count).unwrap_or(i32::MAX)
    }
}

/// Everything derived from the whole set of Platforms and groups.
#[derive(Debug)]
pub struct Topology {
    pub graph: Graph,
    pub membership: Membership,
    pub groups: BTreeMap<NodeKey, Arc<PlatformGroup>>,
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
    /// Members of each group that took a start slot and are not Running yet; the caches lag
    /// behind concurrent reconciles, so the limit is enforced here.
    start_slots: Mutex<HashMap<NodeKey, BTreeSet<NodeKey>>>,
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
            start_slots: Mutex::new(HashMap::new()),
        }
    }

    /// The graph and group membership of the cached objects, rebuilt only when something that
    /// shapes them (names, specs, labels, deletions) changed.
    pub fn topology(&self) -> Arc<Topology> {
        let platforms = self.stores.platforms.state();
        let groups = self.stores.groups.state();
        let fingerprint = topology_fingerprint(&platforms, &groups);
        let mut cached = self.topology.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, topology)) = cached.as_ref()
            && *known == fingerprint
        {
            return topology.clone();
        }
        let topology = Arc::new(Topology {
            graph: build_graph(
                platforms.iter().map(AsRef::as_ref),
                groups.iter().map(AsRef::as_ref),
            ),
            membership: membership(
                platforms.iter().map(AsRef::as_ref),
                groups.iter().map(AsRef::as_ref),
            ),
            groups: groups
                .iter()
                .map(|g| (key_of(g.as_ref()), g.clone()))
                .collect(),
        });
        *cached = Some((fingerprint, topology.clone()));
        topology
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

fn topology_fingerprint(platforms: &[Arc<Platform>], groups: &[Arc<PlatformGroup>]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut platform_parts: Vec<_> = platforms
        .iter()
        .map(|p| {
            (
                p.namespace(),
                p.name_any(),
                p.metadata.generation,
                p.labels().clone(),
                p.metadata.deletion_timestamp.is_some(),
                p.metadata.uid.clone(),
            )
        })
        .collect();
    platform_parts.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    platform_parts.hash(&mut hasher);
    let mut group_parts: Vec<_> = groups
        .iter()
        .map(|g| {
            (
                g.namespace(),
                g.name_any(),
                g.metadata.generation,
                g.metadata.uid.clone(),
            )
        })
        .collect();
    group_parts.sort();
    group_parts.hash(&mut hasher);
    hasher.finish()
}
