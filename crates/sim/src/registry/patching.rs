//! PATCH in its four formats, server-side apply included.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Caller, Core, PatchKind, Target, check_type, commit_update, create_in, truncate};
use crate::apply::{self, ApplyRequest, conflict_message};
use crate::error::{ApiError, StatusCause};
use crate::patch::{self, PatchError};
use crate::store::{Key, Txn, WriteVerb};

/// PATCH on an object or its status, in any of the four patch formats.
pub fn patch(
    core: &Arc<Core>,
    t: &Target<'_>,
    kind: PatchKind,
    body: Value,
    caller: &Caller,
) -> Result<Value, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    core.store.transact(|txn| {
        let key = t.key(&name);
        let old = txn.get(&key);
        if let PatchKind::Apply { force } = kind {
            return apply_in(core, txn, t, &key, old.as_deref(), body, caller, force);
        }
        let old = old.ok_or_else(|| t.not_found(&name))?;
        let mut new = (*old).clone();
        if let Some(m) = new.as_object_mut() {
            // Patches are computed against the object without managedFields, which the server
            // owns; they come back in commit_update.
            if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
        }
        patch_value(t, &mut new, kind, &body)?;
        commit_update(
            core,
            txn,
            t,
            &key,
            &old,
            new,
            caller,
            WriteVerb::Patch,
            false,
        )
    })
}

pub(crate) fn patch_value(
    t: &Target<'_>,
    new: &mut Value,
    kind: PatchKind,
    body: &Value,
) -> Result<(), ApiError> {
    let result = match kind {
        PatchKind::Merge => {
            if !body.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            patch::merge_patch(new, body);
            Ok(())
        }
        PatchKind::Json => patch::json_patch(new, body),
        PatchKind::Strategic => {
            if t.def.is_crd {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                ));
            }
            patch::strategic_merge_patch(new, body, t.shape())
        }
        PatchKind::Apply { .. } => Ok(()),
    };
    result.map_err(|e| match e {
        PatchError::Malformed(m) => ApiError::bad_request(m),
        PatchError::Failed(m) => ApiError::new(422, "Invalid", m),
    })
}

#[allow(clippy::too_many_arguments)]
fn apply_in(
    core: &Arc<Core>,
    txn: &mut Txn<'_>,
    t: &Target<'_>,
    key: &Key,
    old: Option<&Value>,
    mut config: Value,
    caller: &Caller,
    force: bool,
) -> Result<Value, ApiError> {
    let Some(manager) = caller.field_manager.clone().filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml requires fieldManager to be set",
        ));
    };
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "apply configuration must be an object",
        ));
    }
    if config.get("apiVersion").is_none() || config.get("kind").is_none() {
        return Err(ApiError::bad_request(
            "invalid object type: apiVersion and kind must be set in an apply configuration",
        ));
    }
    check_type(t, &mut config)?;
    if old.is_none() && t.subresource.is_some() {
        return Err(t.not_found(&key.name));
    }
    let api_version = t.api_version();
    let merged = apply::apply(ApplyRequest {
        live: old,
        config: &config,
        manager: &manager,
        api_version: &api_version,
        force,
        shape: t.shape(),
        scope: t.scope(),
        now: truncate(txn.now()),
    })
    .map_err(|conflicts| {
        let mut err = ApiError::new(409, "Conflict", conflict_message(&conflicts));
        err.details.causes = conflicts
            .iter()
            .map(|c| StatusCause {
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                field: c.field.clone(),
            })
            .collect();
        err
    })?;
    match old {
        None => {
            let mut t = t.clone();
            t.name = Some(key.name.clone());
            let mut caller = caller.clone();
            caller.field_manager = Some(manager);
            // apply() computed managedFields; create_in keeps them instead of tracking an update.
            let managed = merged
                .pointer("/metadata/managedFields")
                .cloned()
                .unwrap_or(json!([]));
            create_in(
                core,
                txn,
                &t,
                merged,
                &caller,
                WriteVerb::Apply,
                Some(managed),
            )
        }
        Some(old) => commit_update(
            core,
            txn,
            t,
            key,
            old,
            merged,
            caller,
            WriteVerb::Apply,
            true,
        ),
    }
}
