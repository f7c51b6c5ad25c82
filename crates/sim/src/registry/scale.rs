//! The `/scale` subresource: an `autoscaling/v1` `Scale` view of the replica fields.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Caller, Core, PatchKind, Target, commit_update, meta_str, patch_value};
use crate::error::ApiError;
use crate::resources::ScalePaths;
use crate::store::WriteVerb;

fn pointer(path: &str) -> String {
    path.replace('.', "/")
}

fn paths(t: &Target<'_>) -> Result<ScalePaths, ApiError> {
    t.def.scale.clone().ok_or_else(ApiError::no_route)
}

/// The Scale of a stored object.
pub fn to_scale(t: &Target<'_>, obj: &Value) -> Result<Value, ApiError> {
    let paths = paths(t)?;
    let selector = match &paths.label_selector {
        Some(p) => obj.pointer(&pointer(p)).cloned().unwrap_or(json!("")),
        // Deployments: the label selector rendered as a selector string.
        None => json!(
            obj.pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default()
        ),
    };
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer(&pointer(&paths.spec_replicas)).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer(&pointer(&paths.status_replicas)).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    }))
}

pub fn get_scale(core: &Arc<Core>, t: &Target<'_>) -> Result<Value, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let obj = core
        .store
        .get(
            &t.def.resource_ref(&t.version),
            t.namespace.as_deref(),
            &name,
        )
        .ok_or_else(|| t.not_found(&name))?;
    to_scale(t, &obj)
}

/// PUT (`patch` None) or PATCH of the Scale; writes `spec.replicas` of the object.
pub fn write_scale(
    core: &Arc<Core>,
    t: &Target<'_>,
    body: Value,
    patch: Option<PatchKind>,
    caller: &Caller,
) -> Result<Value, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    let paths = paths(t)?;
    core.store.transact(|txn| {
        let key = t.key(&name);
        let old = txn.get(&key).ok_or_else(|| t.not_found(&name))?;
        let scale = match patch {
            None => body,
            Some(kind) => {
                let mut scale = to_scale(t, &old)?;
                // Scale is a built-in type: strategic merge on it is a plain merge.
                let kind = if kind == PatchKind::Strategic {
                    PatchKind::Merge
                } else {
                    kind
                };
                if let PatchKind::Apply { .. } = kind {
                    return Err(ApiError::unsupported_media_type(
                        "application/apply-patch+yaml",
                    ));
                }
                patch_value(t, &mut scale, kind, &body)?;
                scale
            }
        };
        let Some(replicas) = scale.pointer("/spec/replicas").and_then(Value::as_i64) else {
            return Err(ApiError::invalid(
                "Scale",
                "autoscaling",
                &name,
                vec![crate::error::StatusCause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "spec.replicas".into(),
                }],
            ));
        };
        let mut new = (*old).clone();
        if let Some(rv) = meta_str(&scale, "resourceVersion").filter(|rv| !rv.is_empty()) {
            new["metadata"]["resourceVersion"] = json!(rv);
        }
        if let Some(target) = new.pointer_mut(&pointer(&paths.spec_replicas)) {
            *target = json!(replicas);
        } else if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("replicas".into(), json!(replicas));
        }
        let mut main = t.clone();
        main.subresource = Some("scale".into());
        let stored = commit_update(
            core,
            txn,
            &main,
            &key,
            &old,
            new,
            caller,
            WriteVerb::Update,
            false,
        )?;
        to_scale(t, &stored)
    })
}
