//! The group endpoints: a stack's status, and starting or stopping the whole stack in order.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::crd::{Phase, PlatformGroup};
use crate::graph::NodeKey;
use crate::stack::key_of;

use super::auth::{Caller, Permission};
use super::control::{Action, Affected, Snapshot};
use super::lookup::find_group;
use super::platforms::{API_FIELD_MANAGER, NamespaceQuery};
use super::problem::{ApiError, Problem};
use super::views::{GroupView, PlatformSummary, group_view};
use super::wait::{WaitQuery, outcome};
use super::{ApiState, control_input, publish_request, rejected_query};

/// The actions a group accepts.
pub const GROUP_ACTIONS: [&str; 2] = ["start", "stop"];

/// A group, its phase and its members.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{name}",
    tag = "groups",
    params(("name" = String, Path, description = "The PlatformGroup's name"), NamespaceQuery),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is in several namespaces", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_group(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    query: Result<Query<NamespaceQuery>, QueryRejection>,
) -> Result<Json<GroupView>, ApiError> {
    let Query(query) = query.map_err(rejected_query)?;
    let snapshot = state.snapshot()?;
    let group = find_group(
        &state.ctx.stores.groups.state(),
        &name,
        query.namespace.as_deref(),
    )?;
    let namespace = group.namespace().unwrap_or_default();
    state
        .auth
        .authorize(
            &caller,
            Permission::read("platformgroups", "get", &namespace),
        )
        .await?;
    Ok(Json(group_view(&snapshot, &group)))
}

/// The answer to an accepted group request.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupControlResponse {
    pub action: Action,
    pub namespace: String,
    pub group: String,
    /// Members that change, in the order they will.
    pub affected: Vec<Affected>,
    pub status_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reached: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<Vec<PlatformSummary>>,
}

/// Starts a whole stack in dependency order, or stops it in reverse order.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{name}/control",
    tag = "groups",
    params(("name" = String, Path, description = "The PlatformGroup's name"), WaitQuery),
    request_body = super::control::ControlRequest,
    responses(
        (status = 202, description = "Accepted", body = GroupControlResponse),
        (status = 200, description = "With wait=true: every member reached the state", body = GroupControlResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown action (a group takes start and stop)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Caches not synced, or this replica is a standby (the answer names the leader; retry)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "With wait=true: not reached in time", body = GroupControlResponse),
    )
)]
pub async fn control_group(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (query, request, action) = control_input(query, body, &GROUP_ACTIONS)?;
    if request.config.is_some()
        || request.with_dependencies.is_some()
        || request.with_dependents.is_some()
    {
        return Err(ApiError::Invalid {
            message: "a group request takes only an action".to_string(),
            allowed: json!({"fields": ["action"], "action": GROUP_ACTIONS}),
        });
    }
    let wait = query.wait_limit(state.settings.max_wait)?;
    let snapshot = state.snapshot()?;
    let group = find_group(
        &state.ctx.stores.groups.state(),
        &name,
        query.namespace.as_deref(),
    )?;
    let key = key_of(group.as_ref());
    state
        .auth
        .authorize(
            &caller,
            Permission::control("platformgroups", &key.namespace),
        )
        .await?;
    state.require_leader()?;
    let state_name = if action == Action::Start {
        "Running"
    } else {
        "Stopped"
    };
    let api: Api<PlatformGroup> = Api::namespaced(state.ctx.client.clone(), &key.namespace);
    let params = PatchParams {
        field_manager: Some(API_FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let patch = json!({"spec": {"desiredState": state_name}});
    api.patch(&key.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => ApiError::UnknownGroup {
                name: key.name.clone(),
            },
            other => ApiError::Upstream(other.to_string()),
        })?;
    let members = members_in_order(&snapshot, &key, action);
    let affected: Vec<Affected> = members
        .iter()
        .filter(|m| {
            let phase = phase(&snapshot, m);
            match action {
                Action::Stop => !matches!(phase, None | Some(Phase::Stopped)),
                _ => phase != Some(Phase::Running),
            }
        })
        .map(|m| Affected {
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            change: action.as_str().to_string(),
        })
        .collect();
    tracing::info!(
        target: "audit",
        action = action.as_str(),
        actor = caller.actor(),
        namespace = key.namespace.as_str(),
        group = key.name.as_str(),
        members = affected.len(),
        "group control request accepted"
    );
    let note = format!(
        "{} of the group requested by {}",
        action.as_str(),
        caller.actor()
    );
    publish_request(&state, group.object_ref(&()), action, note).await;
    let mut response = GroupControlResponse {
        action,
        namespace: key.namespace.clone(),
        group: key.name.clone(),
        affected,
        status_url: format!("/api/v1/groups/{}?namespace={}", key.name, key.namespace),
        reached: None,
        current: None,
    };
    let wanted = if action == Action::Start {
        Phase::Running
    } else {
        Phase::Stopped
    };
    let done = outcome(&state, wait, &members, |snapshot| {
        members.iter().all(|m| phase(snapshot, m) == Some(wanted))
    })
    .await?;
    response.reached = done.reached;
    response.current = done.current;
    Ok((done.status, Json(response)).into_response())
}

fn phase(snapshot: &Snapshot, key: &NodeKey) -> Option<Phase> {
    snapshot
        .platforms
        .get(key)
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase)
}

/// The group's members in startup order (start) or shutdown order (stop).
fn members_in_order(snapshot: &Snapshot, group: &NodeKey, action: Action) -> Vec<NodeKey> {
    let members: std::collections::BTreeSet<&NodeKey> = snapshot
        .topology
        .membership
        .members
        .get(group)
        .into_iter()
        .flatten()
        .collect();
    let graph = &snapshot.topology.graph;
    let order = if action == Action::Stop {
        graph.shutdown_order()
    } else {
        graph.startup_order()
    };
    order.into_iter().filter(|k| members.contains(k)).collect()
}
