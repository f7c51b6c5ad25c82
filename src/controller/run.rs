//! Wiring: the watches, the shared caches, both controllers, the Event publisher and graceful
//! shutdown. Each watch is built by a named function that feeds its tap; each controller by
//! one that says what triggers it.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, Stream, StreamExt, future};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, reflector, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alerts::{AlertSettings, Alerter};
use crate::crd::{Platform, PlatformGroup};
use crate::graph::NodeKey;

use super::build::{MANAGED_BY, MANAGED_BY_LABEL, PLATFORM_LABEL};
use super::clock::{Clock, SystemClock};
use super::context::{Context, Stores};
use super::drain::{Forward, drained};
use super::events::{EventQueue, FailedKind, publish_events};
use super::health::{ControllerKind, DEFAULT_STUCK_AFTER};
use super::leader::Leadership;
use super::tap::{DeploymentTap, GroupTap, PlatformTap, observe_pod};
use super::triage::Triage;
use super::usage::{DEFAULT_USAGE_INTERVAL, DEFAULT_USAGE_THRESHOLD, poll_usage};
use super::warnings::watch_warnings;
use super::{group, platform, trim};

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
    /// `/healthz` fails when reconciles are in flight and none finished for this long.
    pub stuck_after: Duration,
    /// Whether this instance leads; only the leader reconciles (and its client's write gate
    /// lets only the leader write). Always without leader election.
    pub leadership: Arc<Leadership>,
    /// How alerts are delivered.
    pub alerts: AlertSettings,
    /// How often resource usage is read from the metrics API, and the fraction of a limit
    /// that counts as exceeded.
    pub usage_interval: Duration,
    pub usage_threshold: f64,
}

/// Reconciles at once per controller unless configured: enough to keep a busy API server fed,
/// few enough that 10,000 platforms queued at start-up do not become 10,000 requests at once.
pub const DEFAULT_CONCURRENCY: u16 = 32;

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            clock: Arc::new(SystemClock),
            concurrency: DEFAULT_CONCURRENCY,
            instance: None,
            stuck_after: DEFAULT_STUCK_AFTER,
            leadership: Leadership::always(),
            alerts: AlertSettings::default(),
            usage_interval: DEFAULT_USAGE_INTERVAL,
            usage_threshold: DEFAULT_USAGE_THRESHOLD,
        }
    }
}

/// A running operator.
pub struct Operator {
    ctx: Arc<Context>,
    shutdown: watch::Sender<bool>,
    /// Stops the Event publisher once the controllers have stopped.
    stop_publisher: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The reflector writers, each consumed by the watch that fills its store.
struct Writers {
    platforms: Writer<Platform>,
    groups: Writer<PlatformGroup>,
    deployments: Writer<Deployment>,
    configmaps: Writer<ConfigMap>,
    pods: Writer<Pod>,
}

fn caches() -> (Stores, Writers) {
    let (platforms, platforms_writer) = reflector::store::<Platform>();
    let (groups, groups_writer) = reflector::store::<PlatformGroup>();
    let (deployments, deployments_writer) = reflector::store::<Deployment>();
    let (configmaps, configmaps_writer) = reflector::store::<ConfigMap>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let stores = Stores {
        platforms,
        groups,
        deployments,
        configmaps,
        pods,
    };
    let writers = Writers {
        platforms: platforms_writer,
        groups: groups_writer,
        deployments: deployments_writer,
        configmaps: configmaps_writer,
        pods: pods_writer,
    };
    (stores, writers)
}

impl Operator {
    /// Starts the watches, both controllers and the error reporter on the current Tokio runtime.
    pub fn start(client: Client, config: OperatorConfig) -> Operator {
        let (stores, writers) = caches();
        let reporter = Reporter {
            controller: super::FIELD_MANAGER.into(),
            instance: config.instance.clone(),
        };
        let (events, pending_events) = EventQueue::new();
        let (stop_publisher, publisher_stop) = watch::channel(false);
        let publisher = publish_events(
            Recorder::new(client.clone(), reporter),
            stores.clone(),
            pending_events,
            publisher_stop.clone(),
        );
        let mut ctx = Context::new(client.clone(), stores, events.clone(), config.clock.clone());
        ctx.health.stuck_after = config.stuck_after;
        ctx.leadership = config.leadership.clone();
        let (alerter, alert_delivery) = Alerter::new(
            client.clone(),
            config.alerts.clone(),
            ctx.metrics.clone(),
            publisher_stop.clone(),
        );
        ctx.alerter = Some(alerter);
        ctx.usage_threshold = config.usage_threshold;
        ctx.triage = Triage::new(
            match config.concurrency {
                0 => usize::from(DEFAULT_CONCURRENCY),
                n => usize::from(n),
            },
            ctx.metrics.triage.clone(),
        );
        let ctx = Arc::new(ctx);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (groups_tx, groups_rx) = mpsc::unbounded();
        let errors = events;
        let usage_poll = poll_usage(
            ctx.clone(),
            config.namespace.clone(),
            config.usage_interval,
            config.usage_threshold,
            shutdown_rx.clone(),
        );
        let warnings = watch_warnings(
            ctx.clone(),
            client.clone(),
            config.namespace.clone(),
            shutdown_rx.clone(),
        );
        let controller_config = ControllerConfig::default().concurrency(config.concurrency);
        let namespace = config.namespace.as_deref();

        let group_stream = drained(
            group_events(
                scoped(&client, namespace),
                writers.groups,
                GroupTap::new(ctx.clone(), groups_tx.clone()),
            ),
            Forward::Items,
        );
        let platform_controller = platform_controller(
            &client,
            namespace,
            writers.platforms,
            writers.deployments,
            writers.configmaps,
            writers.pods,
            &ctx,
            groups_tx,
            controller_config.clone(),
            until_true(shutdown_rx.clone()),
        );
        let group_controller = Controller::for_stream(group_stream, ctx.stores.groups.clone())
            .with_config(controller_config)
            .reconcile_on(groups_rx)
            .reconcile_all_on(config.leadership.became_leader())
            .graceful_shutdown_on(until_true(shutdown_rx))
            .run(
                |group, ctx: Arc<Context>| async move {
                    if !ctx.leadership.is_leader() {
                        return Ok(Action::await_change());
                    }
                    let _in_flight = ctx.health.group.begin();
                    group::reconcile(group, ctx.clone()).await
                },
                group::error_policy,
                ctx.clone(),
            );
        let platform_errors = errors.clone();
        let platform_metrics = ctx.metrics.clone();
        let triage = ctx.triage.clone();
        let platform_task = platform_controller.for_each(move |result| {
            if let Some(platform) = reconciled(&result) {
                triage.finished(&platform);
            }
            count_reconcile(&platform_metrics, "platform", &result);
            platform_errors.report(FailedKind::Platform, &result);
            future::ready(())
        });
        let group_metrics = ctx.metrics.clone();
        let group_task = group_controller.for_each(move |result| {
            count_reconcile(&group_metrics, "platformgroup", &result);
            errors.report(FailedKind::PlatformGroup, &result);
            future::ready(())
        });

        let tasks = vec![
            tokio::spawn(supervised(
                ctx.clone(),
                ControllerKind::Platform,
                platform_task,
            )),
            tokio::spawn(supervised(
                ctx.clone(),
                ControllerKind::PlatformGroup,
                group_task,
            )),
            tokio::spawn(publisher),
            tokio::spawn(alert_delivery),
            tokio::spawn(usage_poll),
            tokio::spawn(warnings),
        ];
        Operator {
            ctx,
            shutdown,
            stop_publisher,
            tasks,
        }
    }

    /// The caches (for the REST API and for tests).
    pub fn stores(&self) -> &Stores {
        &self.ctx.stores
    }

    /// The shared context (its tables, health and caches), for the HTTP server and for tests.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Waits until every cache has done its first list.
    pub async fn wait_for_caches(&self) {
        self.ctx.stores.wait_until_synced().await;
    }

    /// Stops both controllers: reconciles in flight finish, no new ones start.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let mut tasks = self.tasks.into_iter();
        // The controllers first, so that the Events of their last reconciles are published.
        for task in tasks.by_ref().take(2) {
            let _ = task.await;
        }
        let _ = self.stop_publisher.send(true);
        for task in tasks {
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

/// Runs a controller's task and records when its stream ends, for `/healthz`: also when the
/// task panics or is aborted (the guard is dropped with the future).
async fn supervised(ctx: Arc<Context>, kind: ControllerKind, task: impl Future<Output = ()>) {
    struct EndGuard(Arc<Context>, ControllerKind);
    impl Drop for EndGuard {
        fn drop(&mut self) {
            self.0.health.of(self.1).mark_ended();
        }
    }
    ctx.health.of(kind).mark_started();
    let _guard = EndGuard(ctx.clone(), kind);
    task.await;
}

/// Counts a finished reconcile by its result: `ok`, the error's category, or `watch` for an
/// error of the controller's watches.
fn count_reconcile<K: Resource>(
    metrics: &crate::metrics::Metrics,
    controller: &'static str,
    result: &Result<
        (ObjectRef<K>, kube::runtime::controller::Action),
        kube::runtime::controller::Error<super::Error, watcher::Error>,
    >,
) {
    let result = match result {
        Ok(_) => "ok",
        Err(kube::runtime::controller::Error::ReconcilerFailed(error, _)) => error.category(),
        Err(_) => "watch",
    };
    metrics
        .reconciles
        .get_or_create(&crate::metrics::ReconcileLabels { controller, result })
        .inc();
}

/// The platform a controller result is about (a finished reconcile, failed or not, or one
/// skipped because the platform is gone).
fn reconciled(
    result: &Result<
        (ObjectRef<Platform>, kube::runtime::controller::Action),
        kube::runtime::controller::Error<super::Error, watcher::Error>,
    >,
) -> Option<NodeKey> {
    use kube::runtime::controller::Error as Failed;
    let (namespace, name) = match result {
        Ok((reference, _)) => (&reference.namespace, &reference.name),
        Err(Failed::ReconcilerFailed(_, reference) | Failed::ObjectNotFound(reference)) => {
            (&reference.namespace, &reference.name)
        }
        Err(_) => return None,
    };
    Some(NodeKey::new(
        namespace.clone().unwrap_or_default(),
        name.clone(),
    ))
}

async fn until_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stopping| *stopping).await;
}

/// The Platform controller: triggered by its Platforms, their Deployments, ConfigMaps and pods,
/// and by the neighbours and groups the taps queue.
#[allow(clippy::too_many_arguments)]
fn platform_controller<S: Future<Output = ()> + Send + Sync + 'static>(
    client: &Client,
    namespace: Option<&str>,
    platforms: Writer<Platform>,
    deployments: Writer<Deployment>,
    configmaps: Writer<ConfigMap>,
    pods: Writer<Pod>,
    ctx: &Arc<Context>,
    groups_tx: mpsc::UnboundedSender<ObjectRef<PlatformGroup>>,
    config: ControllerConfig,
    shutdown: S,
) -> impl Stream<
    Item = Result<
        (ObjectRef<Platform>, kube::runtime::controller::Action),
        kube::runtime::controller::Error<super::Error, watcher::Error>,
    >,
> + Send
+ use<S> {
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let tap = PlatformTap::new(ctx.clone(), groups_tx);
    let platform_stream = platform_events(scoped(client, namespace), platforms, tap);
    let mut deployment_tap = DeploymentTap::new(ctx.clone());
    // Each watch is read by a task of its own (see `drain`): its cache and taps stay current
    // while every reconcile slot is busy, and an unread watch cannot hold up the others.
    let deployment_stream = drained(
        watched(
            scoped(client, namespace),
            deployments,
            managed.clone(),
            trim::deployment,
        )
        .inspect(move |event| {
            if let Ok(event) = event {
                deployment_tap.observe(event);
            }
        }),
        Forward::Nothing,
    );
    let configmap_stream = drained(
        watched(
            scoped(client, namespace),
            configmaps,
            managed,
            trim::config_map,
        ),
        Forward::Items,
    )
    .touched_objects();
    let pod_ctx = ctx.clone();
    // Pods queue their platform through the triage (`observe_pod`: only changes that matter,
    // most urgent first); the controller gets nothing from their watch.
    let pod_stream = drained(
        watched(
            scoped(client, namespace),
            pods,
            watcher::Config::default().labels(PLATFORM_LABEL),
            trim::pod,
        )
        .inspect(move |event| {
            if let Ok(event) = event {
                observe_pod(&pod_ctx, event);
            }
        }),
        Forward::Nothing,
    );

    // Every Platform trigger, its own changes included, goes through the triage (the tap
    // pushes them, see `PlatformTap::observe`): the watch only keeps the cache, so that a
    // startup wave is served in wave order rather than in listing order.
    let platform_stream = drained(platform_stream, Forward::Nothing);
    // Nothing is handed out before every cache has listed: a reconcile on a partial cache
    // only requeues itself, and would do so in kube-runtime's order, not the triage's.
    let stores = ctx.stores.clone();
    let triage = ctx.triage.clone();
    let triggers = futures::stream::once(async move {
        stores.wait_until_synced().await;
        triage.releases()
    })
    .flatten();

    Controller::for_stream(platform_stream, ctx.stores.platforms.clone())
        .with_config(config)
        .owns_stream(configmap_stream)
        // Deployments and pods queue their platform through the triage (their taps); the
        // controller holds their streams only so that dropping it ends their watch tasks.
        .watches_stream(deployment_stream.touched_objects(), |_: Deployment| {
            None::<ObjectRef<Platform>>
        })
        .watches_stream(pod_stream.touched_objects(), |_: Pod| {
            None::<ObjectRef<Platform>>
        })
        .reconcile_on(triggers)
        .reconcile_all_on(ctx.leadership.became_leader())
        .graceful_shutdown_on(shutdown)
        .run(
            |platform, ctx: Arc<Context>| async move {
                // A standby keeps its caches and does nothing else; on becoming leader it
                // reconciles everything (`reconcile_all_on`).
                if !ctx.leadership.is_leader() {
                    return Ok(Action::await_change());
                }
                let _in_flight = ctx.health.platform.begin();
                platform::reconcile(platform, ctx.clone()).await
            },
            platform::error_policy,
            ctx.clone(),
        )
}

/// The Platform watch, feeding its cache and its tap.
fn platform_events(
    api: Api<Platform>,
    writer: Writer<Platform>,
    mut tap: PlatformTap,
) -> impl Stream<Item = Result<Platform, watcher::Error>> + Send {
    watched(api, writer, watcher::Config::default(), trim::platform)
        .inspect(move |event| {
            if let Ok(event) = event {
                tap.observe(event);
            }
        })
        .touched_objects()
}

/// The PlatformGroup watch (the only one: it feeds the group controller, and its tap queues
/// the members a change concerns for the Platform controller).
fn group_events(
    api: Api<PlatformGroup>,
    writer: Writer<PlatformGroup>,
    mut tap: GroupTap,
) -> impl Stream<Item = Result<PlatformGroup, watcher::Error>> + Send {
    watched(api, writer, watcher::Config::default(), trim::group)
        .inspect(move |event| {
            if let Ok(event) = event {
                tap.observe(event);
            }
        })
        .touched_objects()
}

/// A watch with backoff that keeps `writer`'s cache, as raw events (re-lists included); the
/// cache keeps of each object what `trim` leaves.
fn watched<K>(
    api: Api<K>,
    writer: Writer<K>,
    config: watcher::Config,
    trim: fn(&mut K),
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    reflector(writer, watcher(api, config).default_backoff().modify(trim))
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
