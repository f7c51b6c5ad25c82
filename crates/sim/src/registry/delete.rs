//! DELETE: preconditions, propagation policies, finalizers and graceful pod deletion.
//!
//! Objects without finalizers go at once; with finalizers they get `deletionTimestamp` and stay
//! until the last finalizer is removed. Pods bound to a node (`spec.nodeName` set) get a grace
//! period (query/body `gracePeriodSeconds`, else `spec.terminationGracePeriodSeconds`, else 30 s)
//! and are removed when it has passed on the SimClock, or earlier when the simulated kubelet
//! deletes them with grace 0; unbound pods go at once, as on a real cluster.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;
use serde_json::{Value, json};

use super::{Caller, Core, Target, finalizers, for_version, meta_str, rfc3339, set_meta};
use crate::error::ApiError;
use crate::gc::GcMsg;
use crate::resources::ResourceDef;
use crate::store::{Key, Txn, WriteCtx, WriteVerb};

#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub grace_period_seconds: Option<i64>,
    /// `Background` (default), `Foreground` or `Orphan`.
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

pub const FOREGROUND: &str = "foregroundDeletion";

fn is_pod(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "pods"
}

/// DELETE on one object; answers the object as it is after the request (gone or terminating).
pub fn delete(
    core: &Arc<Core>,
    t: &Target<'_>,
    opts: &DeleteOpts,
    caller: &Caller,
) -> Result<Value, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let key = t.key(&name);
    core.store
        .transact(|txn| delete_in(core, txn, t, &key, opts, caller))
}

pub(crate) fn delete_in(
    core: &Arc<Core>,
    txn: &mut Txn<'_>,
    t: &Target<'_>,
    key: &Key,
    opts: &DeleteOpts,
    caller: &Caller,
) -> Result<Value, ApiError> {
    let def = t.def;
    let old = txn
        .get(key)
        .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &key.name))?;
    let conflict = |why: String| ApiError::conflict(&def.group, &def.plural, &key.name, &why);
    if let Some(uid) = &opts.precondition_uid
        && Some(uid.as_str()) != meta_str(&old, "uid")
    {
        return Err(conflict(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta_str(&old, "uid").unwrap_or_default()
        )));
    }
    if let Some(rv) = &opts.precondition_resource_version
        && Some(rv.as_str()) != meta_str(&old, "resourceVersion")
    {
        return Err(conflict(format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta_str(&old, "resourceVersion").unwrap_or_default()
        )));
    }
    if caller.dry_run {
        return Ok(for_version(&old, t));
    }
    let ctx = t.ctx(caller, WriteVerb::Delete);
    let uid = meta_str(&old, "uid").unwrap_or_default().to_string();
    let deleting = meta_str(&old, "deletionTimestamp").is_some();
    let policy = opts.propagation_policy.as_deref().unwrap_or("Background");
    if policy == "Orphan" {
        orphan_dependents(core, txn, &uid);
    }
    let mut obj = (*old).clone();
    let now = txn.now();

    if def.group.is_empty() && def.plural == "namespaces" {
        if !deleting {
            set_meta(&mut obj, "deletionTimestamp", Some(json!(rfc3339(now))));
            set_meta(&mut obj, "deletionGracePeriodSeconds", Some(json!(0)));
            obj["status"]["phase"] = json!("Terminating");
            let (stored, _) = txn.put(key.clone(), obj, &ctx);
            core.notify(GcMsg::NamespaceDeleting(key.name.clone()));
            return Ok(for_version(&stored, t));
        }
        return Ok(for_version(&old, t));
    }

    if policy == "Foreground" && !deleting {
        let mut list = finalizers(&obj);
        if !list.iter().any(|f| f == FOREGROUND) {
            list.push(FOREGROUND.into());
        }
        set_meta(&mut obj, "finalizers", Some(json!(list)));
    }

    if is_pod(def) {
        let bound = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let grace = opts
            .grace_period_seconds
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0);
        let grace = if bound { grace } else { 0 };
        let current = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        // A repeated DELETE may only shorten the grace period.
        if current.is_none_or(|c| grace < c) {
            let deadline = now
                .saturating_add(SignedDuration::from_secs(grace))
                .unwrap_or(now);
            set_meta(
                &mut obj,
                "deletionTimestamp",
                Some(json!(rfc3339(deadline))),
            );
            set_meta(&mut obj, "deletionGracePeriodSeconds", Some(json!(grace)));
            if grace > 0 {
                core.notify(GcMsg::PodGrace {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    uid: uid.clone(),
                    after: Duration::from_secs(grace as u64),
                });
            }
        }
    } else if !deleting {
        set_meta(&mut obj, "deletionTimestamp", Some(json!(rfc3339(now))));
        set_meta(&mut obj, "deletionGracePeriodSeconds", Some(json!(0)));
    }

    if removable(def, &obj) {
        let removed = remove(core, txn, key, &ctx).unwrap_or(old);
        return Ok(for_version(&removed, t));
    }
    let (stored, _) = txn.put(key.clone(), obj, &ctx);
    if policy == "Foreground" {
        core.notify(GcMsg::Foreground(uid));
    }
    Ok(for_version(&stored, t))
}

fn removable(def: &ResourceDef, obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
        && finalizers(obj).is_empty()
        && (!is_pod(def)
            || obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                == Some(0))
}

/// Removes the object if it is terminating and nothing holds it any more.
pub(crate) fn remove_if_done(
    core: &Arc<Core>,
    txn: &mut Txn<'_>,
    def: &ResourceDef,
    key: &Key,
    ctx: &WriteCtx,
) {
    if let Some(obj) = txn.get(key)
        && removable(def, &obj)
    {
        remove(core, txn, key, ctx);
    }
}

pub(crate) fn remove(
    core: &Arc<Core>,
    txn: &mut Txn<'_>,
    key: &Key,
    ctx: &WriteCtx,
) -> Option<Arc<Value>> {
    let mut ctx = ctx.clone();
    ctx.verb = WriteVerb::Delete;
    let removed = txn.remove(key, &ctx)?;
    let owners = removed
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    core.notify(GcMsg::Removed {
        uid: meta_str(&removed, "uid").unwrap_or_default().to_string(),
        namespace: key.namespace.clone(),
        owners,
    });
    Some(removed)
}

/// Orphan propagation: dependents lose their reference to the owner before it goes.
fn orphan_dependents(core: &Arc<Core>, txn: &mut Txn<'_>, owner_uid: &str) {
    let ctx_for = |key: &Key| WriteCtx {
        actor: "generic-garbage-collector".into(),
        verb: WriteVerb::Patch,
        resource: crate::resources::ResourceRef::new(
            &key.group,
            core.def_for_key(key)
                .and_then(|d| d.versions.first())
                .map_or("", String::as_str),
            &key.plural,
        ),
        subresource: None,
    };
    for (key, obj) in txn.all() {
        let Some(refs) = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
        else {
            continue;
        };
        if !refs
            .iter()
            .any(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid))
        {
            continue;
        }
        let kept: Vec<Value> = refs
            .iter()
            .filter(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid))
            .cloned()
            .collect();
        let mut updated = (*obj).clone();
        set_meta(
            &mut updated,
            "ownerReferences",
            (!kept.is_empty()).then(|| json!(kept)),
        );
        let ctx = ctx_for(&key);
        txn.put(key, updated, &ctx);
    }
}

/// Called when a pod's grace period has passed on the SimClock, or when the simulated kubelet
/// reports its containers stopped: the pod goes unless finalizers still hold it.
pub(crate) fn finish_pod_grace(
    core: &Arc<Core>,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    actor: &str,
) -> bool {
    let Some(def) = core.table.find("", "v1", "pods") else {
        return false;
    };
    let key = Key::new("", "pods", Some(namespace), name);
    core.store.transact(|txn| {
        let Some(pod) = txn.get(&key) else {
            return false;
        };
        if uid.is_some_and(|u| Some(u) != meta_str(&pod, "uid")) {
            return false;
        }
        let ctx = WriteCtx {
            actor: actor.into(),
            verb: WriteVerb::Delete,
            resource: def.resource_ref("v1"),
            subresource: None,
        };
        let mut updated = (*pod).clone();
        if meta_str(&pod, "deletionTimestamp").is_none() {
            set_meta(
                &mut updated,
                "deletionTimestamp",
                Some(json!(rfc3339(txn.now()))),
            );
        }
        set_meta(&mut updated, "deletionGracePeriodSeconds", Some(json!(0)));
        if removable(def, &updated) {
            return remove(core, txn, &key, &ctx).is_some();
        }
        txn.put(key.clone(), updated, &ctx);
        false
    })
}
