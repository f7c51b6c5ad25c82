//! What happened in a test's namespace, recorded by the harness itself from watches, so that the
//! same assertions run on the simulator and on a real API server (which has no write history).
//!
//! [`Recorder::start`] lists each recorded kind in the namespace (empty: it is new) and then
//! watches it from the list's resourceVersion, before the test applies anything. Every ADDED,
//! MODIFIED and DELETED event is kept with its object and resourceVersion; bookmarks only move
//! the resume point. resourceVersions are opaque by contract, but both the simulator and
//! etcd-backed API servers hand out one increasing integer per write across all resources,
//! which is what orders events of different kinds: the recorder parses them as integers and
//! panics if a server does not. A watch that ends is resumed from the last version seen; one
//! that expired (410) is a gap, and [`Recorder::history`] refuses to answer after a gap rather
//! than answer from an incomplete log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use platform_operator::crd::{Platform, PlatformGroup};

use super::history::History;
use super::view::View;

/// The kinds recorded: everything the operator reads or writes in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Platform,
    PlatformGroup,
    Deployment,
    Pod,
    ConfigMap,
    /// `events.k8s.io/v1` Events (the operator's audit trail).
    Event,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Platform,
        Kind::PlatformGroup,
        Kind::Deployment,
        Kind::Pod,
        Kind::ConfigMap,
        Kind::Event,
    ];

    fn resource(self) -> ApiResource {
        match self {
            Kind::Platform => ApiResource::erase::<Platform>(&()),
            Kind::PlatformGroup => ApiResource::erase::<PlatformGroup>(&()),
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::Pod => ApiResource::erase::<Pod>(&()),
            Kind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            Kind::Event => ApiResource::erase::<Event>(&()),
        }
    }
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Added,
    Modified,
    Deleted,
}

/// One watch event: a version of an object (for `Deleted`, its last state, with the
/// resourceVersion of the deletion).
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub kind: Kind,
    pub action: Action,
    pub name: String,
    pub object: Value,
}

impl Change {
    pub fn is(&self, kind: Kind) -> bool {
        self.kind == kind
    }

    pub fn deleted(&self) -> bool {
        self.action == Action::Deleted
    }
}

#[derive(Default)]
struct Log {
    changes: Vec<Change>,
    /// The last change of each object: its resourceVersion and whether it was a deletion.
    last: BTreeMap<(Kind, String), (u64, bool)>,
    /// The current state of every object that exists.
    objects: BTreeMap<(Kind, String), Value>,
    /// Watches that expired: events are missing from the log.
    gaps: Vec<String>,
}

struct Shared {
    log: Mutex<Log>,
    /// Bumped on every recorded change.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, kind: Kind, action: Action, object: DynamicObject) {
        let rv = parse_rv(object.resource_version().as_deref());
        let name = object.name_any();
        let object = serde_json::to_value(&object).expect("objects serialize");
        {
            let mut log = self.log();
            let key = (kind, name.clone());
            log.last
                .insert(key.clone(), (rv, action == Action::Deleted));
            if action == Action::Deleted {
                log.objects.remove(&key);
            } else {
                log.objects.insert(key, object.clone());
            }
            log.changes.push(Change {
                rv,
                kind,
                action,
                name,
                object,
            });
        }
        self.changed.send_modify(|n| *n += 1);
    }
}

fn parse_rv(rv: Option<&str>) -> u64 {
    let rv = rv.unwrap_or_default();
    rv.parse().unwrap_or_else(|_| {
        panic!("resourceVersion {rv:?} is not an integer: this harness orders events by it")
    })
}

/// The watches of one namespace and what they recorded.
pub struct Recorder {
    client: Client,
    namespace: String,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Recorder {
    /// Lists and starts watching every [`Kind`] in `namespace`; returns once the watches start
    /// from those lists, so nothing written after this returns is missed.
    pub async fn start(client: Client, namespace: &str) -> Recorder {
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            log: Mutex::new(Log::default()),
            changed,
        });
        let mut tasks = Vec::new();
        for kind in Kind::ALL {
            let api = api(&client, namespace, kind);
            let list = api.list(&ListParams::default()).await.unwrap_or_else(|e| {
                panic!("listing {kind:?} in {namespace} to start recording: {e}")
            });
            for object in list.items {
                shared.record(kind, Action::Added, object);
            }
            let rv = list.metadata.resource_version.unwrap_or_default();
            tasks.push(tokio::spawn(watch_kind(api, kind, rv, shared.clone())));
        }
        Recorder {
            client,
            namespace: namespace.to_string(),
            shared,
            tasks,
        }
    }

    /// The current state of every object, as the watches last showed it.
    pub fn view(&self) -> View {
        View::new(self.shared.log().objects.clone())
    }

    /// A receiver that sees every recorded change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    /// Number of changes recorded so far.
    pub fn len(&self) -> usize {
        self.shared.log().changes.len()
    }

    /// Everything recorded, ordered by resourceVersion, once the watches have caught up with
    /// the API server's current state (see [`Recorder::sync`]).
    pub async fn history(&self) -> History {
        self.sync(Duration::from_secs(30)).await;
        let log = self.shared.log();
        assert!(
            log.gaps.is_empty(),
            "the recorded history has gaps: {:?}",
            log.gaps
        );
        let mut changes = log.changes.clone();
        changes.sort_by_key(|c| c.rv);
        History::new(changes)
    }

    /// Waits until the watches have delivered everything a fresh list of each kind shows: every
    /// listed object at its listed version or later, and no object the log still has that the
    /// list says was deleted before it. Panics after `timeout`.
    pub async fn sync(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        for kind in Kind::ALL {
            let list = api(&self.client, &self.namespace, kind)
                .list(&ListParams::default())
                .await
                .unwrap_or_else(|e| panic!("listing {kind:?} to sync the recorder: {e}"));
            let list_rv = parse_rv(list.metadata.resource_version.as_deref());
            let listed: BTreeMap<String, u64> = list
                .items
                .iter()
                .map(|o| (o.name_any(), parse_rv(o.resource_version().as_deref())))
                .collect();
            loop {
                let mut changed = self.subscribe();
                let behind = self.behind(kind, list_rv, &listed);
                if behind.is_empty() {
                    break;
                }
                if tokio::time::timeout_at(deadline, changed.changed())
                    .await
                    .is_err()
                {
                    panic!("the {kind:?} watch did not catch up with a list: {behind:?}");
                }
            }
        }
    }

    /// What the log lacks compared with a list of `kind` taken at `list_rv`.
    fn behind(&self, kind: Kind, list_rv: u64, listed: &BTreeMap<String, u64>) -> Vec<String> {
        let log = self.shared.log();
        let mut behind = Vec::new();
        for (name, rv) in listed {
            match log.last.get(&(kind, name.clone())) {
                Some((seen, _)) if seen >= rv => {}
                seen => behind.push(format!("{name}: listed at {rv}, seen {seen:?}")),
            }
        }
        for ((k, name), (seen, deleted)) in &log.last {
            if *k == kind && !deleted && !listed.contains_key(name) && *seen <= list_rv {
                behind.push(format!("{name}: gone at {list_rv}, deletion not seen"));
            }
        }
        behind
    }

    /// Stops the watches.
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn api(client: &Client, namespace: &str, kind: Kind) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &kind.resource())
}

/// Watches `kind` from `rv` on, for as long as the test runs.
async fn watch_kind(api: Api<DynamicObject>, kind: Kind, mut rv: String, shared: Arc<Shared>) {
    let params = WatchParams::default().timeout(290);
    loop {
        let stream = match api.watch(&params, &rv).await {
            Ok(stream) => stream,
            Err(_) => {
                // A connection refused or reset: resume from the same version.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut stream = stream.boxed();
        loop {
            let event = match stream.try_next().await {
                Ok(Some(event)) => event,
                // The server closed the watch (timeout) or the connection broke: resume.
                Ok(None) | Err(_) => break,
            };
            let (action, object) = match event {
                WatchEvent::Added(o) => (Action::Added, o),
                WatchEvent::Modified(o) => (Action::Modified, o),
                WatchEvent::Deleted(o) => (Action::Deleted, o),
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(e) if e.code == 410 => {
                    shared
                        .log()
                        .gaps
                        .push(format!("{kind:?} watch expired at {rv}: {}", e.message));
                    rv = match api.list(&ListParams::default()).await {
                        Ok(list) => list.metadata.resource_version.unwrap_or_default(),
                        Err(_) => String::new(),
                    };
                    break;
                }
                WatchEvent::Error(_) => break,
            };
            if let Some(version) = object.resource_version() {
                rv = version;
            }
            shared.record(kind, action, object);
        }
    }
}
