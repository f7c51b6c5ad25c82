//! Observing the API server: reflector-backed caches that wake their controller loop on every
//! watch event, and the shutdown signal the loops select on.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::Resource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use crate::SimClock;
use tokio::task::JoinHandle;

/// Starts a reflector for `api`; every watch event (or error) calls `wake.notify_one()`.
pub fn cache<K>(api: Api<K>, wake: Arc<Notify>) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(error) = event {
                tracing::debug!(%error, "simulated workload watch failed; retrying");
            }
            wake.notify_one();
        }
    });
    (reader, task)
}

/// Resolves once shutdown has been requested (or the handle is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Sleeps on the SimClock until `at` (forever for `None`). A time already past still waits a
/// millisecond of real time, so that a loop can never spin without yielding.
pub async fn sleep_until(clock: &SimClock, at: Option<Timestamp>) {
    match at {
        Some(at) if at > clock.now() => clock.sleep_until(at).await,
        Some(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
        None => std::future::pending().await,
    }
}
