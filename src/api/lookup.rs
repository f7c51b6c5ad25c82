//! Finding what a path names. Legacy callers know no namespaces: a platform is named by its
//! legacy id (`spec.platformId`) or its name, looked up in every watched namespace, and
//! `?namespace=` chooses when several match.

use std::sync::Arc;

use kube::ResourceExt;
use serde_json::json;

use crate::crd::{Platform, PlatformGroup};
use crate::graph::NodeKey;
use crate::stack::key_of;

use super::problem::ApiError;

/// The one platform whose name or legacy id is `id` (in `namespace` if given).
pub fn find_platform(
    platforms: &[Arc<Platform>],
    id: &str,
    namespace: Option<&str>,
) -> Result<NodeKey, ApiError> {
    let matches: Vec<&Arc<Platform>> = platforms
        .iter()
        .filter(|p| namespace.is_none_or(|ns| p.namespace().as_deref() == Some(ns)))
        .filter(|p| p.name_any() == id || p.spec.platform_id.as_deref() == Some(id))
        .collect();
    match matches.as_slice() {
        [] => Err(ApiError::UnknownPlatform { id: id.to_string() }),
        [one] => Ok(key_of(one.as_ref())),
        several => {
            let mut candidates: Vec<_> = several
                .iter()
                .map(|p| {
                    json!({
                        "namespace": p.namespace(),
                        "name": p.name_any(),
                        "platformId": p.spec.platform_id,
                    })
                })
                .collect();
            candidates.sort_by_key(|c| c.to_string());
            Err(ApiError::Ambiguous {
                id: id.to_string(),
                candidates,
            })
        }
    }
}

/// The one group named `name` (in `namespace` if given).
pub fn find_group(
    groups: &[Arc<PlatformGroup>],
    name: &str,
    namespace: Option<&str>,
) -> Result<Arc<PlatformGroup>, ApiError> {
    let matches: Vec<&Arc<PlatformGroup>> = groups
        .iter()
        .filter(|g| namespace.is_none_or(|ns| g.namespace().as_deref() == Some(ns)))
        .filter(|g| g.name_any() == name)
        .collect();
    match matches.as_slice() {
        [] => Err(ApiError::UnknownGroup {
            name: name.to_string(),
        }),
        [one] => Ok(Arc::clone(one)),
        several => Err(ApiError::Ambiguous {
            id: name.to_string(),
            candidates: several
                .iter()
                .map(|g| json!({"namespace": g.namespace(), "name": g.name_any()}))
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::platform;

    fn platforms() -> Vec<Arc<Platform>> {
        vec![
            Arc::new(
                platform("market-data-service")
                    .namespace("trading")
                    .platform_id("market_data_service")
                    .build(),
            ),
            Arc::new(platform("market-data-service").namespace("staging").build()),
            Arc::new(platform("ml-inference").namespace("trading").build()),
        ]
    }

    #[test]
    fn a_legacy_id_or_a_name_finds_the_platform() {
        let all = platforms();
        let by_id = find_platform(&all, "market_data_service", None).expect("found");
        assert_eq!(by_id, NodeKey::new("trading", "market-data-service"));
        let by_name = find_platform(&all, "ml-inference", None).expect("found");
        assert_eq!(by_name, NodeKey::new("trading", "ml-inference"));
    }

    #[test]
    fn a_name_in_two_namespaces_is_ambiguous_until_a_namespace_is_given() {
        let all = platforms();
        let error = find_platform(&all, "market-data-service", None).expect_err("ambiguous");
        let ApiError::Ambiguous { candidates, .. } = &error else {
            panic!("expected ambiguity, got {error:?}");
        };
        assert_eq!(candidates.len(), 2);
        assert_eq!(error.status(), axum::http::StatusCode::CONFLICT);
        let chosen = find_platform(&all, "market-data-service", Some("staging")).expect("found");
        assert_eq!(chosen, NodeKey::new("staging", "market-data-service"));
    }

    #[test]
    fn an_unknown_id_is_not_found() {
        let error = find_platform(&platforms(), "nope", None).expect_err("unknown");
        assert_eq!(error.status(), axum::http::StatusCode::NOT_FOUND);
        let error =
            find_platform(&platforms(), "ml-inference", Some("staging")).expect_err("unknown");
        assert_eq!(error.status(), axum::http::StatusCode::NOT_FOUND);
    }
}
