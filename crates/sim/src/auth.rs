//! TokenReview and SubjectAccessReview, answered from a configurable table instead of real
//! authenticators and RBAC.

use serde_json::{Value, json};

/// Who a request without a bearer token is (see [`AuthTable::review_self`]).
pub const ANONYMOUS_ADMIN: &str = "kubernetes-admin";

/// The identity a token stands for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// One allow rule; `"*"` matches anything in a field. `subject` is a user name, or a group as
/// `group:NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRule {
    pub subject: String,
    pub verb: String,
    pub resource: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Default)]
pub struct AuthTable {
    pub tokens: Vec<(String, UserInfo)>,
    pub rules: Vec<AccessRule>,
}

impl AuthTable {
    pub fn with_token(mut self, token: &str, user: &str, groups: &[&str]) -> Self {
        self.tokens.push((
            token.into(),
            UserInfo {
                username: user.into(),
                uid: format!("uid-{user}"),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        ));
        self
    }

    pub fn allow(mut self, subject: &str, verb: &str, resource: &str, namespace: &str) -> Self {
        self.rules.push(AccessRule {
            subject: subject.into(),
            verb: verb.into(),
            resource: resource.into(),
            namespace: namespace.into(),
        });
        self
    }

    /// Fills `status` of a TokenReview.
    pub fn review_token(&self, review: &Value) -> Value {
        let token = review
            .pointer("/spec/token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match self.tokens.iter().find(|(t, _)| t == token) {
            Some((_, user)) => json!({
                "authenticated": true,
                "user": {"username": user.username, "uid": user.uid, "groups": user.groups},
                "audiences": review.pointer("/spec/audiences").cloned().unwrap_or(json!([])),
            }),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        }
    }

    /// Fills `status` of a SelfSubjectReview for a request with `token` (its bearer token), or
    /// `None` when the token is not in the table (a real API server answers 401 then). Requests
    /// are not authenticated by the simulator, so one without a token is the cluster admin
    /// ([`ANONYMOUS_ADMIN`]), as a client with kubeadm's admin kubeconfig would be.
    pub fn review_self(&self, token: Option<&str>) -> Option<Value> {
        let user = match token {
            None => UserInfo {
                username: ANONYMOUS_ADMIN.into(),
                uid: String::new(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            },
            Some(token) => self.tokens.iter().find(|(t, _)| t == token)?.1.clone(),
        };
        Some(json!({
            "userInfo": {"username": user.username, "uid": user.uid, "groups": user.groups},
        }))
    }

    /// Fills `status` of a SubjectAccessReview.
    pub fn review_access(&self, review: &Value) -> Value {
        let spec = review.get("spec").cloned().unwrap_or(json!({}));
        let user = spec.get("user").and_then(Value::as_str).unwrap_or_default();
        let groups: Vec<&str> = spec
            .get("groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let attrs = spec.get("resourceAttributes").cloned().unwrap_or(json!({}));
        let field = |name: &str| {
            attrs
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (verb, resource, namespace) = (field("verb"), field("resource"), field("namespace"));
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        let allowed = self.rules.iter().find(|r| {
            let subject = match r.subject.strip_prefix("group:") {
                Some(g) => groups.contains(&g),
                None => matches(&r.subject, user),
            };
            subject
                && matches(&r.verb, &verb)
                && matches(&r.resource, &resource)
                && matches(&r.namespace, &namespace)
        });
        match allowed {
            Some(rule) => {
                json!({"allowed": true, "reason": format!("allowed by rule for {}", rule.subject)})
            }
            None => json!({"allowed": false, "reason": "no rule allows this request"}),
        }
    }
}
