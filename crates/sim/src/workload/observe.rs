//! Observing the API server: reflector-backed caches that wake their controller loop on every
//! watch event that changed what it reads, and the shutdown signal the loops select on.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::Resource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use super::script::PREFIX;
use crate::SimClock;
use tokio::task::JoinHandle;

/// Starts a reflector for `api`; a watch event (or error) calls `wake.notify_one()` unless it
/// only changed what `relevant` leaves out (its digest of an object is unchanged), so that
/// routine updates (another party's annotation, say) do not make the loop look at everything.
pub fn cache<K>(
    api: Api<K>,
    wake: Arc<Notify>,
    relevant: fn(&K) -> u64,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut digests: HashMap<(Option<String>, Option<String>), u64> = HashMap::new();
        while let Some(event) = stream.next().await {
            let changed = match &event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    let key = (object.meta().namespace.clone(), object.meta().name.clone());
                    let digest = relevant(object);
                    digests.insert(key, digest) != Some(digest)
                }
                Ok(watcher::Event::Delete(object)) => {
                    let key = (object.meta().namespace.clone(), object.meta().name.clone());
                    digests.remove(&key);
                    true
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => true,
                Err(error) => {
                    tracing::debug!(%error, "simulated workload watch failed; retrying");
                    true
                }
            };
            if changed {
                wake.notify_one();
            }
        }
    });
    (reader, task)
}

/// Every change is relevant: a digest of the object's resource version.
pub fn any_change<K: Resource>(object: &K) -> u64 {
    digest_of(&object.meta().resource_version)
}

/// What a simulated controller reads of a pod: all of it but the annotations of others than
/// the simulator (`sim.pmp.dev/`) and the bookkeeping of each write.
pub fn pod_digest(pod: &Pod) -> u64 {
    use std::hash::{Hash, Hasher};
    let meta = &pod.metadata;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.annotations
        .iter()
        .flatten()
        .filter(|(key, _)| key.starts_with(PREFIX))
        .for_each(|entry| entry.hash(&mut hasher));
    for owner in meta.owner_references.iter().flatten() {
        (&owner.uid, owner.controller).hash(&mut hasher);
    }
    serde_json::to_vec(&pod.spec)
        .unwrap_or_default()
        .hash(&mut hasher);
    serde_json::to_vec(&pod.status)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

fn digest_of(value: &impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(value)
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
