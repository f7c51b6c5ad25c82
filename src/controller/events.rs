//! Kubernetes Events, published off the reconcile path by a task of their own: the audit
//! Events of control actions, and the Warning Events of reconcile errors (in this one place,
//! with the error's category as the reason). Publishing inline would hold a reconcile, or with
//! errors the whole controller stream, for one Events API round trip per Event (a whole
//! client timeout during an API outage).
//!
//! The queue is bounded: an audit Event waits for room (so memory stays bounded and no audit
//! Event is lost; the action is already in the status history and the audit log), an error
//! report that finds the queue full is logged only (errors repeat; their Events are a
//! convenience).

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::controller::Error as ControllerError;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::{mpsc, watch};

use crate::crd::{Platform, PlatformGroup};

use super::context::Stores;
use super::error::Error;

/// Events waiting to be published.
pub const EVENT_QUEUE: usize = 1024;
/// Events published at once.
const PUBLISHERS: usize = 8;

/// One failed reconcile, as it is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailedKind,
    pub namespace: String,
    pub name: String,
    pub category: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedKind {
    Platform,
    PlatformGroup,
}

/// What waits to be published.
pub enum Pending {
    Audit(Box<(ObjectReference, Event)>),
    Failure(Failure),
}

/// The reconciles' and controllers' side of the queue.
#[derive(Clone)]
pub struct EventQueue {
    queue: mpsc::Sender<Pending>,
}

impl EventQueue {
    /// The queue and the receiving end for [`publish_events`].
    pub fn new() -> (Self, mpsc::Receiver<Pending>) {
        let (queue, receiver) = mpsc::channel(EVENT_QUEUE);
        (Self { queue }, receiver)
    }

    /// Events waiting to be published.
    pub fn depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Queues an audit Event, waiting while the queue is full.
    pub async fn audit(&self, reference: ObjectReference, event: Event) {
        if self
            .queue
            .send(Pending::Audit(Box::new((reference, event))))
            .await
            .is_err()
        {
            tracing::debug!("event publisher stopped: audit Event not published");
        }
    }

    /// Logs a controller result and queues its failure for publishing; never waits.
    pub fn report<K: Resource>(
        &self,
        kind: FailedKind,
        result: &Result<
            (ObjectRef<K>, kube::runtime::controller::Action),
            ControllerError<Error, watcher::Error>,
        >,
    ) {
        let Err(error) = result else {
            return;
        };
        let ControllerError::ReconcilerFailed(error, object) = error else {
            tracing::debug!(%error, "controller event");
            return;
        };
        tracing::warn!(object = %object, category = error.category(), %error, "reconcile failed");
        let Some(namespace) = object.namespace.clone() else {
            return;
        };
        let failure = Failure {
            kind,
            namespace,
            name: object.name.clone(),
            category: error.category(),
            message: error.to_string(),
        };
        if self.queue.try_send(Pending::Failure(failure)).is_err() {
            tracing::debug!("error event queue full: the failure above is logged, not published");
        }
    }
}

/// Publishes queued Events until `stop` turns true, then what is still queued, then ends.
pub async fn publish_events(
    recorder: Recorder,
    stores: Stores,
    pending: mpsc::Receiver<Pending>,
    stop: watch::Receiver<bool>,
) {
    until_closed(pending, stop)
        .for_each_concurrent(PUBLISHERS, |pending| {
            let (recorder, stores) = (&recorder, &stores);
            async move {
                let (reference, event) = match pending {
                    Pending::Audit(audit) => *audit,
                    Pending::Failure(failure) => {
                        let Some(reference) = object_reference(stores, &failure) else {
                            return;
                        };
                        (reference, warning(&failure))
                    }
                };
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(%error, reason = event.reason, "failed to publish an Event");
                }
            }
        })
        .await;
}

/// The queue's items; once `stop` turns true the queue takes nothing more and ends when empty.
fn until_closed(
    pending: mpsc::Receiver<Pending>,
    stop: watch::Receiver<bool>,
) -> impl futures::Stream<Item = Pending> {
    futures::stream::unfold(
        (pending, stop, false),
        |(mut pending, mut stop, closed)| async move {
            if !closed {
                let received = tokio::select! {
                    item = pending.recv() => Some(item),
                    _ = stop.wait_for(|stopping| *stopping) => None,
                };
                match received {
                    Some(item) => return item.map(|p| (p, (pending, stop, false))),
                    None => pending.close(),
                }
            }
            pending.recv().await.map(|p| (p, (pending, stop, true)))
        },
    )
}

fn warning(failure: &Failure) -> Event {
    Event {
        type_: EventType::Warning,
        reason: failure.category.to_string(),
        note: Some(failure.message.clone()),
        action: "Reconcile".into(),
        secondary: None,
    }
}

fn object_reference(stores: &Stores, failure: &Failure) -> Option<ObjectReference> {
    match failure.kind {
        FailedKind::Platform => {
            let key = ObjectRef::<Platform>::new(&failure.name).within(&failure.namespace);
            stores.platforms.get(&key).map(|p| p.object_ref(&()))
        }
        FailedKind::PlatformGroup => {
            let key = ObjectRef::<PlatformGroup>::new(&failure.name).within(&failure.namespace);
            stores.groups.get(&key).map(|g| g.object_ref(&()))
        }
    }
}

#[cfg(test)]
mod tests;
