//! A small event recorder writing `v1` Events, aggregated like client-go's recorder: a repeat of
//! the same reason and message for the same object bumps `count` and `lastTimestamp` of the
//! existing Event instead of creating a new one.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
    /// The container the event is about (`fieldPath: spec.containers{name}`).
    pub container: Option<String>,
    pub at: Timestamp,
}

type Key = (String, &'static str, String);

pub struct Recorder {
    client: Client,
    /// The field manager of the recorder's writes.
    manager: &'static str,
    /// The reporting component (`source.component`).
    component: &'static str,
    host: String,
    /// (object uid, reason, message) → (event namespace, event name, count).
    seen: std::sync::Mutex<HashMap<Key, (String, String, i32)>>,
    serial: std::sync::atomic::AtomicU64,
}

impl Recorder {
    pub fn new(client: Client, manager: &'static str, component: &'static str, host: &str) -> Self {
        Self {
            client,
            manager,
            component,
            host: host.to_owned(),
            seen: std::sync::Mutex::new(HashMap::new()),
            serial: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Records `note` about `object` (`times` occurrences). Failures are logged, never fatal.
    /// Safe to call concurrently (for different objects; the same object's notes are recorded
    /// by one worker at a time).
    pub async fn record(&self, object: &ObjectReference, note: &Note, times: i32) {
        let uid = object.uid.clone().unwrap_or_default();
        let namespace = object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let key = (uid, note.reason, note.message.clone());
        let fields = PatchParams {
            field_manager: Some(self.manager.to_owned()),
            ..PatchParams::default()
        };
        let known = self.seen_table().get(&key).cloned();
        if let Some((ns, name, count)) = known {
            let count = count.saturating_add(times);
            let patch = serde_json::json!({
                "count": count,
                "lastTimestamp": Time(note.at),
            });
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            match api.patch(&name, &fields, &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.seen_table().insert(key, (ns, name, count));
                    return;
                }
                Err(error) => {
                    tracing::debug!(%error, event = %name, "failed to update a simulated event");
                    self.seen_table().remove(&key);
                }
            }
        }
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let name = format!(
            "{}.{:x}{:04x}",
            object.name.as_deref().unwrap_or("object"),
            note.at.as_nanosecond(),
            serial & 0xffff
        );
        let mut involved = object.clone();
        if let Some(container) = &note.container {
            involved.field_path = Some(format!("spec.containers{{{container}}}"));
        }
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: involved,
            reason: Some(note.reason.to_owned()),
            message: Some(note.message.clone()),
            type_: Some(note.type_.as_str().to_owned()),
            count: Some(times),
            first_timestamp: Some(Time(note.at)),
            last_timestamp: Some(Time(note.at)),
            source: Some(EventSource {
                component: Some(self.component.to_owned()),
                host: Some(self.host.clone()),
            }),
            reporting_component: Some(self.component.to_owned()),
            reporting_instance: Some(self.host.clone()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let params = PostParams {
            field_manager: Some(self.manager.to_owned()),
            ..PostParams::default()
        };
        match api.create(&params, &event).await {
            Ok(_) => {
                self.seen_table().insert(key, (namespace, name, times));
            }
            Err(error) => tracing::debug!(%error, "failed to create a simulated event"),
        }
    }

    /// Forgets the aggregation state of an object that is gone.
    pub fn forget(&self, uid: &str) {
        self.seen_table().retain(|(object, _, _), _| object != uid);
    }

    fn seen_table(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (String, String, i32)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A reference to a Kubernetes object for `involvedObject`.
pub fn reference<K: kube::Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: object.meta().name.clone(),
        namespace: object.meta().namespace.clone(),
        uid: object.meta().uid.clone(),
        resource_version: None,
        field_path: None,
    }
}
