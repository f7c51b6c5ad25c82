//! Warning Events on the platforms' pods (the kubelet's `Unhealthy`, `BackOff`, `OOMKilling`,
//! `Failed`; the scheduler's `FailedScheduling`; ...) as a source of supervision: each queues
//! its platform at the urgency its reason calls for, and the platform's latest warnings are
//! part of the evidence of what supervision finds. The Events are watched, not cached: the
//! table keeps a few recent warnings per platform, and a warning older than
//! [`WARNING_TTL`] is evidence of nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::graph::NodeKey;

use super::context::Context;
use super::tap::platform_of_pod;
use super::triage::Urgency;

/// How long a warning counts as evidence.
pub const WARNING_TTL: Duration = Duration::from_secs(600);
/// Warnings kept per platform (distinct reasons, the latest of each).
const KEPT_PER_PLATFORM: usize = 5;

/// One Warning Event on one of the platform's pods, as last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct PodWarning {
    pub pod: String,
    pub reason: String,
    pub message: String,
    /// How often the source saw it (the Event's count or series count).
    pub count: i32,
    pub last_seen: Timestamp,
}

impl PodWarning {
    /// One evidence line.
    pub fn describe(&self) -> String {
        let times = if self.count > 1 {
            format!(" (×{})", self.count)
        } else {
            String::new()
        };
        format!(
            "Warning {}{times} on pod {} at {}: {}",
            self.reason, self.pod, self.last_seen, self.message
        )
    }
}

/// The recent warnings of each platform.
#[derive(Default)]
pub struct Warnings {
    table: Mutex<HashMap<NodeKey, VecDeque<PodWarning>>>,
}

impl Warnings {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<NodeKey, VecDeque<PodWarning>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `warning` as the latest of its reason for `platform`.
    pub fn record(&self, platform: NodeKey, warning: PodWarning) {
        let mut table = self.table();
        let kept = table.entry(platform).or_default();
        kept.retain(|w| w.reason != warning.reason);
        if kept.len() == KEPT_PER_PLATFORM {
            kept.pop_front();
        }
        kept.push_back(warning);
    }

    /// `platform`'s warnings seen within [`WARNING_TTL`] of `now`, oldest first.
    pub fn recent(&self, platform: &NodeKey, now: Timestamp) -> Vec<PodWarning> {
        let table = self.table();
        let Some(kept) = table.get(platform) else {
            return Vec::new();
        };
        kept.iter()
            .filter(|w| is_recent(w.last_seen, now))
            .cloned()
            .collect()
    }

    pub fn forget(&self, platform: &NodeKey) {
        self.table().remove(platform);
    }

    /// Platforms with warnings kept.
    pub fn platforms(&self) -> usize {
        self.table().len()
    }
}

fn is_recent(seen: Timestamp, now: Timestamp) -> bool {
    now.as_second() - seen.as_second() <= WARNING_TTL.as_secs() as i64
}

/// How urgently a warning's platform must be looked at.
pub fn warning_urgency(reason: &str) -> Urgency {
    match reason {
        "OOMKilling" | "Evicted" => Urgency::Resource,
        "Unhealthy"
        | "BackOff"
        | "Failed"
        | "FailedScheduling"
        | "FailedMount"
        | "FailedCreatePodSandBox"
        | "InspectFailed"
        | "ErrImageNeverPull" => Urgency::Health,
        _ => Urgency::Change,
    }
}

/// What a Warning Event says, if it is one about a pod.
pub fn pod_warning(event: &Event) -> Option<(ObjectRef<Pod>, PodWarning)> {
    let involved = &event.involved_object;
    if involved.kind.as_deref() != Some("Pod") || event.type_.as_deref() != Some("Warning") {
        return None;
    }
    let name = involved.name.clone()?;
    let namespace = involved
        .namespace
        .clone()
        .or_else(|| event.metadata.namespace.clone())?;
    let last_seen = event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))?;
    let count = event
        .series
        .as_ref()
        .and_then(|s| s.count)
        .or(event.count)
        .unwrap_or(1);
    let warning = PodWarning {
        pod: name.clone(),
        reason: event.reason.clone().unwrap_or_default(),
        message: event.message.clone().unwrap_or_default(),
        count,
        last_seen,
    };
    Some((ObjectRef::new(&name).within(&namespace), warning))
}

/// Watches the Warning Events on pods until `stop`: records each recent one of a platform's
/// pod and queues the platform. A watch error is retried with back-off; where Events cannot
/// be watched, supervision goes on without them.
pub async fn watch_warnings(
    ctx: Arc<Context>,
    client: Client,
    namespace: Option<String>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Event> = match &namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    let config = watcher::Config::default().fields("involvedObject.kind=Pod,type=Warning");
    let events = watcher(api, config).default_backoff().applied_objects();
    futures::pin_mut!(events);
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = stop.wait_for(|stopping| *stopping) => return,
        };
        match next {
            Some(Ok(event)) => observe_warning(&ctx, &event),
            Some(Err(error)) => tracing::debug!(%error, "the Warning Event watch failed; retrying"),
            None => return,
        }
    }
}

/// Records a Warning Event about one of a platform's pods and queues the platform.
pub fn observe_warning(ctx: &Context, event: &Event) {
    let Some((pod, warning)) = pod_warning(event) else {
        return;
    };
    if !is_recent(warning.last_seen, ctx.clock.now()) {
        return;
    }
    let Some(platform) = ctx
        .stores
        .pods
        .get(&pod)
        .and_then(|pod| platform_of_pod(&pod))
    else {
        return;
    };
    let urgency = warning_urgency(&warning.reason);
    ctx.warnings.record(platform.clone(), warning);
    ctx.triage.push(platform, urgency);
}

#[cfg(test)]
mod tests;
