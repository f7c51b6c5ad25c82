//! Who is calling, and may they: a bearer token checked by a TokenReview, a request checked by
//! a SubjectAccessReview, so that cluster admins grant REST access with ordinary RBAC. Reviews
//! are cached for a short while (positive and negative alike) so that a busy caller, or one
//! retrying with a bad token, does not hammer the API server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

use super::problem::ApiError;

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// `Authorization: Bearer <token>`, checked by TokenReview and SubjectAccessReview.
    Kubernetes,
    /// Everybody may do everything: only on a loopback address (the sandbox, a laptop).
    None,
}

impl AuthMode {
    /// Refuses `none` on an address other hosts can reach.
    pub fn check_bind(self, addr: SocketAddr) -> Result<(), String> {
        if self == AuthMode::None && !addr.ip().is_loopback() {
            return Err(format!(
                "--api-auth none would let anyone who reaches {addr} stop platforms; it is \
                 allowed only on a loopback address (127.0.0.1 or ::1). Use --api-auth \
                 kubernetes, or bind the API to loopback"
            ));
        }
        Ok(())
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    pub username: String,
    pub groups: Vec<String>,
}

impl Caller {
    /// The caller of an API without authentication.
    pub fn anonymous() -> Self {
        Caller {
            username: "anonymous".to_string(),
            groups: Vec::new(),
        }
    }

    /// How the caller appears in the audit trail (`status.history`, Events, logs).
    pub fn actor(&self) -> String {
        format!("api:{}", self.username)
    }
}

/// What a request needs to be allowed (a SubjectAccessReview's resource attributes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    pub verb: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    pub namespace: String,
}

impl Permission {
    /// Reading a platform (its status, events, a list, the graph).
    pub fn read(resource: &'static str, verb: &'static str, namespace: &str) -> Self {
        Permission {
            verb,
            resource,
            subresource: None,
            namespace: namespace.to_string(),
        }
    }

    /// Controlling a platform or a group: `update` on `<resource>/control`.
    pub fn control(resource: &'static str, namespace: &str) -> Self {
        Permission {
            verb: "update",
            resource,
            subresource: Some("control"),
            namespace: namespace.to_string(),
        }
    }

    fn describe(&self) -> String {
        let resource = match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        };
        format!(
            "{} {resource}.{} in namespace {}",
            self.verb,
            crate::crd::GROUP,
            self.namespace
        )
    }
}

/// How long a review's answer is reused.
pub const REVIEW_TTL: Duration = Duration::from_secs(10);
/// Cached answers at most (oldest-expiring dropped first beyond it).
const CACHE_LIMIT: usize = 10_000;

/// Authenticates and authorizes callers.
pub struct Authenticator {
    mode: AuthMode,
    client: Client,
    tokens: TtlCache<[u8; 32], Result<Caller, String>>,
    access: TtlCache<(Caller, Permission), bool>,
}

impl Authenticator {
    pub fn new(mode: AuthMode, client: Client) -> Self {
        Authenticator {
            mode,
            client,
            tokens: TtlCache::default(),
            access: TtlCache::default(),
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The caller of a request with this `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        if self.mode == AuthMode::None {
            return Ok(Caller::anonymous());
        }
        let token = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthenticated("send Authorization: Bearer <token>".to_string())
            })?;
        let digest = token_digest(token);
        if let Some(known) = self.tokens.get(&digest) {
            return known.map_err(ApiError::Unauthenticated);
        }
        let answer = self.review_token(token).await?;
        self.tokens.put(digest, answer.clone());
        answer.map_err(ApiError::Unauthenticated)
    }

    /// Whether `caller` holds `permission`; `Forbidden` names what is missing.
    pub async fn authorize(&self, caller: &Caller, permission: Permission) -> Result<(), ApiError> {
        if self.mode == AuthMode::None {
            return Ok(());
        }
        let key = (caller.clone(), permission);
        let allowed = match self.access.get(&key) {
            Some(allowed) => allowed,
            None => {
                let allowed = self.review_access(&key.0, &key.1).await?;
                self.access.put(key.clone(), allowed);
                allowed
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{} may not {}",
                caller.username,
                key.1.describe()
            )))
        }
    }

    async fn review_token(&self, token: &str) -> Result<Result<Caller, String>, ApiError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ApiError::Upstream(format!("TokenReview failed: {e}")))?;
        let status = answer.status.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        match (status.authenticated, user.username) {
            (Some(true), Some(username)) => Ok(Ok(Caller {
                username,
                groups: user.groups.unwrap_or_default(),
            })),
            _ => Ok(Err(format!(
                "the bearer token was not accepted{}",
                status.error.map(|e| format!(": {e}")).unwrap_or_default()
            ))),
        }
    }

    async fn review_access(
        &self,
        caller: &Caller,
        permission: &Permission,
    ) -> Result<bool, ApiError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(caller.username.clone()),
                groups: Some(caller.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(crate::crd::GROUP.to_string()),
                    resource: Some(permission.resource.to_string()),
                    subresource: permission.subresource.map(str::to_string),
                    verb: Some(permission.verb.to_string()),
                    namespace: Some(permission.namespace.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ApiError::Upstream(format!("SubjectAccessReview failed: {e}")))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

/// SHA-256 of a token: the cache keeps no token itself.
fn token_digest(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A small map whose entries expire after [`REVIEW_TTL`].
struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K, V> Default for TtlCache<K, V> {
    fn default() -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + std::hash::Hash, V: Clone> TtlCache<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, value)| value.clone())
    }

    fn put(&self, key: K, value: V) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_LIMIT {
            entries.retain(|_, (expires, _)| *expires > now);
        }
        if entries.len() < CACHE_LIMIT {
            entries.insert(key, (now + REVIEW_TTL, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_authentication_only_on_loopback() {
        let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("address");
        let loopback6: SocketAddr = "[::1]:8080".parse().expect("address");
        let everywhere: SocketAddr = "0.0.0.0:8080".parse().expect("address");
        assert!(AuthMode::None.check_bind(loopback).is_ok());
        assert!(AuthMode::None.check_bind(loopback6).is_ok());
        let refused = AuthMode::None.check_bind(everywhere).expect_err("refused");
        assert!(refused.contains("loopback"), "{refused}");
        assert!(AuthMode::Kubernetes.check_bind(everywhere).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn cached_answers_expire() {
        let cache: TtlCache<u8, bool> = TtlCache::default();
        cache.put(1, true);
        assert_eq!(cache.get(&1), Some(true));
        tokio::time::advance(REVIEW_TTL).await;
        assert_eq!(cache.get(&1), None);
    }
}
