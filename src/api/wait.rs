//! `?wait=true&timeout=60s`: for callers that expect the seed's synchronous behaviour, a
//! control request can block until the platforms reach the state it asked for. The wait reads
//! the operator's cache (no API round trips), re-checked every few tens of milliseconds.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::ApiState;
use super::control::Snapshot;
use super::problem::ApiError;
use super::views::{PlatformSummary, summary};
use crate::graph::NodeKey;

/// How often a waiting request looks at the cache again.
const POLL: Duration = Duration::from_millis(25);
/// The wait when `wait=true` names no timeout.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// Where the platform is, and whether to wait for the outcome.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// The namespace to look in, when the id is in several.
    pub namespace: Option<String>,
    /// Block until the target state is reached (200) or `timeout` passes (504).
    pub wait: Option<bool>,
    /// How long to wait: `60s` (default), `500ms`, `2m`, `1m30s`, or whole seconds.
    pub timeout: Option<String>,
}

impl WaitQuery {
    /// The wait asked for, if any, within `max`.
    pub fn wait_limit(&self, max: Duration) -> Result<Option<Duration>, ApiError> {
        if !self.wait.unwrap_or(false) {
            return Ok(None);
        }
        let limit = match &self.timeout {
            None => DEFAULT_WAIT.min(max),
            Some(text) => parse_duration(text).ok_or_else(|| ApiError::Invalid {
                message: format!("timeout {text:?} is not a duration such as 60s, 500ms or 2m"),
                allowed: json!({"timeout": "a duration of ms, s, m, h parts, at most the server's maximum wait", "maxSeconds": max.as_secs()}),
            })?,
        };
        if limit > max {
            return Err(ApiError::Invalid {
                message: format!(
                    "timeout {}s is longer than the longest wait this server allows ({}s)",
                    limit.as_secs(),
                    max.as_secs()
                ),
                allowed: json!({"maxSeconds": max.as_secs()}),
            });
        }
        Ok(Some(limit))
    }
}

/// `60s`, `500ms`, `2m`, `1h`, `1m30s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.checked_mul(60)?),
            "h" => Duration::from_secs(value.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
        rest = &rest[unit..];
    }
    Some(total)
}

/// Waits until `reached` holds on the cache, or `limit` passes; says which.
pub async fn wait_for(
    state: &ApiState,
    limit: Duration,
    reached: impl Fn(&Snapshot) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(snapshot) = state.snapshot()
            && reached(&snapshot)
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How a control request ends: 202 without a wait; with one, 200 once `reached` holds or 504
/// when `limit` passes, with the state of the `watched` platforms then.
pub struct Outcome {
    pub status: axum::http::StatusCode,
    pub reached: Option<bool>,
    pub current: Option<Vec<PlatformSummary>>,
}

pub async fn outcome(
    state: &ApiState,
    limit: Option<Duration>,
    watched: &[NodeKey],
    reached: impl Fn(&Snapshot) -> bool,
) -> Result<Outcome, ApiError> {
    let Some(limit) = limit else {
        return Ok(Outcome {
            status: axum::http::StatusCode::ACCEPTED,
            reached: None,
            current: None,
        });
    };
    let done = wait_for(state, limit, reached).await;
    let snapshot = state.snapshot()?;
    let current = watched
        .iter()
        .filter_map(|k| snapshot.platforms.get(k))
        .map(|p| summary(&snapshot, p))
        .collect();
    Ok(Outcome {
        status: if done {
            axum::http::StatusCode::OK
        } else {
            axum::http::StatusCode::GATEWAY_TIMEOUT
        },
        reached: Some(done),
        current: Some(current),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_callers_write_them() {
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "s", "ten", "5x", "-5s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_wait_is_asked_for_and_bounded() {
        let max = Duration::from_secs(300);
        let none = WaitQuery::default();
        assert_eq!(none.wait_limit(max).expect("fine"), None);
        let default = WaitQuery {
            wait: Some(true),
            ..WaitQuery::default()
        };
        assert_eq!(
            default.wait_limit(max).expect("fine"),
            Some(Duration::from_secs(60))
        );
        let too_long = WaitQuery {
            wait: Some(true),
            timeout: Some("1h".into()),
            ..WaitQuery::default()
        };
        let error = too_long.wait_limit(max).expect_err("over the maximum");
        assert_eq!(error.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        let garbage = WaitQuery {
            wait: Some(true),
            timeout: Some("soon".into()),
            ..WaitQuery::default()
        };
        assert!(garbage.wait_limit(max).is_err());
    }
}
