//! The benchmarks' setup: many objects server-side applied at once.

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why an object could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("failed to encode {name}: {source}")]
    Encode {
        name: String,
        source: serde_json::Error,
    },
    #[error("failed to apply {name}: {source}")]
    Api { name: String, source: kube::Error },
}

/// Server-side applies `objects` (force, as `manager`), `in_flight` at a time; the first
/// failure is returned once all have been tried.
pub async fn apply_all<K>(
    api: &Api<K>,
    manager: &str,
    in_flight: usize,
    objects: Vec<K>,
) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let params = PatchParams::apply(manager).force();
    let results = futures::stream::iter(objects.into_iter().map(|object| {
        let (api, params) = (api.clone(), params.clone());
        async move {
            let name = object.meta().name.clone().unwrap_or_default();
            let mut body = serde_json::to_value(&object).map_err(|source| ApplyError::Encode {
                name: name.clone(),
                source,
            })?;
            body["apiVersion"] = K::api_version(&()).into();
            body["kind"] = K::kind(&()).into();
            api.patch(&name, &params, &Patch::Apply(body))
                .await
                .map(|_| ())
                .map_err(|source| ApplyError::Api { name, source })
        }
    }))
    .buffer_unordered(in_flight.max(1))
    .collect::<Vec<_>>()
    .await;
    results.into_iter().collect()
}
