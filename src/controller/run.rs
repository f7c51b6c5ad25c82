//! Wiring: the watches, the shared caches, both controllers, and graceful shutdown.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt, future};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use kube::runtime::controller::{Controller, Error as ControllerError};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::crd::{Platform, PlatformGroup};
use crate::graph::NodeKey;
use crate::stack::{dependency_keys, key_of};

use super::build::{MANAGED_BY, MANAGED_BY_LABEL, PLATFORM_LABEL};
use super::clock::{Clock, SystemClock};
use super::context::{Context, Stores};
use super::error::Error;
use super::{group, platform};

/// How the operator runs.
#[derive(Clone)]
pub struct OperatorConfig {
    /// Watch one namespace, or all when `None`.
    pub namespace: Option<String>,
    pub clock: Arc<dyn Clock>,
    /// Reconciles running at once per controller (0 = unlimited).
    pub concurrency: u16,
    /// Instance name in Events (the pod name in a cluster).
    pub instance: Option<String>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            clock: Arc::new(SystemClock),
            concurrency: 0,
            instance: None,
        }
    }
}

/// A running operator.
pub struct Operator {
    stores: Stores,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Operator {
    /// Starts the watches and both controllers on the current Tokio runtime.
    pub fn start(client: Client, config: OperatorConfig) -> Operator {
        let namespace = config.namespace.as_deref();
        let platforms_api: Api<Platform> = scoped(&client, namespace);
        let groups_api: Api<PlatformGroup> = scoped(&client, namespace);
        let deployments_api: Api<Deployment> = scoped(&client, namespace);
        let configmaps_api: Api<ConfigMap> = scoped(&client, namespace);
        let pods_api: Api<Pod> = scoped(&client, namespace);
        let managed =
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));

        let (platforms, platforms_writer) = reflector::store::<Platform>();
        let (groups, groups_writer) = reflector::store::<PlatformGroup>();
        let (deployments, deployments_writer) = reflector::store::<Deployment>();
        let (configmaps, configmaps_writer) = reflector::store::<ConfigMap>();
        let (pods, pods_writer) = reflector::store::<Pod>();
        let stores = Stores {
            platforms: platforms.clone(),
            groups,
            deployments,
            configmaps,
            pods,
        };

        let reporter = Reporter {
            controller: super::FIELD_MANAGER.into(),
            instance: config.instance.clone(),
        };
        let ctx = Arc::new(Context::new(
            client.clone(),
            stores.clone(),
            Recorder::new(client.clone(), reporter),
            config.clock.clone(),
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let stop = move || {
            let mut rx = shutdown_rx.clone();
            async move {
                let _ = rx.wait_for(|stopping| *stopping).await;
            }
        };

        // A change of one platform concerns its neighbours and its groups: they are queued
        // through these channels.
        let (related_tx, related_rx) = mpsc::unbounded::<ObjectRef<Platform>>();
        let (groups_tx, groups_rx) = mpsc::unbounded::<ObjectRef<PlatformGroup>>();
        let tap_ctx = ctx.clone();
        let platform_stream = reflector(
            platforms_writer,
            watcher(platforms_api, watcher::Config::default()).default_backoff(),
        )
        .inspect({
            let mut tap = PlatformTap {
                ctx: tap_ctx,
                related_tx,
                groups_tx,
                seen: HashMap::new(),
                shapes: HashMap::new(),
            };
            move |event| {
                if let Ok(event) = event {
                    tap.observe(event);
                }
            }
        })
        .touched_objects();
        let deployment_stream = reflector(
            deployments_writer,
            watcher(deployments_api, managed.clone()).default_backoff(),
        )
        .touched_objects();
        let configmap_stream = reflector(
            configmaps_writer,
            watcher(configmaps_api, managed).default_backoff(),
        )
        .touched_objects();
        let pod_ctx = ctx.clone();
        let pods_cache = stores.pods.clone();
        let pod_stream = reflector(
            pods_writer,
            watcher(pods_api, watcher::Config::default().labels(PLATFORM_LABEL)).default_backoff(),
        )
        .touched_objects()
        .inspect(move |event| {
            if let Ok(pod) = event
                && let (Some(platform), Some(namespace)) =
                    (pod.labels().get(PLATFORM_LABEL), pod.namespace())
            {
                let exists = pods_cache.get(&ObjectRef::from_obj(pod)).is_some();
                pod_ctx.index_pod(
                    NodeKey::new(namespace, platform.clone()),
                    &pod.name_any(),
                    exists,
                );
            }
        });
        let member_ctx = ctx.clone();
        let group_ctx = ctx.clone();
        let groups_cache = stores.groups.clone();
        let relist_ctx = ctx.clone();
        let group_stream = reflector(
            groups_writer,
            watcher(groups_api.clone(), watcher::Config::default()).default_backoff(),
        )
        .inspect(move |event| relisted(&relist_ctx, event))
        .touched_objects()
        .inspect({
            let mut last_shape: HashMap<NodeKey, Option<i64>> = HashMap::new();
            move |event| {
                if let Ok(group) = event {
                    let key = key_of(group);
                    let exists = groups_cache.get(&ObjectRef::from_obj(group)).is_some();
                    let generation = exists.then_some(group.metadata.generation).flatten();
                    if !exists || last_shape.insert(key, generation) != Some(generation) {
                        group_ctx.topology_changed();
                    }
                }
            }
        });

        let controller_config =
            kube::runtime::controller::Config::default().concurrency(config.concurrency);
        let platform_controller = Controller::for_stream(platform_stream, platforms)
            .with_config(controller_config.clone())
            .owns_stream(deployment_stream)
            .owns_stream(configmap_stream)
            .watches_stream(pod_stream, |pod: Pod| {
                let name = pod.labels().get(PLATFORM_LABEL)?.clone();
                Some(ObjectRef::new(&name).within(&pod.namespace()?))
            })
            .watches_stream(group_stream, move |group: PlatformGroup| {
                let topology = member_ctx.topology();
                let members = topology
                    .membership
                    .members
                    .get(&key_of(&group))
                    .cloned()
                    .unwrap_or_default();
                let conflicted = topology
                    .membership
                    .conflicts_of(&key_of(&group))
                    .into_iter()
                    .map(|(k, _)| k);
                members
                    .into_iter()
                    .chain(conflicted)
                    .map(|k| ObjectRef::new(&k.name).within(&k.namespace))
                    .collect::<Vec<_>>()
            })
            .reconcile_on(related_rx)
            .graceful_shutdown_on(stop())
            .run(platform::reconcile, platform::error_policy, ctx.clone())
            .for_each({
                let ctx = ctx.clone();
                move |result| {
                    let ctx = ctx.clone();
                    async move { report_platform_error(&ctx, result).await }
                }
            });

        let group_controller = Controller::new(groups_api, watcher::Config::default())
            .with_config(controller_config)
            .reconcile_on(groups_rx)
            .graceful_shutdown_on(stop())
            .run(group::reconcile, group::error_policy, ctx.clone())
            .for_each(|result| {
                if let Err(error) = result {
                    tracing::warn!(%error, "group reconcile failed");
                }
                future::ready(())
            });

        let tasks = vec![
            tokio::spawn(platform_controller),
            tokio::spawn(group_controller),
        ];
        Operator {
            stores,
            shutdown,
            tasks,
        }
    }

    /// The caches (for the REST API and for tests).
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Waits until every cache has done its first list.
    pub async fn wait_for_caches(&self) {
        let _ = futures::join!(
            self.stores.platforms.wait_until_ready(),
            self.stores.groups.wait_until_ready(),
            self.stores.deployments.wait_until_ready(),
            self.stores.configmaps.wait_until_ready(),
            self.stores.pods.wait_until_ready(),
        );
    }

    /// Stops both controllers: reconciles in flight finish, no new ones start.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stops at once, as a crash would (for tests of restarts).
    pub fn abort(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// An API for one namespace, or for all.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The dependents and dependencies of `changed` (and, under a start limit, its fellow group
/// members waiting for a slot).
fn related_platforms(ctx: &Context, changed: &Platform) -> Vec<ObjectRef<Platform>> {
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
        .into_iter()
        .map(|k| ObjectRef::new(&k.name).within(&k.namespace))
        .collect()
}

/// Fans a platform's relevant changes out to its neighbours and groups, and keeps the topology
/// version current. Works on raw watch events: a (re)list queues every platform anyway, so its
/// objects only update the bookkeeping, and the topology is rebuilt once when the list is done
/// (not once per object: that would be quadratic at startup).
struct PlatformTap {
    ctx: Arc<Context>,
    related_tx: mpsc::UnboundedSender<ObjectRef<Platform>>,
    groups_tx: mpsc::UnboundedSender<ObjectRef<PlatformGroup>>,
    /// What neighbours react to, per platform, as last seen.
    seen: HashMap<NodeKey, u64>,
    /// What shapes the topology, per platform, as last seen.
    shapes: HashMap<NodeKey, u64>,
}

impl PlatformTap {
    fn observe(&mut self, event: &watcher::Event<Platform>) {
        match event {
            watcher::Event::Init => {}
            watcher::Event::InitApply(platform) => {
                let key = key_of(platform);
                self.shapes.insert(key.clone(), shape_signature(platform));
                self.seen.insert(key, neighbour_signature(platform));
            }
            watcher::Event::InitDone => self.ctx.topology_changed(),
            watcher::Event::Apply(platform) => {
                let key = key_of(platform);
                let (shape, signature) = (shape_signature(platform), neighbour_signature(platform));
                if self.shapes.insert(key.clone(), shape) != Some(shape) {
                    self.ctx.topology_changed();
                }
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
    }

    fn fan_out(&self, platform: &Platform) {
        for related in related_platforms(&self.ctx, platform) {
            let _ = self.related_tx.unbounded_send(related);
        }
        for group in groups_of(&self.ctx, platform) {
            let _ = self.groups_tx.unbounded_send(group);
        }
    }
}

/// What a platform's neighbours and groups react to: its spec, labels, deletion, restart
/// requests, phase and readiness.
fn neighbour_signature(platform: &Platform) -> u64 {
    use std::hash::{Hash, Hasher};
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

/// A (re)list replaces a cache wholesale once it completes, without an event per object that
/// disappeared: the topology must be rebuilt then.
fn relisted<K>(ctx: &Context, event: &Result<watcher::Event<K>, watcher::Error>) {
    if matches!(event, Ok(watcher::Event::InitDone)) {
        ctx.topology_changed();
    }
}

/// What shapes the topology: identity, the spec (dependencies, desired state), labels and
/// deletion.
fn shape_signature(platform: &Platform) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
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

/// Reconcile errors become Warning events on the Platform, in this one place.
async fn report_platform_error(
    ctx: &Context,
    result: Result<
        (ObjectRef<Platform>, kube::runtime::controller::Action),
        ControllerError<Error, watcher::Error>,
    >,
) {
    let Err(error) = result else {
        return;
    };
    match error {
        ControllerError::ReconcilerFailed(error, object) => {
            tracing::warn!(platform = %object, category = error.category(), %error, "reconcile failed");
            let Some(namespace) = object.namespace.clone() else {
                return;
            };
            let object_ref = ObjectRef::<Platform>::new(&object.name).within(&namespace);
            let Some(platform) = ctx.stores.platforms.get(&object_ref) else {
                return;
            };
            let reference: ObjectReference = platform.object_ref(&());
            let event = Event {
                type_: EventType::Warning,
                reason: error.category().to_string(),
                note: Some(error.to_string()),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(publish_error) = ctx.recorder.publish(&event, &reference).await {
                tracing::warn!(%publish_error, "failed to publish a reconcile error event");
            }
        }
        other => tracing::debug!(error = %other, "controller event"),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    {
        let ctrl_c = tokio::signal::ctrl_c().map(|_| ());
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
}
