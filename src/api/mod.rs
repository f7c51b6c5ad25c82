//! The operator's HTTP servers.
//!
//! - The **probe server** (`--probe-addr`): `/healthz`, `/readyz` and `/metrics`, without
//!   authentication, for the kubelet and Prometheus.
//! - The **REST API** (`--api-addr`) for legacy callers: `/api/v1/...` (see [`platforms`] and
//!   [`groups`]), `/openapi.json`, and the probes again. Kubernetes stays the single source of
//!   truth: control requests patch Platform objects and the operator acts on them; reads come
//!   from the operator's caches. Every `/api` request is authenticated (TokenReview),
//!   rate-limited per caller, authorized (SubjectAccessReview), bounded in size and time, and
//!   answered with `application/problem+json` when it fails.

pub mod auth;
pub mod control;
pub mod graph;
pub mod groups;
pub mod limit;
pub mod lookup;
pub mod platforms;
pub mod problem;
pub mod views;
pub mod wait;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::client::RateLimit;
use crate::controller::Context;
use crate::controller::context::is_synced;
use crate::graph::NodeKey;
use crate::stack::key_of;

use self::auth::{AuthMode, Authenticator, Caller, Permission};
use self::control::Snapshot;
use self::limit::CallerLimits;
use self::problem::ApiError;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// How long a request may take, beyond the wait it asked for.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How the REST API behaves.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub auth: AuthMode,
    /// Requests per second and burst per caller (qps 0: no limit).
    pub rate_limit: RateLimit,
    /// The longest `?wait=true` a request may ask for.
    pub max_wait: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            auth: AuthMode::Kubernetes,
            rate_limit: DEFAULT_CALLER_LIMIT,
            max_wait: DEFAULT_MAX_WAIT,
        }
    }
}

/// How long a `?wait=true` request may wait at most unless configured.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);

/// Per caller unless configured: a legacy caller polling a status ten times a second is
/// served; a runaway loop is held back.
pub const DEFAULT_CALLER_LIMIT: RateLimit = RateLimit {
    qps: 20.0,
    burst: 40,
};

/// Router state: the operator's shared context (its caches, clock, Event queue, metrics) and
/// the API's authenticator and limits. The API keeps no state of its own beyond short-lived
/// review answers and rate-limit buckets.
#[derive(Clone)]
pub struct ApiState {
    pub ctx: Arc<Context>,
    pub auth: Arc<Authenticator>,
    limits: Arc<CallerLimits>,
    pub settings: ApiSettings,
}

impl ApiState {
    pub fn new(ctx: Arc<Context>, settings: ApiSettings) -> Self {
        ApiState {
            auth: Arc::new(Authenticator::new(settings.auth, ctx.client.clone())),
            limits: Arc::new(CallerLimits::new(settings.rate_limit)),
            ctx,
            settings,
        }
    }

    /// One snapshot of the caches; 503 until they hold their first list.
    pub fn snapshot(&self) -> Result<Snapshot, ApiError> {
        let stores = &self.ctx.stores;
        if !stores.synced() {
            return Err(ApiError::NotSynced);
        }
        let platforms: HashMap<NodeKey, _> = stores
            .platforms
            .state()
            .into_iter()
            .map(|p| (key_of(p.as_ref()), p))
            .collect();
        Ok(Snapshot {
            platforms,
            topology: self.ctx.topology(),
        })
    }

    /// A snapshot and the platform `id` names in it.
    pub fn find(&self, id: &str, namespace: Option<&str>) -> Result<(Snapshot, NodeKey), ApiError> {
        let snapshot = self.snapshot()?;
        let platforms: Vec<_> = snapshot.platforms.values().cloned().collect();
        let key = lookup::find_platform(&platforms, id, namespace)?;
        Ok((snapshot, key))
    }

    /// The namespaces (of those with platforms, or just `only`) in which the caller may list
    /// platforms; 403 when `only` is named and not allowed.
    pub async fn readable_namespaces(
        &self,
        caller: &Caller,
        snapshot: &Snapshot,
        only: Option<&str>,
    ) -> Result<BTreeSet<String>, ApiError> {
        if let Some(namespace) = only {
            self.auth
                .authorize(caller, Permission::read("platforms", "list", namespace))
                .await?;
            return Ok(BTreeSet::from([namespace.to_string()]));
        }
        let namespaces: BTreeSet<String> = snapshot
            .platforms
            .keys()
            .map(|k| k.namespace.clone())
            .collect();
        let mut readable = BTreeSet::new();
        for namespace in namespaces {
            let permission = Permission::read("platforms", "list", &namespace);
            match self.auth.authorize(caller, permission).await {
                Ok(()) => {
                    readable.insert(namespace);
                }
                Err(ApiError::Forbidden(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(readable)
    }

    /// Control requests are carried out by the leader only (its client alone may write);
    /// a standby answers 503 naming the leader, and the caller retries (through a Service,
    /// the next try may reach the leader).
    pub fn require_leader(&self) -> Result<(), ApiError> {
        let role = self.ctx.leadership.role();
        if role.leader {
            Ok(())
        } else {
            Err(ApiError::Standby {
                leader: role.holder,
            })
        }
    }

    /// Now, to whole seconds, on the operator's clock (as its status timestamps are).
    pub fn now_rfc3339(&self) -> String {
        let now = self.ctx.clock.now();
        k8s_openapi::jiff::Timestamp::from_second(now.as_second())
            .unwrap_or(now)
            .to_string()
    }
}

/// The OpenAPI document's frame; the paths come from the handlers themselves.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "platform-operator REST API",
        description = "Control and status of platforms for legacy callers. Kubernetes stays the source of truth: control requests change Platform objects, reads come from the operator's caches. Errors are application/problem+json (RFC 9457).",
        license(name = "Apache-2.0")
    ),
    components(schemas(problem::Problem)),
    tags(
        (name = "platforms", description = "One platform: control, status, audit trail; lists and the graph"),
        (name = "groups", description = "A stack of platforms managed together"),
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the bearer token every `/api` route takes.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "kubernetes",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A Kubernetes bearer token, checked by TokenReview; access by SubjectAccessReview",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "kubernetes",
            Vec::<String>::new(),
        )]);
    }
}

/// The `/api` routes and the OpenAPI document describing exactly them.
fn api_routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(platforms::control))
        .routes(routes!(platforms::status))
        .routes(routes!(platforms::events))
        .routes(routes!(platforms::list))
        .routes(routes!(platforms::graph))
        .routes(routes!(groups::get_group))
        .routes(routes!(groups::control_group))
        .split_for_parts()
}

/// The OpenAPI document of the REST API (also committed as `docs/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().1
}

/// The probe server's routes.
pub fn probe_router(state: ApiState) -> Router {
    probe_routes().with_state(state)
}

fn probe_routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The REST API's routes, with the probes and the OpenAPI document.
pub fn router(state: ApiState) -> Router {
    let (api, document) = api_routes();
    let document = Arc::new(document);
    let api = api
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    probe_routes()
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
        .merge(api)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), measure))
        .with_state(state)
}

/// Authenticates the caller, holds it to its rate limit and to the request deadline, and
/// hands the caller to the handler.
async fn guard(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let caller = match state.auth.authenticate(authorization.as_deref()).await {
        Ok(caller) => caller,
        Err(error) => return with_instance(error, request.uri().path()),
    };
    if let Err(wait) = state.limits.check(&caller.username) {
        let error = ApiError::RateLimited {
            caller: caller.username.clone(),
            retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
        };
        return with_instance(error, request.uri().path());
    }
    let path = request.uri().path().to_string();
    let waits = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "wait=true"));
    let deadline = REQUEST_TIMEOUT
        + if waits {
            state.settings.max_wait
        } else {
            Duration::ZERO
        };
    request.extensions_mut().insert(caller);
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(mut response) => {
            if response.status().is_client_error() || response.status().is_server_error() {
                add_instance(&mut response, &path).await
            } else {
                response
            }
        }
        Err(_) => with_instance(ApiError::Timeout, &path),
    }
}

fn with_instance(error: ApiError, path: &str) -> Response {
    error.respond(Some(path))
}

/// Fills a problem document's `instance` with the request path.
async fn add_instance(response: &mut Response, path: &str) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == problem::PROBLEM_JSON.as_bytes());
    let taken = std::mem::take(response);
    if !is_problem {
        return taken;
    }
    let (parts, body) = taken.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let mut document: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(json!({}));
    document["instance"] = json!(path);
    let body = serde_json::to_vec(&document).unwrap_or_else(|_| bytes.to_vec());
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// Counts and times every request by its route template (bounded labels).
async fn measure(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.ctx.metrics;
    metrics
        .api_request_seconds
        .get_or_create(&crate::metrics::RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .api_requests
        .get_or_create(&crate::metrics::RequestLabels {
            route,
            method,
            code: response.status().as_u16(),
        })
        .inc();
    response
}

async fn no_route(request: Request) -> Response {
    with_instance(
        ApiError::NoRoute {
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
        },
        request.uri().path(),
    )
}

async fn method_not_allowed(request: Request) -> Response {
    with_instance(
        ApiError::MethodNotAllowed {
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
        },
        request.uri().path(),
    )
}

/// What every control request carries, checked: its query, its body, and its action among
/// `allowed` (400 for a body that is not JSON, 422 for one of the wrong shape).
pub(crate) fn control_input(
    query: Result<axum::extract::Query<wait::WaitQuery>, QueryRejection>,
    body: Result<axum::body::Bytes, BytesRejection>,
    allowed: &[&str],
) -> Result<(wait::WaitQuery, control::ControlRequest, control::Action), ApiError> {
    let axum::extract::Query(query) = query.map_err(rejected_query)?;
    let body = body.map_err(rejected_body)?;
    let request = control::parse_request(&body)?;
    let action = control::Action::parse(&request.action, allowed)?;
    Ok((query, request, action))
}

/// The audit Event of an accepted control request, on the object it controls.
pub(crate) async fn publish_request(
    state: &ApiState,
    object: k8s_openapi::api::core::v1::ObjectReference,
    action: control::Action,
    note: String,
) {
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "ControlRequested".to_string(),
        // An Event's note is at most 1 KiB.
        note: Some(note.chars().take(1000).collect()),
        action: action.event_action().to_string(),
        secondary: None,
    };
    state.ctx.events.audit(object, event).await;
}

/// A query string that does not parse: 422 naming the parameter.
pub(crate) fn rejected_query(rejection: QueryRejection) -> ApiError {
    ApiError::Invalid {
        message: format!("invalid query: {}", rejection.body_text()),
        allowed: json!({"query": ["namespace", "wait", "timeout", "group", "phase", "format"]}),
    }
}

/// A body that cannot be read: 413 when it is over the limit.
pub(crate) fn rejected_body(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::BodyTooLarge { limit: BODY_LIMIT }
    } else {
        ApiError::MalformedJson(rejection.body_text())
    }
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

/// Ready once the caches hold the first list of every watched resource and the leader
/// election (if any) has answered: a standby is ready too, it serves the REST API's reads.
async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<serde_json::Value>) {
    let stores = &state.ctx.stores;
    let synced = [
        ("platforms", is_synced(&stores.platforms)),
        ("platformgroups", is_synced(&stores.groups)),
        ("deployments", is_synced(&stores.deployments)),
        ("configmaps", is_synced(&stores.configmaps)),
        ("pods", is_synced(&stores.pods)),
    ];
    let mut pending: Vec<&str> = synced
        .iter()
        .filter(|(_, ready)| !ready)
        .map(|(name, _)| *name)
        .collect();
    let role = state.ctx.leadership.role();
    if !role.known {
        pending.push("leader-election");
    }
    if pending.is_empty() {
        (
            StatusCode::OK,
            Json(json!({
                "status": "ready",
                "platforms": stores.platforms.len(),
                "role": if role.leader { "leader" } else { "standby" },
                "leader": role.holder,
            })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "syncing", "pending": pending})),
        )
    }
}

/// Prometheus metrics, OpenMetrics text.
async fn metrics(State(state): State<ApiState>) -> Response {
    let phases = state
        .ctx
        .stores
        .platforms
        .state()
        .into_iter()
        .map(|p| p.status.as_ref().and_then(|s| s.phase).unwrap_or_default())
        .collect::<Vec<_>>();
    let metrics = &state.ctx.metrics;
    metrics
        .event_queue_depth
        .set(i64::try_from(state.ctx.events.depth()).unwrap_or(i64::MAX));
    let page = metrics.render(phases.into_iter());
    ([(header::CONTENT_TYPE, crate::metrics::OPENMETRICS)], page).into_response()
}

/// Serves `router` on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
