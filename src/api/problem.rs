//! Errors of the REST API as `application/problem+json` (RFC 9457). Each error has a stable
//! `type` URI that callers may branch on; `title` is fixed per type, `detail` says what happened
//! in this request. Nothing a caller can send produces a 500: such a case is a bug.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the problem types are documented (the README's REST API section).
const TYPE_BASE: &str = "https://pmp.dev/problems/";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Stable identifier of the kind of error, e.g. `https://pmp.dev/problems/unknown-platform`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short, fixed summary of the kind of error.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (RFC 9457 §3.2), at the top level: `allowed` (what a request may
    /// say instead), `candidates` (of an ambiguous id), `cycle`, `retryAfterSeconds`, ...
    #[serde(flatten)]
    #[schema(ignore)]
    pub extensions: serde_json::Map<String, Value>,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{message}")]
    Invalid { message: String, allowed: Value },
    #[error("no platform {id:?} in the watched namespaces")]
    UnknownPlatform { id: String },
    #[error("no platform group {name:?} in the watched namespaces")]
    UnknownGroup { name: String },
    #[error("{id:?} matches {} platforms; add ?namespace= to choose one", candidates.len())]
    Ambiguous { id: String, candidates: Vec<Value> },
    #[error("{message}")]
    Conflict { message: String, facts: Value },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("too many requests from {caller}; retry after {retry_after_seconds} s")]
    RateLimited {
        caller: String,
        retry_after_seconds: u64,
    },
    #[error("the operator's caches are still loading; retry shortly")]
    NotSynced,
    #[error("the Kubernetes API did not accept the change: {0}")]
    Upstream(String),
    #[error("no route {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the request took longer than the server allows")]
    Timeout,
    #[error("this replica is a standby and does not carry out control requests; {}", leader.as_ref().map_or("no leader is elected yet".to_string(), |l| format!("the leader is {l}")))]
    Standby { leader: Option<String> },
}

impl ApiError {
    /// Status code, type slug and title: stable per variant.
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::MalformedJson(_) => (
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON body",
            ),
            ApiError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
            ),
            ApiError::Invalid { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-request",
                "Invalid request",
            ),
            ApiError::UnknownPlatform { .. } => (
                StatusCode::NOT_FOUND,
                "unknown-platform",
                "Unknown platform",
            ),
            ApiError::UnknownGroup { .. } => (
                StatusCode::NOT_FOUND,
                "unknown-group",
                "Unknown platform group",
            ),
            ApiError::Ambiguous { .. } => (
                StatusCode::CONFLICT,
                "ambiguous-platform",
                "Platform id matches more than one platform",
            ),
            ApiError::Conflict { .. } => (
                StatusCode::CONFLICT,
                "action-not-possible",
                "The action cannot be carried out",
            ),
            ApiError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            ApiError::NotSynced => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not-synced",
                "Caches not synced",
            ),
            ApiError::Upstream(_) => (
                StatusCode::BAD_GATEWAY,
                "kubernetes-api-error",
                "Kubernetes API error",
            ),
            ApiError::NoRoute { .. } => (StatusCode::NOT_FOUND, "no-route", "No such endpoint"),
            ApiError::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Request timed out",
            ),
            ApiError::Standby { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "standby", "Not the leader")
            }
        }
    }

    /// The status code this error answers with.
    pub fn status(&self) -> StatusCode {
        self.kind().0
    }

    /// The problem document, for `instance` (the request path) if known.
    pub fn problem(&self, instance: Option<String>) -> Problem {
        let (status, slug, title) = self.kind();
        let extensions = match self {
            ApiError::Invalid { allowed, .. } => serde_json::json!({"allowed": allowed}),
            ApiError::Ambiguous { candidates, .. } => serde_json::json!({"candidates": candidates}),
            ApiError::Conflict { facts, .. } => facts.clone(),
            ApiError::BodyTooLarge { limit } => serde_json::json!({"limitBytes": limit}),
            ApiError::RateLimited {
                retry_after_seconds,
                ..
            } => serde_json::json!({"retryAfterSeconds": retry_after_seconds}),
            ApiError::Standby { leader } => serde_json::json!({"leader": leader}),
            _ => Value::Null,
        };
        let extensions = match extensions {
            Value::Object(members) => members,
            _ => serde_json::Map::new(),
        };
        Problem {
            type_: format!("{TYPE_BASE}{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            instance,
            extensions,
        }
    }
}

impl ApiError {
    /// The response: the problem document (with the request path as `instance`, if known)
    /// and the headers its status calls for.
    pub fn respond(&self, instance: Option<&str>) -> Response {
        let mut response = problem_response(&self.problem(instance.map(str::to_string)));
        let retry_after = match self {
            ApiError::RateLimited {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            // Another replica leads, or one is about to: ask again in a moment.
            ApiError::Standby { .. } => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if matches!(self, ApiError::Unauthenticated(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"platform-operator\""),
            );
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(None)
    }
}

/// A problem document as a response with its status and content type.
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}
