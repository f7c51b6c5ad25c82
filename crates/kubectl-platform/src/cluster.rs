//! The cluster as kubectl sees it: the client from the kubeconfig, one snapshot of the Platforms
//! and PlatformGroups (the same [`Snapshot`] the REST API plans from), and who is asking.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use platform_operator::api::control::Snapshot;
use platform_operator::controller::Topology;
use platform_operator::crd::{Platform, PlatformGroup};
use platform_operator::stack::key_of;
use serde::de::DeserializeOwned;

use crate::cli::Global;
use crate::error::CliError;

/// The field manager of the plugin's writes, so `managedFields` tells them apart.
pub const FIELD_MANAGER: &str = "kubectl-platform";

pub struct Cluster {
    pub client: Client,
    /// `-n`, else the context's namespace.
    pub namespace: String,
}

/// What one listing saw: the lists, and the snapshot built from them.
pub struct Loaded {
    pub platforms: Vec<Arc<Platform>>,
    pub groups: Vec<Arc<PlatformGroup>>,
    pub snapshot: Snapshot,
}

/// Who asks, and the cluster's time of asking.
pub struct Requester {
    /// `kubectl:<user>`, or `kubectl:unknown` when the API server would not say.
    pub actor: String,
    /// RFC 3339, whole seconds.
    pub now: String,
}

impl Cluster {
    pub async fn connect(global: &Global) -> Result<Cluster, CliError> {
        let options = KubeConfigOptions {
            context: global.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &global.kubeconfig {
            Some(path) => {
                let kubeconfig =
                    Kubeconfig::read_from(path).map_err(|e| CliError::Config(e.to_string()))?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| CliError::Config(format!("failed to load the kubeconfig: {e}")))?;
        let namespace = global
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)
            .map_err(|e| CliError::Config(format!("failed to create a client: {e}")))?;
        Ok(Cluster { client, namespace })
    }

    /// Every Platform and PlatformGroup, so that dependencies and dependents in other
    /// namespaces count; only the namespace's when listing them all is forbidden and
    /// `everywhere` is not asked for.
    pub async fn load(&self, everywhere: bool) -> Result<Loaded, CliError> {
        let platforms: Vec<Arc<Platform>> = self.list(everywhere).await?;
        let groups: Vec<Arc<PlatformGroup>> = self.list(everywhere).await?;
        let snapshot = Snapshot {
            platforms: platforms
                .iter()
                .map(|p| (key_of(p.as_ref()), Arc::clone(p)))
                .collect::<HashMap<_, _>>(),
            topology: Arc::new(Topology::of(&platforms, &groups)),
        };
        Ok(Loaded {
            platforms,
            groups,
            snapshot,
        })
    }

    async fn list<K>(&self, everywhere: bool) -> Result<Vec<Arc<K>>, CliError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let plural = K::plural(&K::DynamicType::default()).to_string();
        let all: Api<K> = Api::all(self.client.clone());
        let listed = match all.list(&ListParams::default()).await {
            Err(kube::Error::Api(status)) if status.code == 403 && !everywhere => {
                let here: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
                here.list(&ListParams::default()).await
            }
            other => other,
        };
        let list = listed.map_err(|e| CliError::kube(e, &format!("list {plural}")))?;
        Ok(list.items.into_iter().map(Arc::new).collect())
    }

    /// Who the credentials stand for (a SelfSubjectReview) and the API server's clock (its
    /// `Date` header): the operator records an action for the requester only when the request
    /// is newer than the platform's last recorded action, by the operator's clock, so a
    /// workstation's clock running behind would lose the attribution.
    pub async fn requester(&self) -> Requester {
        let review = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
        });
        let request = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(review.to_string().into_bytes());
        let response = match request {
            Ok(request) => self.client.send(request.map(Into::into)).await.ok(),
            Err(_) => None,
        };
        let mut user = None;
        let mut server_time = None;
        if let Some(response) = response {
            server_time = response
                .headers()
                .get(http::header::DATE)
                .and_then(|d| d.to_str().ok())
                .and_then(parse_http_date);
            if response.status().is_success() {
                let body = response.into_body().collect_bytes().await.ok();
                user = body
                    .and_then(|b| serde_json::from_slice::<SelfSubjectReview>(&b).ok())
                    .and_then(|r| r.status?.user_info?.username)
                    .filter(|u| !u.is_empty());
            }
        }
        let now = server_time.unwrap_or_else(Timestamp::now);
        Requester {
            actor: format!("kubectl:{}", user.as_deref().unwrap_or("unknown")),
            now: Timestamp::from_second(now.as_second())
                .unwrap_or(now)
                .to_string(),
        }
    }
}

fn parse_http_date(text: &str) -> Option<Timestamp> {
    k8s_openapi::jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(text)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse_to_the_second() {
        let parsed = parse_http_date("Sun, 06 Dec 2026 15:53:26 GMT").expect("parses");
        assert_eq!(parsed.to_string(), "2026-12-06T15:53:26Z");
        assert!(parse_http_date("yesterday").is_none());
    }
}
