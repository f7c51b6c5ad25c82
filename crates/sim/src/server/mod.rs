//! The HTTP front: one dispatcher that parses Kubernetes API paths (rather than an axum route
//! table, because `/api/v1/namespaces/{x}/...` is ambiguous until the resource table is
//! consulted), fault injection in front of it, and a listener that can refuse connections.

mod discovery;
mod handlers;
mod watch;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::auth::AuthTable;
use super::error::ApiError;
use super::faults::{Decision, FaultHandle, PauseMode, TimeoutMode};
use super::registry::Core;

/// Everything a request handler needs.
pub struct App {
    pub core: Arc<Core>,
    pub faults: FaultHandle,
    pub auth: Arc<RwLock<AuthTable>>,
    pub bookmark_interval: Duration,
    /// Requests received (any verb), for load measurements.
    pub requests: std::sync::atomic::AtomicU64,
}

/// Largest request body accepted; bigger ones get `413`.
const MAX_BODY: usize = 8 * 1024 * 1024;

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().fallback(entry).with_state(app)
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Every answer carries `Date` from the simulated clock, as a real API server's carries its
/// own clock: clients that stamp requests with the cluster's time (rather than their own) read it.
async fn entry(State(app): State<Arc<App>>, request: Request) -> Response {
    let clock = app.core.clock.clone();
    let mut response = serve(app, request).await;
    let date = k8s_openapi::jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&clock.now())
        .ok()
        .and_then(|d| header::HeaderValue::from_str(&d).ok());
    if let Some(date) = date {
        response.headers_mut().insert(header::DATE, date);
    }
    response
}

async fn serve(app: Arc<App>, request: Request) -> Response {
    app.requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let faults = app.faults.clone();
    if let Some((until, _)) = faults.paused() {
        faults.clock().sleep_until(until).await;
    }
    let (latency, decision) = faults.decide(&user_agent);
    let decision = match decision {
        Decision::Proceed => faults
            .decide_path(request.uri().path())
            .unwrap_or(Decision::Proceed),
        decided => decided,
    };
    if !latency.is_zero() {
        faults.clock().sleep(latency).await;
    }
    match decision {
        Decision::Proceed => {}
        Decision::Fail(code) => return injected_failure(code).into_response(),
        Decision::Timeout(hold, mode) => {
            faults.clock().sleep(hold).await;
            return match mode {
                TimeoutMode::GatewayTimeout => ApiError::new(
                    504,
                    "Timeout",
                    "request did not complete within requested timeout - context deadline exceeded",
                )
                .into_response(),
                TimeoutMode::Drop => dropped_connection(),
            };
        }
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(413, "RequestEntityTooLarge", "request entity too large")
                .into_response();
        }
    };
    let query: HashMap<String, String> = match Query::try_from_uri(&parts.uri) {
        Ok(Query(q)) => q,
        Err(e) => return ApiError::bad_request(format!("invalid query: {e}")).into_response(),
    };
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        headers: parts.headers,
        body,
        user_agent,
    };
    match dispatch(&app, req).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

fn injected_failure(code: u16) -> ApiError {
    match code {
        429 => {
            let mut err = ApiError::new(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            );
            err.details.retry_after_seconds = Some(1);
            err
        }
        503 => ApiError::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        504 => ApiError::new(
            504,
            "Timeout",
            "the server was unable to return a response in the time allotted",
        ),
        other => ApiError::new(
            other,
            "InternalError",
            "Internal error occurred: injected fault",
        ),
    }
}

/// A response whose body fails at once, so the connection is torn down mid-response.
fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::other("dropped by fault injection"))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    response
}

/// A parsed request.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub user_agent: String,
}

impl Req {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }
}

/// A path below `/api/v1` or `/apis/{group}/{version}`.
#[derive(Debug)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

async fn dispatch(app: &Arc<App>, req: Req) -> Result<Response, ApiError> {
    let segments: Vec<String> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let table = &app.core.table;
    let get_only = |r: Result<Response, ApiError>| {
        if req.method == Method::GET {
            r
        } else {
            Err(ApiError::method_not_allowed())
        }
    };
    match segs.as_slice() {
        ["version"] => get_only(Ok(discovery::version())),
        ["api"] => get_only(Ok(discovery::api_versions())),
        ["apis"] => get_only(Ok(discovery::group_list(table))),
        ["api", "v1"] => get_only(Ok(discovery::resource_list(table, "", "v1"))),
        ["apis", group] => get_only(discovery::group(table, group)),
        ["apis", group, version]
            if table
                .all()
                .iter()
                .any(|d| d.group == *group && d.serves(version)) =>
        {
            get_only(Ok(discovery::resource_list(table, group, version)))
        }
        ["api", "v1", rest @ ..] => handle_resource(app, &req, "", "v1", rest).await,
        ["apis", group, version, rest @ ..] => {
            handle_resource(app, &req, group, version, rest).await
        }
        _ => Err(ApiError::no_route()),
    }
}

async fn handle_resource(
    app: &Arc<App>,
    req: &Req,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response, ApiError> {
    let table = &app.core.table;
    let is_sub = |s: &str| matches!(s, "status" | "scale" | "finalize");
    let (namespace, plural, name, subresource) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !(is_sub(plural) && tail.is_empty()) => (
            Some(ns.to_string()),
            plural.to_string(),
            tail.first().map(|s| s.to_string()),
            tail.get(1).map(|s| s.to_string()),
        ),
        [plural, tail @ ..] => (
            None,
            plural.to_string(),
            tail.first().map(|s| s.to_string()),
            tail.get(1).map(|s| s.to_string()),
        ),
        [] => return Err(ApiError::no_route()),
    };
    let extra = match rest {
        ["namespaces", _, p, tail @ ..] if !(is_sub(p) && tail.is_empty()) => tail.len() > 2,
        [_, tail @ ..] => tail.len() > 2,
        _ => false,
    };
    if extra {
        return Err(ApiError::no_route());
    }
    let def = table
        .find(group, version, &plural)
        .ok_or_else(ApiError::no_route)?;
    if namespace.is_some() && !def.namespaced {
        return Err(ApiError::no_route());
    }
    let path = ResourcePath {
        group: group.into(),
        version: version.into(),
        namespace,
        plural,
        name,
        subresource,
    };
    if def.namespaced && path.namespace.is_none() && path.name.is_some() {
        return Err(ApiError::no_route());
    }
    handlers::handle(app, req, def, path).await
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A TCP listener that, while the server is paused in [`PauseMode::Refuse`], accepts and
/// immediately closes new connections.
pub struct PausableListener {
    pub inner: tokio::net::TcpListener,
    pub faults: FaultHandle,
}

impl axum::serve::Listener for PausableListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if matches!(self.faults.paused(), Some((_, PauseMode::Refuse))) {
                        drop(stream);
                        continue;
                    }
                    return (stream, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
