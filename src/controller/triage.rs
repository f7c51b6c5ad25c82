//! Triage: the queue of the reconciles a platform's surroundings ask for (its Deployment, its
//! pods, its neighbours, its group, its resource usage), served most urgent first.
//!
//! kube-runtime's own queue is first come, first served. Under a storm of pod updates that
//! would put a dependency failure behind thousands of routine re-checks, so these triggers
//! wait here instead and are handed to the controller only as fast as it reconciles (at most
//! `capacity` handed and not yet finished): what waits, waits here, in order of urgency and
//! then age. Many triggers for one platform are one entry (coalesced, at the highest urgency
//! asked). The Platform watch itself (spec and status changes) and the timed requeues go to
//! the controller directly.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use crate::crd::Platform;
use crate::graph::NodeKey;

mod ranks;
use ranks::Ranks;

/// How soon a trigger must be served; the most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    /// A dependency failed or its circuit tripped: the dependents must stop.
    DependencyFailure,
    /// A pod shows a failed health check or an error.
    Health,
    /// A pod was OOM-killed, or usage crossed its threshold.
    Resource,
    /// The platform's own workload moved (its Deployment became ready, stopped being ready, or
    /// was deleted): its status must follow. Handed out ahead of the
    /// starts that readiness lets through, so that a dependency's `Ready` is, as a rule,
    /// written before its dependents' `Starting` (each written after their Deployment); the
    /// reconciles run side by side, so it is an order, not a guarantee. Not capped as routine
    /// work: a layer's `Ready` must not wait behind a backlog of re-checks.
    Workload,
    /// The platform may start now: it has no dependencies, or one just became ready. Ahead
    /// of routine work so that a startup wave does not wait behind the first look at every
    /// platform still blocked.
    Start,
    /// Anything else: a neighbour's state, a group, a healthy pod's update.
    Change,
}

impl Urgency {
    pub const ALL: [Urgency; 6] = [
        Urgency::DependencyFailure,
        Urgency::Health,
        Urgency::Resource,
        Urgency::Workload,
        Urgency::Start,
        Urgency::Change,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::DependencyFailure => "dependency_failure",
            Urgency::Health => "health",
            Urgency::Resource => "resource",
            Urgency::Workload => "workload",
            Urgency::Start => "start",
            Urgency::Change => "change",
        }
    }

    /// `Start` when the platform may start now, else routine.
    pub fn start_if(startable: bool) -> Urgency {
        if startable {
            Urgency::Start
        } else {
            Urgency::Change
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A handed-out trigger whose reconcile never reported back (it cannot happen with
/// kube-runtime, which reports every run, even of an object gone from its cache) stops holding
/// capacity after this long.
const HANDED_TIMEOUT: Duration = Duration::from_secs(60);

/// How one trigger was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub urgency: Urgency,
    /// From its first push to its hand-over to the controller.
    pub waited: Duration,
    /// Less urgent triggers, queued before it, that it went ahead of.
    pub overtook: usize,
}

#[derive(Debug, Clone, Copy)]
struct Queued {
    urgency: Urgency,
    seq: u64,
    since: Instant,
}

struct State {
    queued: HashMap<NodeKey, Queued>,
    order: BTreeSet<(Urgency, u64, NodeKey)>,
    /// The waiting triggers counted by urgency and age, for what an urgent release overtook.
    ranks: Ranks,
    /// Handed to the controller and not yet reported finished: when, and whether routine.
    handed: HashMap<NodeKey, (Instant, bool)>,
    next_seq: u64,
    /// The latest urgent releases (not `Change`), oldest first: what went ahead of what.
    urgent: VecDeque<(NodeKey, Release)>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            queued: HashMap::new(),
            order: BTreeSet::new(),
            ranks: Ranks::new(Urgency::ALL.len()),
            handed: HashMap::new(),
            next_seq: 0,
            urgent: VecDeque::new(),
        }
    }
}

impl State {
    /// Queues `platform` at `urgency` with sequence number `seq`.
    fn enqueue(&mut self, platform: NodeKey, urgency: Urgency, seq: u64) {
        self.order.insert((urgency, seq, platform));
        if !self.ranks.fits(seq) {
            let waiting = self.order.iter().map(|(u, s, _)| (u.index(), *s));
            self.ranks.rebuild(waiting, self.next_seq);
        } else {
            self.ranks.insert(urgency.index(), seq);
        }
    }

    /// Takes `platform`'s trigger out of the order.
    fn dequeue(&mut self, platform: &NodeKey, urgency: Urgency, seq: u64) {
        self.order.remove(&(urgency, seq, platform.clone()));
        self.ranks.remove(urgency.index(), seq);
    }

    /// Less urgent triggers, queued before `seq`, still waiting.
    fn older_and_less_urgent(&self, urgency: Urgency, seq: u64) -> usize {
        Urgency::ALL
            .into_iter()
            .filter(|u| *u > urgency)
            .map(|u| self.ranks.before(u.index(), seq))
            .sum()
    }
}

/// Urgent releases kept for inspection.
const URGENT_KEPT: usize = 256;

/// The queue; shared by the watch side (push) and the controller (releases, finished).
pub struct Triage {
    state: Mutex<State>,
    wake: Notify,
    capacity: usize,
    metrics: TriageMetrics,
}

impl Triage {
    /// A queue that hands out at most `capacity` triggers not yet finished (at least one).
    pub fn new(capacity: usize, metrics: TriageMetrics) -> Arc<Triage> {
        Arc::new(Triage {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            capacity: capacity.max(1),
            metrics,
        })
    }

    /// Routine triggers handed out at once: a quarter of the room (at least one), so that a
    /// backlog of routine work (the first look at a thousand blocked platforms, a storm of
    /// re-checks) leaves the rest to what is urgent, in the controller and at the API server.
    fn routine_capacity(&self) -> usize {
        (self.capacity / 4).max(1)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a reconcile of `platform`; a platform already waiting keeps its place and
    /// takes the higher of the two urgencies.
    pub fn push(&self, platform: NodeKey, urgency: Urgency) {
        self.metrics.triggers_of(urgency).inc();
        let mut state = self.state();
        match state.queued.get(&platform).copied() {
            Some(queued) if queued.urgency <= urgency => {
                self.metrics.coalesced.inc();
                return;
            }
            Some(queued) => {
                self.metrics.coalesced.inc();
                state.dequeue(&platform, queued.urgency, queued.seq);
                self.metrics.depth_of(queued.urgency).dec();
                state.enqueue(platform.clone(), urgency, queued.seq);
                state.queued.insert(platform, Queued { urgency, ..queued });
            }
            None => {
                let seq = state.next_seq;
                state.next_seq += 1;
                state.enqueue(platform.clone(), urgency, seq);
                state.queued.insert(
                    platform,
                    Queued {
                        urgency,
                        seq,
                        since: Instant::now(),
                    },
                );
            }
        }
        self.metrics.depth_of(urgency).inc();
        drop(state);
        self.wake.notify_one();
    }

    /// The next trigger to hand to the controller, if there is room for one: the most urgent,
    /// oldest first, skipping platforms whose last trigger is still being served.
    pub fn try_release(&self) -> Option<(NodeKey, Release)> {
        let mut state = self.state();
        let now = Instant::now();
        state
            .handed
            .retain(|_, (at, _)| now.duration_since(*at) < HANDED_TIMEOUT);
        if state.handed.len() >= self.capacity {
            return None;
        }
        let (urgency, seq, platform) = state
            .order
            .iter()
            .find(|(_, _, platform)| !state.handed.contains_key(platform))
            .cloned()?;
        let routine = urgency == Urgency::Change;
        if routine && state.handed.values().filter(|(_, r)| *r).count() >= self.routine_capacity() {
            return None;
        }
        state.dequeue(&platform, urgency, seq);
        let queued = state.queued.remove(&platform)?;
        let overtook = state.older_and_less_urgent(urgency, seq);
        let release = Release {
            urgency,
            waited: now.duration_since(queued.since),
            overtook,
        };
        state.handed.insert(platform.clone(), (now, routine));
        if urgency != Urgency::Change {
            if state.urgent.len() == URGENT_KEPT {
                state.urgent.pop_front();
            }
            state.urgent.push_back((platform.clone(), release));
        }
        drop(state);
        self.metrics.depth_of(urgency).dec();
        self.metrics
            .wait_seconds
            .get_or_create(&UrgencyLabels {
                urgency: urgency.as_str(),
            })
            .observe(release.waited.as_secs_f64());
        self.metrics
            .overtaken
            .inc_by(u64::try_from(overtook).unwrap_or(u64::MAX));
        Some((platform, release))
    }

    /// Waits for the next trigger to hand out.
    pub async fn release(&self) -> NodeKey {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some((platform, _)) = self.try_release() {
                return platform;
            }
            notified.await;
        }
    }

    /// The triggers as a stream for `Controller::reconcile_on`.
    pub fn releases(self: Arc<Self>) -> impl Stream<Item = ObjectRef<Platform>> + Send {
        futures::stream::unfold(self, |triage| async move {
            let platform = triage.release().await;
            let reference = ObjectRef::new(&platform.name).within(&platform.namespace);
            Some((reference, triage))
        })
    }

    /// A reconcile of `platform` finished (whatever triggered it): its hand-out, if any, no
    /// longer holds room.
    pub fn finished(&self, platform: &NodeKey) {
        if self.state().handed.remove(platform).is_some() {
            self.wake.notify_one();
        }
    }

    /// The latest urgent releases, oldest first (at most 256).
    pub fn urgent_releases(&self) -> Vec<(NodeKey, Release)> {
        self.state().urgent.iter().cloned().collect()
    }

    /// Triggers pushed so far (coalesced ones included).
    pub fn pushed(&self) -> u64 {
        Urgency::ALL
            .into_iter()
            .map(|urgency| self.metrics.triggers_of(urgency).get())
            .sum()
    }

    /// Triggers waiting, by urgency.
    pub fn depth(&self) -> [usize; Urgency::ALL.len()] {
        let mut depth = [0; Urgency::ALL.len()];
        for queued in self.state().queued.values() {
            depth[queued.urgency.index()] += 1;
        }
        depth
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UrgencyLabels {
    pub urgency: &'static str,
}

/// The queue's metrics: depth, wait and throughput by urgency.
#[derive(Clone)]
pub struct TriageMetrics {
    depth: Family<UrgencyLabels, Gauge>,
    triggers: Family<UrgencyLabels, Counter>,
    wait_seconds: Family<UrgencyLabels, Histogram>,
    coalesced: Counter,
    overtaken: Counter,
}

impl TriageMetrics {
    pub fn register(registry: &mut Registry) -> TriageMetrics {
        let metrics = TriageMetrics {
            depth: Family::default(),
            triggers: Family::default(),
            // 10 µs to ~20 s.
            wait_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.00001, 2.0, 21))
            }),
            coalesced: Counter::default(),
            overtaken: Counter::default(),
        };
        registry.register(
            "trigger_queue_depth",
            "Reconcile triggers waiting in the operator's queue, by urgency",
            metrics.depth.clone(),
        );
        registry.register(
            "trigger_queue_wait_seconds",
            "Time a reconcile trigger waited in the queue before it was handed to the controller, by urgency",
            metrics.wait_seconds.clone(),
        );
        registry.register(
            "triggers",
            "Reconcile triggers pushed, by urgency",
            metrics.triggers.clone(),
        );
        registry.register(
            "triggers_coalesced",
            "Reconcile triggers merged into one already waiting for the same platform",
            metrics.coalesced.clone(),
        );
        registry.register(
            "triggers_overtaken",
            "Less urgent waiting triggers that a more urgent one went ahead of",
            metrics.overtaken.clone(),
        );
        for urgency in Urgency::ALL {
            metrics.depth_of(urgency).set(0);
        }
        metrics
    }

    fn depth_of(&self, urgency: Urgency) -> Gauge {
        of(&self.depth, urgency)
    }

    fn triggers_of(&self, urgency: Urgency) -> Counter {
        of(&self.triggers, urgency)
    }
}

/// The metric of `family` for `urgency`.
fn of<M: Clone, C: MetricConstructor<M>>(
    family: &Family<UrgencyLabels, M, C>,
    urgency: Urgency,
) -> M {
    family
        .get_or_create(&UrgencyLabels {
            urgency: urgency.as_str(),
        })
        .clone()
}

impl Default for TriageMetrics {
    fn default() -> Self {
        TriageMetrics::register(&mut Registry::default())
    }
}

#[cfg(test)]
mod tests;
