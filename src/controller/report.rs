//! Reconcile errors become Warning Events on their object, published in this one place, off
//! the controller streams: the controller hands each failure to a bounded queue and goes on, and
//! a task of its own publishes them. Publishing inside the controller's result stream would
//! pause every reconcile for one Events API round trip per failure (a whole client timeout
//! during an API outage).

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::controller::Error as ControllerError;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::mpsc;

use crate::crd::{Platform, PlatformGroup};

use super::context::Context;
use super::error::Error;

/// Failures waiting to be published; more than this during an outage are logged only.
pub const REPORT_QUEUE: usize = 256;

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

/// The controllers' side of the queue.
#[derive(Clone)]
pub struct ErrorReporter {
    queue: mpsc::Sender<Failure>,
}

impl ErrorReporter {
    /// The reporter and the receiving end for [`publish_failures`].
    pub fn new() -> (Self, mpsc::Receiver<Failure>) {
        let (queue, receiver) = mpsc::channel(REPORT_QUEUE);
        (Self { queue }, receiver)
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
        if self.queue.try_send(failure).is_err() {
            tracing::debug!("error event queue full: the failure above is logged, not published");
        }
    }
}

/// Publishes queued failures as Warning Events until every reporter is gone.
pub async fn publish_failures(ctx: Arc<Context>, mut failures: mpsc::Receiver<Failure>) {
    while let Some(failure) = failures.recv().await {
        let Some(reference) = object_reference(&ctx, &failure) else {
            continue;
        };
        let event = Event {
            type_: EventType::Warning,
            reason: failure.category.to_string(),
            note: Some(failure.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(publish_error) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%publish_error, "failed to publish a reconcile error event");
        }
    }
}

fn object_reference(ctx: &Context, failure: &Failure) -> Option<ObjectReference> {
    match failure.kind {
        FailedKind::Platform => {
            let key = ObjectRef::<Platform>::new(&failure.name).within(&failure.namespace);
            ctx.stores.platforms.get(&key).map(|p| p.object_ref(&()))
        }
        FailedKind::PlatformGroup => {
            let key = ObjectRef::<PlatformGroup>::new(&failure.name).within(&failure.namespace);
            ctx.stores.groups.get(&key).map(|g| g.object_ref(&()))
        }
    }
}
