//! Apply: the only place the Platform controller writes. Every object write is a server-side
//! apply under the operator's field manager; the finalizer is changed with a JSON patch guarded
//! by a `test` of the current list, so a concurrent change fails instead of being overwritten.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::crd::{Platform, PlatformStatus};
use crate::graph::NodeKey;

use super::context::Context;
use super::error::{Error, kube_error};
use super::model::{
    Action, FINALIZER, FinalizerChange, RESTART_ANNOTATION, RESTART_DEPENDENTS_ANNOTATION,
};
use super::status::actor_of;

fn apply_params(ctx: &Context) -> PatchParams {
    PatchParams::apply(&ctx.field_manager).force()
}

/// Server-side applies a namespaced object the operator owns; returns it as stored.
pub async fn apply_owned<K>(ctx: &Context, object: &K, action: &'static str) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = object
        .meta()
        .namespace
        .as_deref()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        &object.name_any(),
        &apply_params(ctx),
        &Patch::Apply(object),
    )
    .await
    .map_err(kube_error(action))
}

/// Server-side applies the status of a custom resource of the operator's (Platform or
/// PlatformGroup) under its field manager; returns the object as stored.
pub async fn apply_status<K, S>(
    ctx: &Context,
    object: &K,
    status: &S,
    action: &'static str,
) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let namespace = object
        .namespace()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&object.name_any(), &apply_params(ctx), &Patch::Apply(body))
        .await
        .map_err(kube_error(action))
}

pub async fn write_status(
    ctx: &Context,
    platform: &Platform,
    status: &PlatformStatus,
) -> Result<Platform, Error> {
    apply_status(ctx, platform, status, "write the Platform status").await
}

/// Returns the updated Platform, or `None` when there was nothing to change.
pub async fn change_finalizer(
    ctx: &Context,
    platform: &Platform,
    change: FinalizerChange,
) -> Result<Option<Platform>, Error> {
    let api = platform_api(ctx, platform)?;
    let current = platform.finalizers().to_vec();
    let mut operations =
        vec![json!({"op": "test", "path": "/metadata/finalizers", "value": current})];
    match change {
        FinalizerChange::Add if current.is_empty() => {
            operations =
                vec![json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})];
        }
        FinalizerChange::Add => operations
            .push(json!({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER})),
        FinalizerChange::Remove => {
            let Some(index) = current.iter().position(|f| f == FINALIZER) else {
                return Ok(None);
            };
            operations
                .push(json!({"op": "remove", "path": format!("/metadata/finalizers/{index}")}));
        }
    }
    let patch: json_patch::Patch =
        serde_json::from_value(json!(operations)).map_err(|source| Error::Serialize {
            what: "finalizer patch",
            source,
        })?;
    let params = PatchParams {
        field_manager: Some(ctx.field_manager.clone()),
        ..Default::default()
    };
    match api
        .patch(&platform.name_any(), &params, &Patch::<()>::Json(patch))
        .await
    {
        Ok(updated) => Ok(Some(updated)),
        // Already gone: nothing left to hold.
        Err(kube::Error::Api(status))
            if status.code == 404 && change == FinalizerChange::Remove =>
        {
            Ok(None)
        }
        Err(source) => Err(Error::Kube {
            action: "change the finalizer",
            source,
        }),
    }
}

/// Passes a restart request on to a dependent (cascading restart).
pub async fn request_restart(
    ctx: &Context,
    dependent: &NodeKey,
    request: &str,
) -> Result<(), Error> {
    let api: Api<Platform> = Api::namespaced(ctx.client.clone(), &dependent.namespace);
    let patch = json!({"metadata": {"annotations": {
        RESTART_ANNOTATION: request,
        RESTART_DEPENDENTS_ANNOTATION: "true",
    }}});
    let params = PatchParams {
        field_manager: Some(ctx.field_manager.clone()),
        ..Default::default()
    };
    api.patch(&dependent.name, &params, &Patch::Merge(patch))
        .await
        .map_err(kube_error("pass the restart on to a dependent"))?;
    Ok(())
}

/// Audits one action: a structured log line now, a Kubernetes Event queued for publishing (the
/// status history entry is part of the status write).
pub async fn audit(ctx: &Context, platform: &Platform, action: &Action) {
    ctx.metrics
        .control_actions
        .get_or_create(&crate::metrics::ControlActionLabels {
            action: action.kind.as_str(),
        })
        .inc();
    tracing::info!(
        target: "audit",
        action = action.kind.as_str(),
        actor = actor_of(platform, action.kind),
        namespace = platform.namespace().unwrap_or_default(),
        platform = platform.name_any(),
        reason = action.reason.as_str(),
        "control action"
    );
    let event = Event {
        type_: if action.kind.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: action.kind.event_reason().to_string(),
        note: Some(action.reason.clone()),
        action: action.kind.as_str().to_string(),
        secondary: None,
    };
    ctx.events.audit(platform.object_ref(&()), event).await;
}

fn platform_api(ctx: &Context, platform: &Platform) -> Result<Api<Platform>, Error> {
    let namespace = platform
        .namespace()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    Ok(Api::namespaced(ctx.client.clone(), &namespace))
}
