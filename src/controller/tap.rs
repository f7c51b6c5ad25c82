//! The watch side of the Platform controller: what a raw watch event changes in the shared
//! tables (topology version, pod index, the operator's writes in flight) and which other
//! objects it concerns (dependents, dependencies, groups), queued through channels.
//!
//! Taps work on raw watch events rather than touched objects: a (re)list queues every object
//! anyway, so its objects only update the bookkeeping, the topology is rebuilt once when the
//! list is done (not once per object: that would be quadratic at startup), and what
//! disappeared during a re-list (no Delete event is delivered for it) is dropped then.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures::channel::mpsc;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::crd::{Phase, Platform, PlatformGroup};
use crate::graph::NodeKey;
use crate::stack::{dependency_keys, key_of};

use super::build::PLATFORM_LABEL;
use super::context::Context;
use super::model::{DeploymentState, PodHealth};
use super::observe::deployment_state;
use super::own_writes::DeploymentVersion;
use super::triage::Urgency;

/// Fans a platform's relevant changes out to its neighbours and groups, and keeps the topology
/// version current.
pub struct PlatformTap {
    ctx: Arc<Context>,
    groups_tx: mpsc::UnboundedSender<ObjectRef<PlatformGroup>>,
    /// What neighbours react to, per platform, as last seen.
    seen: HashMap<NodeKey, u64>,
    /// What shapes the topology, per platform, as last seen.
    shapes: HashMap<NodeKey, u64>,
    /// Platforms listed by the re-list under way.
    relisting: HashSet<NodeKey>,
    /// Their own triggers, in listing order, pushed when the list is done.
    listed: Vec<(NodeKey, Urgency)>,
}

impl PlatformTap {
    pub fn new(
        ctx: Arc<Context>,
        groups_tx: mpsc::UnboundedSender<ObjectRef<PlatformGroup>>,
    ) -> Self {
        Self {
            ctx,
            groups_tx,
            seen: HashMap::new(),
            shapes: HashMap::new(),
            relisting: HashSet::new(),
            listed: Vec::new(),
        }
    }

    pub fn observe(&mut self, event: &watcher::Event<Platform>) {
        match event {
            watcher::Event::Init => {
                self.relisting.clear();
                self.listed.clear();
            }
            watcher::Event::InitApply(platform) => {
                let key = key_of(platform);
                self.shapes.insert(key.clone(), shape_signature(platform));
                self.seen.insert(key.clone(), neighbour_signature(platform));
                self.relisting.insert(key.clone());
                // Mid-list the topology is partial: only a platform without dependencies is
                // known to be able to start.
                let startable = platform.spec.depends_on.is_empty() && not_started(platform);
                self.listed.push((key, Urgency::start_if(startable)));
            }
            watcher::Event::InitDone => {
                let listed = std::mem::take(&mut self.relisting);
                self.seen.retain(|key, _| listed.contains(key));
                self.shapes.retain(|key, _| listed.contains(key));
                self.ctx.platforms_relisted();
                // Queued only now: until the list is done the cache does not hold them.
                for (key, urgency) in std::mem::take(&mut self.listed) {
                    self.ctx.triage.push(key, urgency);
                }
            }
            watcher::Event::Apply(platform) => {
                let key = key_of(platform);
                let (shape, signature) = (shape_signature(platform), neighbour_signature(platform));
                if self.shapes.insert(key.clone(), shape) != Some(shape) {
                    self.ctx.topology_changed();
                }
                let urgency = self.own_urgency(platform, &key);
                self.ctx.triage.push(key.clone(), urgency);
                if self.seen.insert(key, signature) != Some(signature) {
                    self.fan_out(platform);
                }
            }
            watcher::Event::Delete(platform) => {
                let key = key_of(platform);
                self.seen.remove(&key);
                self.shapes.remove(&key);
                self.ctx.topology_changed();
                self.ctx.forget(&key);
                self.fan_out(platform);
            }
        }
        self.ctx
            .set_tap_entries(self.seen.len().max(self.shapes.len()));
    }

    /// How soon a platform's own change must be looked at: before routine work when it has
    /// not started and every dependency is ready (a new platform in a running stack).
    fn own_urgency(&self, platform: &Platform, key: &NodeKey) -> Urgency {
        if platform.metadata.deletion_timestamp.is_some() || !not_started(platform) {
            return Urgency::Change;
        }
        let topology = self.ctx.topology();
        let startable = topology
            .graph
            .dependencies(key)
            .iter()
            .all(|dependency| super::observe::is_ready(&self.ctx, &topology, dependency));
        Urgency::start_if(startable)
    }

    fn fan_out(&self, platform: &Platform) {
        let urgency = neighbour_urgency(platform);
        for related in related_platforms(&self.ctx, platform) {
            self.ctx.triage.push(related, urgency);
        }
        for group in groups_of(&self.ctx, platform) {
            let _ = self.groups_tx.unbounded_send(group);
        }
    }
}

/// Keeps the operator's Deployment writes in flight current (a write the watch delivered is
/// no longer in flight), and queues, through the triage, the platform whose Deployment changed
/// in what the operator reads of it ([`DeploymentState`]: a status heartbeat that changes
/// nothing of it queues nothing), and the dependents of a platform whose workload became ready
/// or stopped being ready. The dependents decide from its Deployment (see `observe::is_ready`),
/// not from its status coming back through the watch; that status write is handed out just
/// ahead of their starts ([`Urgency::Workload`]).
pub struct DeploymentTap {
    ctx: Arc<Context>,
    /// What the operator reads of each Deployment, as last seen.
    seen: HashMap<NodeKey, DeploymentState>,
    /// What the list under way delivered. The reflector shows a list's objects in the cache
    /// only when the list is done, so that is when they are compared with `seen` and queued:
    /// a reconcile queued earlier could read the Deployment as it was before the gap.
    /// Only what is compared of each is kept, not a copy: at scale a re-list is every
    /// Deployment of the cluster at once.
    listing: HashMap<NodeKey, (DeploymentState, DeploymentVersion)>,
    /// The first list is done: later lists are re-lists after a gap in the watch.
    listed_once: bool,
}

impl DeploymentTap {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            seen: HashMap::new(),
            listing: HashMap::new(),
            listed_once: false,
        }
    }

    pub fn observe(&mut self, event: &watcher::Event<Deployment>) {
        let key = |d: &Deployment| NodeKey::new(d.namespace().unwrap_or_default(), d.name_any());
        match event {
            watcher::Event::Init => self.listing.clear(),
            watcher::Event::InitApply(d) => {
                self.listing
                    .insert(key(d), (deployment_state(d), DeploymentVersion::of(d)));
            }
            watcher::Event::InitDone => self.listed(),
            watcher::Event::Apply(d) => {
                let key = key(d);
                self.ctx
                    .own_writes
                    .deployment_seen(&key, &DeploymentVersion::of(d));
                let before = self.seen.insert(key.clone(), deployment_state(d));
                self.changed(&key, before.as_ref());
            }
            watcher::Event::Delete(d) => {
                let key = key(d);
                self.ctx.own_writes.deployment_deleted(&key);
                if let Some(before) = self.seen.remove(&key) {
                    self.changed(&key, Some(&before));
                }
            }
        }
    }

    /// A list is done and the cache shows it. The first is no news (every platform is queued
    /// by its own list); a re-list is, wherever it differs from what was seen before the gap,
    /// Deployments it no longer shows included (no Delete event is delivered for them).
    fn listed(&mut self) {
        let listing = std::mem::take(&mut self.listing);
        self.ctx
            .own_writes
            .deployments_listed(|key| listing.contains_key(key));
        let gone: Vec<NodeKey> = self
            .seen
            .keys()
            .filter(|key| !listing.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            if let Some(before) = self.seen.remove(&key) {
                self.changed(&key, Some(&before));
            }
        }
        for (key, (state, version)) in listing {
            self.ctx.own_writes.deployment_seen(&key, &version);
            let before = self.seen.insert(key.clone(), state);
            if self.listed_once {
                self.changed(&key, before.as_ref());
            }
        }
        self.listed_once = true;
    }

    /// Queues what a change of `platform`'s Deployment from `before` (none: it is new) to
    /// what is now seen (none: it is gone) concerns.
    fn changed(&self, platform: &NodeKey, before: Option<&DeploymentState>) {
        let now = self.seen.get(platform);
        if before == now {
            return;
        }
        let (was_ready, ready) = (before.is_some_and(running), now.is_some_and(running));
        // Readiness gained or lost, or the Deployment gone: its status must follow. A failure
        // behind a lost readiness is queued by the pod tap at its own urgency (health,
        // resource); a Health push here would take the place of a queued Resource trigger.
        // The steps of a rollout or of a start (created, observed, replicas moving) are routine.
        let urgency = if was_ready != ready || now.is_none() {
            Urgency::Workload
        } else {
            Urgency::Change
        };
        self.ctx.triage.push(platform.clone(), urgency);
        if was_ready != ready {
            self.queue_dependents(platform, ready);
        }
    }

    /// A workload that became ready may let its dependents start (see [`Urgency::Start`]);
    /// one that stopped being ready is routine for them until its platform fails.
    fn queue_dependents(&self, platform: &NodeKey, ready: bool) {
        let urgency = Urgency::start_if(ready);
        for dependent in self.ctx.topology().graph.dependents(platform) {
            self.ctx.triage.push(dependent, urgency);
        }
    }

    /// Deployments whose state is kept.
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.seen.len()
    }
}

/// A Deployment with replicas, every one of the current template ready.
fn running(state: &DeploymentState) -> bool {
    state.replicas > 0 && super::observe::workload_ready(state, state.replicas)
}

/// Keeps the pod index current and queues a platform when what the operator reads of its pods
/// changed (existence and health, see [`pod_signature`]): a routine update of a healthy pod
/// (an annotation, a label, a status heartbeat) queues nothing. A re-list rebuilds the index
/// from the cache.
pub fn observe_pod(ctx: &Context, event: &watcher::Event<Pod>) {
    match event {
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
            let Some(platform) = platform_of_pod(pod) else {
                return;
            };
            let health = super::observe::pod_health(pod);
            let signature = health_signature(&health, pod.metadata.deletion_timestamp.is_some());
            if ctx.index_pod(platform.clone(), &pod.name_any(), Some(signature)) {
                ctx.triage.push(platform, health_urgency(&health));
            }
        }
        watcher::Event::Delete(pod) => {
            if let Some(platform) = platform_of_pod(pod)
                && ctx.index_pod(platform.clone(), &pod.name_any(), None)
            {
                ctx.triage.push(platform, Urgency::Health);
            }
        }
        watcher::Event::InitDone => {
            for platform in ctx.reindex_pods(platform_of_pod, pod_signature) {
                ctx.triage.push(platform, Urgency::Health);
            }
        }
        watcher::Event::Init => {}
    }
}

/// What the operator reads of a pod: its health and whether it is terminating.
pub fn pod_signature(pod: &Pod) -> u64 {
    health_signature(
        &super::observe::pod_health(pod),
        pod.metadata.deletion_timestamp.is_some(),
    )
}

fn health_signature(health: &PodHealth, terminating: bool) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        health.ready,
        health.ready_changed_at.map(|t| t.as_nanosecond()),
        health.restarts,
        &health.waiting,
        health
            .last_terminated
            .as_ref()
            .map(|(reason, at)| (reason, at.map(|t| t.as_nanosecond()))),
        &health.unschedulable,
        terminating,
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// The platform a pod belongs to, by its label.
pub fn platform_of_pod(pod: &Pod) -> Option<NodeKey> {
    let platform = pod.labels().get(PLATFORM_LABEL)?;
    Some(NodeKey::new(pod.namespace()?, platform.clone()))
}

/// Keeps the topology current for group changes and queues what a change concerns: the
/// members selected before it and after it, and the other groups that claim (or claimed) a
/// member together with it, whose status reports the conflict.
pub struct GroupTap {
    ctx: Arc<Context>,
    groups_tx: mpsc::UnboundedSender<ObjectRef<PlatformGroup>>,
    /// The generation of each group as last seen (what shapes membership and defaults).
    generations: HashMap<NodeKey, Option<i64>>,
    relisting: HashSet<NodeKey>,
}

impl GroupTap {
    pub fn new(
        ctx: Arc<Context>,
        groups_tx: mpsc::UnboundedSender<ObjectRef<PlatformGroup>>,
    ) -> Self {
        Self {
            ctx,
            groups_tx,
            generations: HashMap::new(),
            relisting: HashSet::new(),
        }
    }

    pub fn observe(&mut self, event: &watcher::Event<PlatformGroup>) {
        match event {
            watcher::Event::Init => self.relisting.clear(),
            watcher::Event::InitApply(group) => {
                let key = key_of(group);
                self.generations
                    .insert(key.clone(), group.metadata.generation);
                self.relisting.insert(key);
            }
            watcher::Event::InitDone => {
                let listed = std::mem::take(&mut self.relisting);
                self.generations.retain(|key, _| listed.contains(key));
                self.ctx.topology_changed();
            }
            watcher::Event::Apply(group) => {
                let key = key_of(group);
                let shaped = self
                    .generations
                    .insert(key.clone(), group.metadata.generation)
                    != Some(group.metadata.generation);
                self.queue_members(&key, shaped);
            }
            watcher::Event::Delete(group) => {
                let key = key_of(group);
                self.generations.remove(&key);
                self.queue_members(&key, true);
            }
        }
    }

    fn queue_members(&self, group: &NodeKey, shaped: bool) {
        let (mut members, mut rivals) = group_members(&self.ctx, group);
        if shaped {
            self.ctx.topology_changed();
            let (after, rivals_after) = group_members(&self.ctx, group);
            members.extend(after);
            rivals.extend(rivals_after);
        }
        for member in members {
            self.ctx.triage.push(member, Urgency::Change);
        }
        for rival in rivals {
            let _ = self
                .groups_tx
                .unbounded_send(ObjectRef::new(&rival.name).within(&rival.namespace));
        }
    }
}

/// Members of a group (with the platforms it claims in conflict with another group), and
/// the other groups of those conflicts.
fn group_members(ctx: &Context, group: &NodeKey) -> (BTreeSet<NodeKey>, BTreeSet<NodeKey>) {
    let topology = ctx.topology();
    let mut members: BTreeSet<NodeKey> = topology
        .membership
        .members
        .get(group)
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let mut rivals = BTreeSet::new();
    for (platform, others) in topology.membership.conflicts_of(group) {
        members.insert(platform);
        rivals.extend(others);
    }
    (members, rivals)
}

/// The dependents and dependencies of `changed` (and, under a start limit, its fellow group
/// members waiting for a slot).
fn related_platforms(ctx: &Context, changed: &Platform) -> BTreeSet<NodeKey> {
    let key = key_of(changed);
    let topology = ctx.topology();
    let graph = &topology.graph;
    let mut related: BTreeSet<NodeKey> = graph
        .dependents(&key)
        .into_iter()
        .chain(graph.dependencies(&key))
        .collect();
    if !graph.contains(&key) {
        // Deleted: its former dependents still name it.
        for platform in ctx.stores.platforms.state() {
            if dependency_keys(&platform).contains(&key) {
                related.insert(key_of(platform.as_ref()));
            }
        }
        related.extend(dependency_keys(changed));
    }
    if let Some(group) = topology.group_of(&key)
        && group
            .spec
            .startup
            .as_ref()
            .is_some_and(|s| s.max_concurrent_starts > 0)
    {
        related.extend(
            topology
                .membership
                .members
                .get(&key_of(group.as_ref()))
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    related.remove(&key);
    related
}

/// How urgently a platform's neighbours must look at its change: at once when it failed (its
/// dependents must stop), in turn otherwise.
fn neighbour_urgency(changed: &Platform) -> Urgency {
    let status = changed.status.as_ref();
    let failed = status.and_then(|s| s.phase) == Some(Phase::Failed)
        || status
            .and_then(|s| s.supervision.as_ref())
            .and_then(super::supervise::failed_reason)
            .is_some();
    if failed {
        Urgency::DependencyFailure
    } else if status.and_then(|s| s.phase) == Some(Phase::Running) {
        Urgency::Start
    } else {
        Urgency::Change
    }
}

/// Not yet started: no phase, or still pending or waiting for its dependencies.
fn not_started(platform: &Platform) -> bool {
    matches!(
        platform.status.as_ref().and_then(|s| s.phase),
        None | Some(Phase::Pending | Phase::WaitingForDependencies)
    )
}

/// How urgently a pod's change must be looked at: a pod that is OOM-killed, or not ready, or
/// waiting (crash loop, image pull, config error) before a healthy pod's routine update.
fn health_urgency(health: &PodHealth) -> Urgency {
    let oom_killed = health
        .last_terminated
        .as_ref()
        .is_some_and(|(reason, _)| reason == "OOMKilled");
    if oom_killed {
        Urgency::Resource
    } else if !health.ready || health.waiting.is_some() || health.unschedulable.is_some() {
        Urgency::Health
    } else {
        Urgency::Change
    }
}

/// What a platform's neighbours and groups react to: its spec, labels, deletion, restart
/// requests, phase and readiness.
fn neighbour_signature(platform: &Platform) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    platform.metadata.generation.hash(&mut hasher);
    platform
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    platform.metadata.labels.hash(&mut hasher);
    platform.metadata.annotations.hash(&mut hasher);
    if let Some(status) = &platform.status {
        status.phase.hash(&mut hasher);
        status.ready_replicas.hash(&mut hasher);
        for condition in &status.conditions {
            (&condition.type_, &condition.status).hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// What shapes the topology: identity, the spec (dependencies, desired state), labels,
/// deletion, and whether supervision keeps it stopped as failed (its dependents' stop causes).
fn shape_signature(platform: &Platform) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let supervision = platform
        .status
        .as_ref()
        .and_then(|s| s.supervision.as_ref());
    supervision
        .and_then(super::supervise::failed_reason)
        .hash(&mut hasher);
    supervision
        .is_some_and(super::supervise::on_trial)
        .hash(&mut hasher);
    platform.metadata.uid.hash(&mut hasher);
    platform.metadata.generation.hash(&mut hasher);
    platform.metadata.labels.hash(&mut hasher);
    platform
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    hasher.finish()
}

/// Groups whose status may change with `changed`: those selecting it (even in conflict).
fn groups_of(ctx: &Context, changed: &Platform) -> Vec<ObjectRef<PlatformGroup>> {
    let key = key_of(changed);
    let topology = ctx.topology();
    let mut groups: BTreeSet<NodeKey> = topology
        .membership
        .conflicting_groups(&key)
        .iter()
        .cloned()
        .collect();
    groups.extend(topology.membership.group_of.get(&key).cloned());
    if !topology.graph.contains(&key) {
        // Gone: every group of its namespace may have lost a member.
        groups.extend(
            topology
                .groups
                .keys()
                .filter(|g| g.namespace == key.namespace)
                .cloned(),
        );
    }
    groups
        .into_iter()
        .map(|k| ObjectRef::new(&k.name).within(&k.namespace))
        .collect()
}

#[cfg(test)]
mod tests;
