//! NAME as kubectl users mean it: a Platform (or PlatformGroup) in the namespace. The REST
//! API's lookup does the matching (the name, or the legacy `spec.platformId`); only the
//! messages are kubectl's.

use std::sync::Arc;

use platform_operator::api::lookup;
use platform_operator::api::problem::ApiError;
use platform_operator::crd::PlatformGroup;
use platform_operator::graph::NodeKey;

use crate::cluster::Loaded;
use crate::error::CliError;

/// A Platform's name wins over another's `spec.platformId`, as names are what kubectl means.
pub fn find_platform(loaded: &Loaded, name: &str, namespace: &str) -> Result<NodeKey, CliError> {
    let by_name = NodeKey::new(namespace, name);
    if loaded.snapshot.platforms.contains_key(&by_name) {
        return Ok(by_name);
    }
    lookup::find_platform(&loaded.platforms, name, Some(namespace)).map_err(|e| match e {
        ApiError::UnknownPlatform { .. } => CliError::NotFound(format!(
            "platform {name:?} not found in namespace {namespace:?}"
        )),
        other => ambiguous(other, name, namespace),
    })
}

pub fn find_group(
    loaded: &Loaded,
    name: &str,
    namespace: &str,
) -> Result<Arc<PlatformGroup>, CliError> {
    lookup::find_group(&loaded.groups, name, Some(namespace)).map_err(|e| match e {
        ApiError::UnknownGroup { .. } => CliError::NotFound(format!(
            "platform group {name:?} not found in namespace {namespace:?}"
        )),
        other => ambiguous(other, name, namespace),
    })
}

fn ambiguous(error: ApiError, name: &str, namespace: &str) -> CliError {
    match error {
        ApiError::Ambiguous { candidates, .. } => {
            let names: Vec<String> = candidates
                .iter()
                .filter_map(|c| c.get("name").and_then(|n| n.as_str()).map(String::from))
                .collect();
            CliError::NotPossible(format!(
                "{name:?} is the spec.platformId of several platforms in namespace \
                 {namespace:?}: {}; name one of them",
                names.join(", ")
            ))
        }
        other => CliError::NotPossible(other.to_string()),
    }
}
