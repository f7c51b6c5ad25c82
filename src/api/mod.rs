//! The operator's HTTP server. It starts with the probes an orchestrator needs (`/healthz`,
//! `/readyz`); the legacy REST API is served from the same router, reading the operator's
//! caches kept on the router state.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::controller::Stores;
use crate::controller::context::is_synced;

/// Router state: the operator's caches.
#[derive(Clone)]
pub struct ApiState {
    pub stores: Stores,
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Ready once the caches hold the first list of every watched resource.
async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<serde_json::Value>) {
    let stores = &state.stores;
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
