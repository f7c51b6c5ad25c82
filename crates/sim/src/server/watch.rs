//! Watch streams: newline-delimited JSON events from a resourceVersion on, filtered by
//! namespace and selectors, with bookmarks, `timeoutSeconds`, and `410 Expired` (as an ERROR
//! event in a 200 stream, as the real server sends it) for versions older than the window.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::handlers::Selectors;
use super::{App, Req};
use crate::error::{ApiError, StatusCause};
use crate::registry::{Target, for_version};
use crate::store::{EventKind, WatchEvent};

/// Without `timeoutSeconds` the real server picks 30-60 minutes; this takes the lower bound.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Filter {
    group: String,
    plural: String,
    namespace: Option<String>,
    selectors: Selectors,
}

impl Filter {
    fn wants(&self, event: &WatchEvent) -> bool {
        event.key.group == self.group
            && event.key.plural == self.plural
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == event.key.namespace)
    }

    /// The event this watcher sees, if any: MODIFIED events crossing the selector become
    /// ADDED / DELETED.
    fn translate(&self, event: &WatchEvent) -> Option<&'static str> {
        if !self.wants(event) {
            return None;
        }
        let now = self.selectors.matches(&event.object);
        let before = event
            .previous
            .as_ref()
            .is_some_and(|p| self.selectors.matches(p));
        match event.kind {
            EventKind::Added => now.then_some("ADDED"),
            EventKind::Deleted => before.then_some("DELETED"),
            EventKind::Modified => match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            },
        }
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn gone(message: String) -> Bytes {
    line("ERROR", &ApiError::expired(message).to_status())
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::StreamExt::map(ReceiverStream::new(rx), Ok::<Bytes, std::io::Error>);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

pub fn watch(app: &Arc<App>, req: &Req, t: &Target<'_>) -> Result<Response, ApiError> {
    if req.param("sendInitialEvents").is_some() {
        // What a 1.33 server answers with the WatchList feature gate off.
        return Err(ApiError::invalid("ListOptions", "meta.k8s.io", "", vec![StatusCause {
            reason: "FieldValueForbidden".into(),
            message: "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled".into(),
            field: "sendInitialEvents".into(),
        }]));
    }
    let filter = Filter {
        group: t.def.group.clone(),
        plural: t.def.plural.clone(),
        namespace: t.namespace.clone(),
        selectors: Selectors::from_request(req, &t.def.kind)?,
    };
    let timeout = match req.param("timeoutSeconds") {
        Some(s) => Duration::from_secs(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {s}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let from = match req
        .param("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
    {
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
        None => None,
    };
    let bookmarks = req.flag("allowWatchBookmarks");
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let core = app.core.clone();
    let faults = app.faults.clone();

    if faults.take_gone() {
        let message = format!(
            "too old resource version: {} ({})",
            from.unwrap_or(0),
            core.store.resource_version()
        );
        let _ = tx.try_send(gone(message));
        return Ok(stream_response(rx));
    }
    let mut initial = Vec::new();
    let (start_rv, events) = match from {
        None => {
            let (rv, objects, events) = core
                .store
                .snapshot_and_subscribe(&filter.group, &filter.plural);
            for obj in objects.iter().filter(|o| filter.selectors.matches(o)) {
                if filter
                    .namespace
                    .as_deref()
                    .is_none_or(|ns| crate::registry::meta_str(obj, "namespace") == Some(ns))
                {
                    initial.push(line("ADDED", &for_version(obj, t)));
                }
            }
            (rv, events)
        }
        Some(rv) => match core.store.subscribe_from(rv) {
            Ok((backlog, events)) => {
                let mut seen = rv;
                for event in backlog {
                    seen = seen.max(event.rv);
                    if let Some(kind) = filter.translate(&event) {
                        initial.push(line(kind, &for_version(&event.object, t)));
                    }
                }
                (seen, events)
            }
            Err(compacted) => {
                let _ = tx.try_send(gone(format!(
                    "too old resource version: {rv} ({})",
                    compacted.oldest
                )));
                return Ok(stream_response(rx));
            }
        },
    };
    let clock = core.clock.clone();
    let started = clock.now();
    let deadline = add(started, timeout);
    let bookmark_every = app.bookmark_interval;
    let kind = t.def.kind.clone();
    let api_version = t.api_version();
    let user_agent = req.user_agent.clone();
    // Live lines go through a forwarder that holds each until it is due (watch delivery
    // latency faults), in order; bookmarks take the same path so that none overtakes an event.
    let (delayed_tx, delayed_rx) = mpsc::unbounded_channel::<(Timestamp, Bytes)>();
    tokio::spawn(forward_when_due(clock.clone(), delayed_rx, tx.clone()));
    tokio::spawn(async move {
        for bytes in initial {
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
        let mut events: broadcast::Receiver<Arc<WatchEvent>> = events;
        let mut last_rv = start_rv;
        let mut next_bookmark = add(clock.now(), bookmark_every);
        loop {
            // Fault injection may start cutting watches at any time, including this one.
            let cut_at = faults
                .config()
                .close_watch_every
                .map_or(deadline, |every| deadline.min(add(started, every)));
            let bookmark_wait = clock.sleep_until(next_bookmark);
            tokio::select! {
                received = events.recv() => match received {
                    Ok(event) => {
                        last_rv = last_rv.max(event.rv);
                        if let Some(kind) = filter.translate(&event) {
                            let mut object = (*event.object).clone();
                            object["apiVersion"] = json!(api_version);
                            let due = add(clock.now(), faults.watch_delay(&filter.plural, &user_agent));
                            if delayed_tx.send((due, line(kind, &object))).is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = delayed_tx.send((clock.now(), gone(format!("too old resource version: {last_rv}"))));
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = clock.sleep_until(cut_at) => return,
                // Re-reads the fault configuration now and then.
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = bookmark_wait, if bookmarks => {
                    let bookmark = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rv.to_string()}});
                    if delayed_tx.send((clock.now(), line("BOOKMARK", &bookmark))).is_err() {
                        return;
                    }
                    next_bookmark = add(clock.now(), bookmark_every);
                }
                _ = tx.closed() => return,
            }
        }
    });
    Ok(stream_response(rx))
}

/// Sends each line once it is due, in the order received; ends when either side is gone.
async fn forward_when_due(
    clock: crate::clock::SimClock,
    mut lines: mpsc::UnboundedReceiver<(Timestamp, Bytes)>,
    tx: mpsc::Sender<Bytes>,
) {
    while let Some((due, bytes)) = lines.recv().await {
        if clock.now() < due {
            clock.sleep_until(due).await;
        }
        if tx.send(bytes).await.is_err() {
            return;
        }
    }
}

fn add(ts: Timestamp, d: Duration) -> Timestamp {
    ts.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(ts)
}
