//! The operator's HTTP server: the probes an orchestrator needs. `/healthz` fails when a
//! controller has stopped or is stuck; `/readyz` once every cache holds its first list. The
//! router state is the operator's shared context (its caches and controller health).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::controller::context::is_synced;
use crate::controller::{Context, Operator};

/// Router state: the operator's shared context.
#[derive(Clone)]
pub struct ApiState {
    pub ctx: Arc<Context>,
}

impl ApiState {
    pub fn of(operator: &Operator) -> Self {
        Self {
            ctx: operator.context().clone(),
        }
    }
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Live while both controllers run and make progress; a failing liveness probe gets the
/// process restarted, which is the cure for a controller task that died or hangs.
async fn healthz(State(state): State<ApiState>) -> (StatusCode, Json<serde_json::Value>) {
    let problems = state.ctx.health.problems();
    if problems.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "problems": problems})),
        )
    }
}

/// Ready once the caches hold the first list of every watched resource.
async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<serde_json::Value>) {
    let stores = &state.ctx.stores;
    let synced = [
        ("platforms", is_synced(&stores.platforms)),
        ("platformgroups", is_synced(&stores.groups)),
        ("deployments", is_synced(&stores.deployments)),
        ("configmaps", is_synced(&stores.configmaps)),
        ("pods", is_synced(&stores.pods)),
    ];
    let pending: Vec<&str> = synced
        .iter()
        .filter(|(_, ready)| !ready)
        .map(|(name, _)| *name)
        .collect();
    if pending.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "platforms": stores.platforms.len()})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "syncing", "pending": pending})),
        )
    }
}

/// Serves the router on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
