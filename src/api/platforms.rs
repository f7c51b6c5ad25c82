//! The platform endpoints: control, status, audit trail, list and graph.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::crd::{Phase, Platform};
use crate::graph::NodeKey;

use super::auth::{Caller, Permission};
use super::control::{
    Action, Affected, ConfigChange, ControlOptions, ControlPlan, PLATFORM_ACTIONS, Snapshot,
    config_override, plan_control,
};
use super::graph::{GraphFormat, GraphQuery, GraphView, graph_view, render_dot, render_mermaid};
use super::problem::{ApiError, Problem};
use super::views::{
    ActionView, PlatformStatusView, PlatformSummary, actions, platform_status, summary,
};
use super::wait::{WaitQuery, outcome};
use super::{ApiState, control_input, publish_request, rejected_query};

/// The field manager of the REST API's writes (distinct from the operator's, so that
/// `managedFields` shows who changed what).
pub const API_FIELD_MANAGER: &str = "platform-operator-api";

/// Which platform, when a name or legacy id is in several namespaces.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NamespaceQuery {
    /// The namespace to look in (default: every watched namespace).
    pub namespace: Option<String>,
}

/// The answer to an accepted control request.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlResponse {
    pub action: Action,
    pub namespace: String,
    pub platform: String,
    /// The platforms the request affects, in the order they change.
    pub affected: Vec<Affected>,
    /// The config keys whose value changes (secret-looking values redacted).
    pub config_changes: Vec<ConfigChange>,
    /// Where to follow the platform's state.
    pub status_url: String,
    /// With `wait=true`: whether the target state was reached, and the state now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reached: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<Vec<PlatformSummary>>,
}

/// Starts, stops or restarts a platform (and overrides its config).
///
/// `start` also starts its stopped dependencies unless `withDependencies` is false; `stop`
/// stops its dependents first, in reverse dependency order; `restart` rolls its pods, and with
/// `withDependents` its dependents after it is Ready again. `config` is merged over the
/// platform's config and persisted on the Platform. Answers 202 at once, or with
/// `wait=true` 200 once the target state is reached (504 with the current state if not in
/// `timeout`).
#[utoipa::path(
    post,
    path = "/api/v1/platform/{platform_id}/control",
    tag = "platforms",
    params(
        ("platform_id" = String, Path, description = "The legacy id (spec.platformId) or the Platform's name"),
        WaitQuery,
    ),
    request_body = super::control::ControlRequest,
    responses(
        (status = 202, description = "Accepted; the operator carries it out", body = ControlResponse),
        (status = 200, description = "With wait=true: the target state was reached", body = ControlResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed (update platforms/control)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown platform", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Ambiguous id, or the action cannot be carried out", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown action or invalid config", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate-limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Caches not synced, or this replica is a standby (the answer names the leader; retry)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "With wait=true: not reached in time", body = ControlResponse),
    )
)]
pub async fn control(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(platform_id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (query, request, action) = control_input(query, body, &PLATFORM_ACTIONS)?;
    let wait = query.wait_limit(state.settings.max_wait)?;
    let config = config_override(request.config.as_ref())?;
    let (snapshot, target) = state.find(&platform_id, query.namespace.as_deref())?;
    state
        .auth
        .authorize(&caller, Permission::control("platforms", &target.namespace))
        .await?;
    state.require_leader()?;
    let options = ControlOptions {
        action,
        config,
        with_dependencies: request.with_dependencies.unwrap_or(true),
        with_dependents: request.with_dependents.unwrap_or(false),
        actor: caller.actor(),
        now: state.now_rfc3339(),
    };
    let plan = plan_control(&snapshot, &target, &options)?;
    execute(&state, &plan).await?;
    audit(&state, &caller, &snapshot, &plan).await;
    state
        .ctx
        .metrics
        .api_control_requests
        .get_or_create(&crate::metrics::ActionLabels {
            action: action.as_str(),
        })
        .inc();
    let mut response = ControlResponse {
        action,
        namespace: target.namespace.clone(),
        platform: target.name.clone(),
        affected: plan.affected.clone(),
        config_changes: plan.config_changes.clone(),
        status_url: format!(
            "/api/v1/platform/{}/status?namespace={}",
            target.name, target.namespace
        ),
        reached: None,
        current: None,
    };
    let watched: Vec<NodeKey> = watched_platforms(&plan);
    let done = outcome(&state, wait, &watched, |snapshot| {
        target_reached(snapshot, &plan, &watched)
    })
    .await?;
    response.reached = done.reached;
    response.current = done.current;
    Ok((done.status, Json(response)).into_response())
}

/// The platforms whose state says whether a request is done.
pub fn watched_platforms(plan: &ControlPlan) -> Vec<NodeKey> {
    let mut keys: Vec<NodeKey> = plan
        .affected
        .iter()
        .map(|a| NodeKey::new(&a.namespace, &a.name))
        .collect();
    if !keys.contains(&plan.target) {
        keys.push(plan.target.clone());
    }
    keys
}

/// Whether every platform a request affects is where it asked: running (start), stopped
/// (stop), or running the restart request (restart).
pub fn target_reached(snapshot: &Snapshot, plan: &ControlPlan, watched: &[NodeKey]) -> bool {
    watched.iter().all(|key| {
        let Some(platform) = snapshot.platforms.get(key) else {
            return plan.action == Action::Stop;
        };
        let status = platform.status.as_ref();
        let phase = status.and_then(|s| s.phase);
        let current = status.and_then(|s| s.observed_generation) >= platform.metadata.generation;
        let restarted = match &plan.restart_request {
            Some(request) => status.and_then(|s| s.handled_restart.as_ref()) == Some(request),
            None => true,
        };
        match plan.action {
            Action::Start => current && restarted && phase == Some(Phase::Running),
            Action::Stop => current && phase == Some(Phase::Stopped),
            Action::Restart => restarted && phase == Some(Phase::Running),
        }
    })
}

/// Applies the plan's patches in order (dependencies first).
async fn execute(state: &ApiState, plan: &ControlPlan) -> Result<(), ApiError> {
    let params = PatchParams {
        field_manager: Some(API_FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    for (key, patch) in &plan.patches {
        let api: Api<Platform> = Api::namespaced(state.ctx.client.clone(), &key.namespace);
        api.patch(&key.name, &params, &Patch::Merge(patch))
            .await
            .map_err(|error| upstream(error, &key.name))?;
    }
    Ok(())
}

/// What the Kubernetes API said, as the caller's error where it is theirs.
pub fn upstream(error: kube::Error, name: &str) -> ApiError {
    match error {
        kube::Error::Api(status) if status.code == 404 => ApiError::UnknownPlatform {
            id: name.to_string(),
        },
        kube::Error::Api(status) if status.code == 422 => ApiError::Invalid {
            message: status.message,
            allowed: json!({"see": "kubectl explain platform.spec"}),
        },
        other => ApiError::Upstream(other.to_string()),
    }
}

/// Audits an accepted request: a JSON log line and an Event on the platform, both with the
/// caller. (The operator records the actions themselves in `status.history`, with the caller
/// as actor.)
async fn audit(state: &ApiState, caller: &Caller, snapshot: &Snapshot, plan: &ControlPlan) {
    let affected: Vec<String> = plan
        .affected
        .iter()
        .map(|a| format!("{} ({})", a.name, a.change))
        .collect();
    let config: Vec<String> = plan
        .config_changes
        .iter()
        .map(|c| {
            format!(
                "{}: {} → {}",
                c.key,
                c.old.as_deref().unwrap_or("(unset)"),
                c.new
            )
        })
        .collect();
    tracing::info!(
        target: "audit",
        action = plan.action.as_str(),
        actor = caller.actor(),
        groups = ?caller.groups,
        namespace = plan.target.namespace.as_str(),
        platform = plan.target.name.as_str(),
        affected = ?affected,
        config = ?config,
        "control request accepted"
    );
    let Some(platform) = snapshot.platforms.get(&plan.target) else {
        return;
    };
    let mut note = format!("{} requested by {}", plan.action.as_str(), caller.actor());
    if !affected.is_empty() {
        note.push_str(&format!("; affects {}", affected.join(", ")));
    }
    if !config.is_empty() {
        note.push_str(&format!("; config {}", config.join(", ")));
    }
    publish_request(state, platform.object_ref(&()), plan.action, note).await;
}

/// A platform's status: phase, replicas, conditions, dependencies, restarts, health,
/// resources and the last actions, from the operator's cache.
#[utoipa::path(
    get,
    path = "/api/v1/platform/{platform_id}/status",
    tag = "platforms",
    params(
        ("platform_id" = String, Path, description = "The legacy id (spec.platformId) or the Platform's name"),
        NamespaceQuery,
    ),
    responses(
        (status = 200, description = "The platform's status", body = PlatformStatusView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Ambiguous id", body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn status(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(platform_id): Path<String>,
    query: Result<Query<NamespaceQuery>, QueryRejection>,
) -> Result<Json<PlatformStatusView>, ApiError> {
    let (snapshot, platform) = readable(&state, &caller, &platform_id, query).await?;
    let mut view = platform_status(&snapshot, &platform);
    let key = crate::stack::key_of(platform.as_ref());
    view.resources.usage = state.ctx.usage.sample(&key).as_ref().map(Into::into);
    Ok(Json(view))
}

/// The platform `platform_id` names, once the caller may `get` it.
async fn readable(
    state: &ApiState,
    caller: &Caller,
    platform_id: &str,
    query: Result<Query<NamespaceQuery>, QueryRejection>,
) -> Result<(Snapshot, std::sync::Arc<Platform>), ApiError> {
    let Query(query) = query.map_err(rejected_query)?;
    let (snapshot, key) = state.find(platform_id, query.namespace.as_deref())?;
    state
        .auth
        .authorize(caller, Permission::read("platforms", "get", &key.namespace))
        .await?;
    let platform =
        snapshot
            .platforms
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::UnknownPlatform {
                id: platform_id.to_string(),
            })?;
    Ok((snapshot, platform))
}

/// A platform's audit trail: the control actions in `status.history`, oldest first, each with
/// its actor (`platform-operator` or `api:<user>`) and reason.
#[utoipa::path(
    get,
    path = "/api/v1/platform/{platform_id}/events",
    tag = "platforms",
    params(
        ("platform_id" = String, Path, description = "The legacy id (spec.platformId) or the Platform's name"),
        NamespaceQuery,
    ),
    responses(
        (status = 200, description = "The audit trail", body = Vec<ActionView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn events(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(platform_id): Path<String>,
    query: Result<Query<NamespaceQuery>, QueryRejection>,
) -> Result<Json<Vec<ActionView>>, ApiError> {
    let (_, platform) = readable(&state, &caller, &platform_id, query).await?;
    let history = platform
        .status
        .as_ref()
        .map(|s| actions(&s.history))
        .unwrap_or_default();
    Ok(Json(history))
}

/// Which platforms to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub namespace: Option<String>,
    /// Only the members of this group.
    pub group: Option<String>,
    /// Only platforms in this phase.
    pub phase: Option<String>,
}

/// Every platform the caller may list, with its phase, sorted by namespace and name.
#[utoipa::path(
    get,
    path = "/api/v1/platforms",
    tag = "platforms",
    params(ListQuery),
    responses(
        (status = 200, description = "The platforms", body = Vec<PlatformSummary>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<PlatformSummary>>, ApiError> {
    let Query(query) = query.map_err(rejected_query)?;
    let snapshot = state.snapshot()?;
    let readable = state
        .readable_namespaces(&caller, &snapshot, query.namespace.as_deref())
        .await?;
    let mut keys: Vec<&NodeKey> = snapshot
        .platforms
        .keys()
        .filter(|k| readable.contains(&k.namespace))
        .filter(|k| in_group(&snapshot, k, query.group.as_deref()))
        .collect();
    keys.sort();
    let platforms = keys
        .into_iter()
        .filter_map(|k| snapshot.platforms.get(k))
        .map(|p| summary(&snapshot, p))
        .filter(|s| query.phase.as_deref().is_none_or(|phase| s.phase == phase))
        .collect();
    Ok(Json(platforms))
}

fn in_group(snapshot: &Snapshot, key: &NodeKey, group: Option<&str>) -> bool {
    let Some(group) = group else {
        return true;
    };
    snapshot
        .topology
        .group_of(key)
        .is_some_and(|g| g.name_any() == group)
}

/// The dependency graph with live phases: JSON, Graphviz DOT or a Mermaid flowchart.
#[utoipa::path(
    get,
    path = "/api/v1/graph",
    tag = "platforms",
    params(GraphQuery),
    responses(
        (status = 200, description = "The graph (JSON; text/vnd.graphviz for dot, text/plain for mermaid)", body = GraphView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown format", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn graph(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<GraphQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(rejected_query)?;
    let snapshot = state.snapshot()?;
    let readable = state
        .readable_namespaces(&caller, &snapshot, query.namespace.as_deref())
        .await?;
    let view = graph_view(&snapshot, |key| {
        readable.contains(&key.namespace) && in_group(&snapshot, key, query.group.as_deref())
    });
    Ok(match query.format.unwrap_or_default() {
        GraphFormat::Json => Json(view).into_response(),
        GraphFormat::Dot => (
            [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
            render_dot(&view),
        )
            .into_response(),
        GraphFormat::Mermaid => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            render_mermaid(&view),
        )
            .into_response(),
    })
}
