//! The simulated controller-manager parts that finish deletions: the garbage collector
//! (ownerReference cascading, foreground deletion), the namespace controller and pod grace
//! timers.
//!
//! Like the real controllers they run asynchronously, after the request that triggered them has
//! been answered, so an operator never sees cascades happen "inside" its DELETE call.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::registry::{
    Caller, Core, DeleteOpts, Target, finalizers, finish_pod_grace, meta_str, remove_if_done,
};
use super::store::{Key, Txn, WriteCtx, WriteVerb};

#[derive(Debug)]
pub(crate) enum GcMsg {
    /// An object is gone: its dependents follow, and owners waiting in foreground deletion or
    /// a terminating namespace may now finish.
    Removed {
        uid: String,
        namespace: String,
        owners: Vec<String>,
    },
    /// An owner entered foreground deletion.
    Foreground(String),
    NamespaceDeleting(String),
    PodGrace {
        namespace: String,
        name: String,
        uid: String,
        after: Duration,
    },
}

const GC: &str = "generic-garbage-collector";
const NAMESPACE_CONTROLLER: &str = "namespace-controller";

pub(crate) fn spawn(core: Arc<Core>, mut rx: mpsc::UnboundedReceiver<GcMsg>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            match msg {
                GcMsg::Removed {
                    uid,
                    namespace,
                    owners,
                } => {
                    delete_dependents(&core, &uid);
                    for owner in owners {
                        finish_foreground(&core, &owner);
                    }
                    if !namespace.is_empty() {
                        finish_namespace(&core, &namespace);
                    }
                }
                GcMsg::Foreground(uid) => {
                    delete_dependents(&core, &uid);
                    finish_foreground(&core, &uid);
                }
                GcMsg::NamespaceDeleting(ns) => {
                    delete_namespace_content(&core, &ns);
                    finish_namespace(&core, &ns);
                }
                GcMsg::PodGrace {
                    namespace,
                    name,
                    uid,
                    after,
                } => {
                    let core = core.clone();
                    tokio::spawn(async move {
                        core.clock.sleep(after).await;
                        finish_pod_grace(&core, &namespace, &name, Some(&uid), "kubelet");
                    });
                }
            }
        }
    })
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn exists_uid(all: &[(Key, Arc<Value>)], uid: &str) -> bool {
    all.iter().any(|(_, o)| meta_str(o, "uid") == Some(uid))
}

fn delete_key(core: &Arc<Core>, txn: &mut Txn<'_>, key: &Key, actor: &str) {
    let Some(def) = core.def_for_key(key) else {
        return;
    };
    let target = Target {
        def,
        version: def.versions.first().cloned().unwrap_or_default(),
        namespace: (!key.namespace.is_empty()).then(|| key.namespace.clone()),
        name: Some(key.name.clone()),
        subresource: None,
    };
    // Already gone or already terminating: nothing to do, errors are expected races.
    let _ = super::registry::delete_in_pub(
        core,
        txn,
        &target,
        key,
        &DeleteOpts::default(),
        &Caller::internal(actor),
    );
}

/// Background propagation: a dependent with no other live owner is deleted; one that still has
/// a live owner only loses the reference to the removed one.
fn delete_dependents(core: &Arc<Core>, owner_uid: &str) {
    core.store.transact(|txn| {
        let all = txn.all();
        for (key, obj) in &all {
            let owners = owner_uids(obj);
            if !owners.iter().any(|o| o == owner_uid) {
                continue;
            }
            let other_live = owners.iter().any(|o| o != owner_uid && exists_uid(&all, o));
            if other_live {
                let kept: Vec<Value> = obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid))
                    .cloned()
                    .collect();
                let mut updated = (**obj).clone();
                updated["metadata"]["ownerReferences"] = json!(kept);
                let ctx = internal_ctx(core, key, WriteVerb::Patch, GC);
                txn.put(key.clone(), updated, &ctx);
            } else if meta_str(obj, "deletionTimestamp").is_none() {
                delete_key(core, txn, key, GC);
            }
        }
    });
}

fn internal_ctx(core: &Arc<Core>, key: &Key, verb: WriteVerb, actor: &str) -> WriteCtx {
    let version = core
        .def_for_key(key)
        .and_then(|d| d.versions.first().cloned())
        .unwrap_or_default();
    WriteCtx {
        actor: actor.into(),
        verb,
        resource: super::resources::ResourceRef::new(&key.group, &version, &key.plural),
        subresource: None,
    }
}

/// Drops the `foregroundDeletion` finalizer once no dependents of the owner remain.
fn finish_foreground(core: &Arc<Core>, owner_uid: &str) {
    core.store.transact(|txn| {
        let all = txn.all();
        let Some((key, owner)) = all
            .iter()
            .find(|(_, o)| meta_str(o, "uid") == Some(owner_uid))
        else {
            return;
        };
        let list = finalizers(owner);
        if meta_str(owner, "deletionTimestamp").is_none()
            || !list.iter().any(|f| f == super::registry::FOREGROUND)
        {
            return;
        }
        if all
            .iter()
            .any(|(_, o)| owner_uids(o).iter().any(|u| u == owner_uid))
        {
            return;
        }
        let kept: Vec<String> = list
            .into_iter()
            .filter(|f| f != super::registry::FOREGROUND)
            .collect();
        let mut updated = (**owner).clone();
        updated["metadata"]["finalizers"] = json!(kept);
        let ctx = internal_ctx(core, key, WriteVerb::Update, GC);
        txn.put(key.clone(), updated, &ctx);
        if let Some(def) = core.def_for_key(key) {
            remove_if_done(core, txn, def, key, &ctx);
        }
    });
}

fn delete_namespace_content(core: &Arc<Core>, ns: &str) {
    core.store.transact(|txn| {
        for (key, obj) in txn.all() {
            if key.namespace == ns && meta_str(&obj, "deletionTimestamp").is_none() {
                delete_key(core, txn, &key, NAMESPACE_CONTROLLER);
            }
        }
    });
}

/// Removes a terminating namespace once it is empty.
fn finish_namespace(core: &Arc<Core>, ns: &str) {
    core.store.transact(|txn| {
        let key = Key::new("", "namespaces", None, ns);
        let Some(namespace) = txn.get(&key) else {
            return;
        };
        if meta_str(&namespace, "deletionTimestamp").is_none() {
            return;
        }
        if txn.all().iter().any(|(k, _)| k.namespace == ns) {
            return;
        }
        let mut updated = (*namespace).clone();
        updated["spec"]["finalizers"] = json!([]);
        let ctx = internal_ctx(core, &key, WriteVerb::Update, NAMESPACE_CONTROLLER);
        txn.put(key.clone(), updated, &ctx);
        super::registry::remove_pub(core, txn, &key, &ctx);
    });
}
