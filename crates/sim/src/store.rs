//! The in-memory object store.
//!
//! Objects are kept as JSON, keyed like etcd keys (group/plural/namespace/name) so lists come out
//! in the same order as on a real server. One global counter gives every write its
//! resourceVersion; each write appends to a bounded event log (the window a watch can resume
//! from, like etcd's compaction horizon) and to the write history tests assert on.
//!
//! All reads-modify-writes happen under one lock: request handling is synchronous apart from I/O,
//! so this gives the linearizable behaviour of a single etcd without optimistic retries.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use tokio::sync::broadcast;

use super::clock::SimClock;
use super::resources::ResourceRef;

/// etcd-like key of one object; `namespace` is empty for cluster-scoped objects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(group: &str, plural: &str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            group: group.into(),
            plural: plural.into(),
            namespace: namespace.unwrap_or_default().into(),
            name: name.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change, as retained for watches.
#[derive(Debug)]
pub struct WatchEvent {
    pub rv: u64,
    pub key: Key,
    pub kind: EventKind,
    pub object: Arc<Value>,
    /// The object before the change, so a filtered watch can turn a MODIFIED that leaves or
    /// enters its selector into DELETED / ADDED as the real watch cache does.
    pub previous: Option<Arc<Value>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteVerb {
    Create,
    Update,
    Patch,
    Apply,
    /// A DELETE request, or the final removal of an object (after finalizers or a grace period).
    Delete,
}

/// One successful write, in commit order.
#[derive(Clone, Debug)]
pub struct WriteRecord {
    pub seq: u64,
    pub sim_time: Timestamp,
    pub at: Instant,
    /// The field manager if the request named one, else the `User-Agent`; internal controllers
    /// of the simulator use their controller names (`generic-garbage-collector`, ...).
    pub actor: String,
    pub verb: WriteVerb,
    pub resource: ResourceRef,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub resource_version: u64,
    /// The object after the write (for a removal, the last state with its deletion RV).
    pub object: Arc<Value>,
}

impl WriteRecord {
    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Who writes and how, for the history and the watch event.
#[derive(Clone, Debug)]
pub struct WriteCtx {
    pub actor: String,
    pub verb: WriteVerb,
    pub resource: ResourceRef,
    pub subresource: Option<String>,
}

/// Resource usage of one pod, served by `metrics.k8s.io`.
#[derive(Clone, Debug, PartialEq)]
pub struct PodUsage {
    pub cpu: String,
    pub memory: String,
    pub sim_time: Timestamp,
}

struct State {
    objects: BTreeMap<Key, Arc<Value>>,
    rv: u64,
    log: VecDeque<Arc<WatchEvent>>,
    window: usize,
    /// Highest RV no longer in the log: a watch from below it cannot be served.
    compacted_rv: u64,
    writes: Vec<WriteRecord>,
    usage: HashMap<(String, String), PodUsage>,
    uid_seq: u64,
    uid_seed: u64,
}

/// The object store (cheap to share behind an `Arc`).
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    clock: SimClock,
}

/// Events retained after a resourceVersion, and the live feed that continues them.
pub type Subscription = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

/// Returned when a watch asks for a resourceVersion older than the retained window.
#[derive(Debug)]
pub struct Compacted {
    pub oldest: u64,
}

impl Store {
    pub fn new(clock: SimClock, window: usize, seed: u64) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                rv: 1,
                log: VecDeque::new(),
                window: window.max(1),
                compacted_rv: 1,
                writes: Vec::new(),
                usage: HashMap::new(),
                uid_seq: 0,
                uid_seed: seed,
            }),
            events,
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Writes to the state are completed before anything can panic, so a poisoned lock still
        // guards consistent data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` atomically with respect to every other store operation.
    pub fn transact<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
        let mut state = self.lock();
        let mut txn = Txn {
            state: &mut state,
            events: &self.events,
            clock: &self.clock,
        };
        f(&mut txn)
    }

    /// Current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// One object as stored, by resource type (the version is ignored: one storage per kind).
    pub fn get(
        &self,
        resource: &ResourceRef,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = Key::new(&resource.group, &resource.plural, namespace, name);
        self.lock().objects.get(&key).map(|v| (**v).clone())
    }

    /// All objects of a type, in one namespace or (with `None`) in all.
    pub fn list(&self, resource: &ResourceRef, namespace: Option<&str>) -> Vec<Value> {
        self.transact(|t| t.list(&resource.group, &resource.plural, namespace))
            .into_iter()
            .map(|v| (*v).clone())
            .collect()
    }

    /// The write history so far.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.lock().writes.clone()
    }

    /// Writes recorded after sequence number `seq` (cheaper than the whole history in loops).
    pub fn writes_since(&self, seq: u64) -> Vec<WriteRecord> {
        let state = self.lock();
        let start = state.writes.partition_point(|w| w.seq <= seq);
        state.writes[start..].to_vec()
    }

    /// Sets what `metrics.k8s.io` reports for a pod (quantities such as `"250m"`, `"64Mi"`).
    pub fn set_pod_usage(&self, namespace: &str, pod: &str, cpu: &str, memory: &str) {
        let usage = PodUsage {
            cpu: cpu.into(),
            memory: memory.into(),
            sim_time: self.clock.now(),
        };
        self.lock()
            .usage
            .insert((namespace.into(), pod.into()), usage);
    }

    /// Stops reporting usage for a pod (its container is not running).
    pub fn clear_pod_usage(&self, namespace: &str, pod: &str) {
        self.lock()
            .usage
            .remove(&(namespace.to_string(), pod.to_string()));
    }

    pub fn pod_usage(&self, namespace: &str, pod: &str) -> Option<PodUsage> {
        self.lock()
            .usage
            .get(&(namespace.to_string(), pod.to_string()))
            .cloned()
    }

    /// Changes how many events are retained for watches; shrinking compacts at once.
    pub fn set_watch_window(&self, window: usize) {
        let mut state = self.lock();
        state.window = window.max(1);
        compact(&mut state);
    }

    /// Everything after `from`, plus a receiver for what comes next, taken atomically so no event
    /// is lost or duplicated between the two.
    pub fn subscribe_from(&self, from: u64) -> Result<Subscription, Compacted> {
        let state = self.lock();
        if from < state.compacted_rv {
            return Err(Compacted {
                oldest: state.compacted_rv,
            });
        }
        let backlog = state.log.iter().filter(|e| e.rv > from).cloned().collect();
        Ok((backlog, self.events.subscribe()))
    }

    /// The current objects of a type plus a receiver for later events, atomically.
    pub fn snapshot_and_subscribe(
        &self,
        group: &str,
        plural: &str,
    ) -> (u64, Vec<Arc<Value>>, broadcast::Receiver<Arc<WatchEvent>>) {
        let mut state = self.lock();
        let rv = state.rv;
        let mut txn = Txn {
            state: &mut state,
            events: &self.events,
            clock: &self.clock,
        };
        let objects = txn.list(group, plural, None);
        (rv, objects, self.events.subscribe())
    }
}

/// The store inside one atomic operation.
pub struct Txn<'a> {
    state: &'a mut State,
    events: &'a broadcast::Sender<Arc<WatchEvent>>,
    clock: &'a SimClock,
}

impl Txn<'_> {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn resource_version(&self) -> u64 {
        self.state.rv
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.state.objects.get(key).cloned()
    }

    pub fn list(&mut self, group: &str, plural: &str, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let start = Key::new(group, plural, namespace, "");
        self.state
            .objects
            .range(start..)
            .take_while(|(k, _)| {
                k.group == group
                    && k.plural == plural
                    && namespace.is_none_or(|ns| k.namespace == ns)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every stored object (for the garbage collector's owner lookups).
    pub fn all(&self) -> Vec<(Key, Arc<Value>)> {
        self.state
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A fresh UID in the usual 8-4-4-4-12 form.
    pub fn new_uid(&mut self) -> String {
        self.state.uid_seq += 1;
        let a = splitmix(self.state.uid_seed ^ self.state.uid_seq);
        let b = splitmix(a);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// Stores `object` under `key`. When it equals the stored object (ignoring managedFields
    /// timestamps) nothing is written: no new resourceVersion, no event, no history entry, as
    /// the real server skips no-op updates. Returns the stored object and whether it changed.
    pub fn put(&mut self, key: Key, mut object: Value, ctx: &WriteCtx) -> (Arc<Value>, bool) {
        let previous = self.state.objects.get(&key).cloned();
        if let Some(old) = &previous
            && same_ignoring_times(old, &object)
        {
            return (old.clone(), false);
        }
        self.state.rv += 1;
        let rv = self.state.rv;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let object = Arc::new(object);
        self.state.objects.insert(key.clone(), object.clone());
        let kind = if previous.is_some() {
            EventKind::Modified
        } else {
            EventKind::Added
        };
        self.record(key, kind, object.clone(), previous, ctx);
        (object, true)
    }

    /// Removes an object for good; the DELETED event carries the removal's resourceVersion.
    pub fn remove(&mut self, key: &Key, ctx: &WriteCtx) -> Option<Arc<Value>> {
        let previous = self.state.objects.remove(key)?;
        self.state.rv += 1;
        let mut object = (*previous).clone();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "resourceVersion".into(),
                Value::String(self.state.rv.to_string()),
            );
        }
        if key.group.is_empty() && key.plural == "pods" {
            self.state
                .usage
                .remove(&(key.namespace.clone(), key.name.clone()));
        }
        let object = Arc::new(object);
        self.record(
            key.clone(),
            EventKind::Deleted,
            object.clone(),
            Some(previous),
            ctx,
        );
        Some(object)
    }

    fn record(
        &mut self,
        key: Key,
        kind: EventKind,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
        ctx: &WriteCtx,
    ) {
        let rv = self.state.rv;
        let seq = self.state.writes.len() as u64 + 1;
        self.state.writes.push(WriteRecord {
            seq,
            sim_time: self.clock.now(),
            at: Instant::now(),
            actor: ctx.actor.clone(),
            verb: ctx.verb,
            resource: ctx.resource.clone(),
            subresource: ctx.subresource.clone(),
            namespace: (!key.namespace.is_empty()).then(|| key.namespace.clone()),
            name: key.name.clone(),
            resource_version: rv,
            object: object.clone(),
        });
        let event = Arc::new(WatchEvent {
            rv,
            key,
            kind,
            object,
            previous,
        });
        self.state.log.push_back(event.clone());
        compact(self.state);
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }
}

fn compact(state: &mut State) {
    while state.log.len() > state.window {
        if let Some(dropped) = state.log.pop_front() {
            state.compacted_rv = dropped.rv;
        }
    }
}

fn same_ignoring_times(old: &Value, new: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(entries) = v
            .pointer_mut("/metadata/managedFields")
            .and_then(Value::as_array_mut)
        {
            for entry in entries {
                if let Some(e) = entry.as_object_mut() {
                    e.remove("time");
                }
            }
        }
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    }
    strip(old) == strip(new)
}

pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
