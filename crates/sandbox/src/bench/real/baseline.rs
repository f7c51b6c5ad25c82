//! The baseline: the same stack brought up without the operator, as a script would, layer by
//! layer. Each layer's Deployments (the operator's own, built by its `build_deployment`, so
//! the pods are the same) are created once every Deployment of the layer before is ready, as
//! seen by one list of that layer every 50 ms. It gates per layer, not per dependency: a
//! coarser order than the operator's, and what a hand-written rollout usually does.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, ListParams};
use tokio::time::Instant;

use platform_operator::controller::build::{RestartMarks, build_deployment};
use platform_operator::fixtures::platform;
use platform_operator::stack::effective_settings;

use super::cluster::IN_FLIGHT;
use super::{READY_AFTER_ANNOTATION, RealError};
use crate::bench::apply_all;

/// Field manager of the baseline's Deployments.
const BASELINE_MANAGER: &str = "pmp-bench-baseline";
/// Label carrying a Deployment's layer, so that one list reads exactly one layer.
const LAYER_LABEL: &str = "pmp.dev/bench-layer";
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Brings the stack up layer by layer; returns when each layer was seen ready, from the
/// first create (the last one is the baseline's convergence).
pub(super) async fn run(
    client: &Client,
    namespace: &str,
    layers: &[Vec<&str>],
    ready_after: &str,
    timeout: Duration,
) -> Result<Vec<Duration>, RealError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployments = layers
        .iter()
        .map(|layer| {
            layer
                .iter()
                .map(|name| deployment(name, namespace, ready_after))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let begin = Instant::now();
    let deadline = begin + timeout;
    let mut ready = Vec::with_capacity(layers.len());
    for (level, layer) in deployments.into_iter().enumerate() {
        if level > 0 {
            wait_layer_ready(&api, level - 1, layers[level - 1].len(), deadline, timeout).await?;
            ready.push(begin.elapsed());
        }
        create_layer(&api, level, layer).await?;
    }
    let last = layers.len().saturating_sub(1);
    wait_layer_ready(&api, last, layers[last].len(), deadline, timeout).await?;
    ready.push(begin.elapsed());
    Ok(ready)
}

/// The Deployment the operator would write for the platform, without the owner reference
/// (there is no Platform to own it).
fn deployment(name: &str, namespace: &str, ready_after: &str) -> Result<Deployment, RealError> {
    let mut source = platform(name)
        .namespace(namespace)
        .pod_annotation(READY_AFTER_ANNOTATION, ready_after)
        .build();
    // build_deployment's owner reference needs a uid; the reference is dropped below.
    source.metadata.uid = Some(format!("baseline-{name}"));
    let settings = effective_settings(&source, None);
    let mut built =
        build_deployment(&source, &settings, 1, RestartMarks::default()).map_err(|error| {
            RealError::Fixture {
                name: name.to_string(),
                message: error.to_string(),
            }
        })?;
    built.metadata.owner_references = None;
    Ok(built)
}

async fn create_layer(
    api: &Api<Deployment>,
    level: usize,
    mut layer: Vec<Deployment>,
) -> Result<(), RealError> {
    for deployment in &mut layer {
        deployment
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(LAYER_LABEL.into(), level.to_string());
    }
    apply_all(api, BASELINE_MANAGER, IN_FLIGHT, layer)
        .await
        .map_err(RealError::from)
}

/// Polls until all `size` Deployments of layer `level` are ready.
async fn wait_layer_ready(
    api: &Api<Deployment>,
    level: usize,
    size: usize,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), RealError> {
    let selector = format!("{LAYER_LABEL}={level}");
    let params = ListParams::default().labels(&selector);
    loop {
        match api.list(&params).await {
            Ok(list) if list.items.len() == size && list.items.iter().all(is_ready) => {
                return Ok(());
            }
            Ok(_) => {}
            Err(error) => say!("warning: baseline list of layer {level}: {error}"),
        }
        if Instant::now() > deadline {
            return Err(RealError::Timeout {
                what: format!("baseline layer {level} ready"),
                after: timeout,
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Every wanted replica ready, as the deployment controller reports for the current spec.
fn is_ready(deployment: &Deployment) -> bool {
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = deployment.status.as_ref() else {
        return false;
    };
    let current = status.observed_generation >= deployment.metadata.generation;
    current && status.ready_replicas.unwrap_or(0) == wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_deployment_is_the_operators_without_an_owner() {
        let built = deployment("p00-00001", "ns", "1000ms").expect("builds");
        assert_eq!(built.metadata.owner_references, None);
        let template = built.spec.expect("spec").template;
        let annotations = template
            .metadata
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        assert_eq!(
            annotations.get(READY_AFTER_ANNOTATION).map(String::as_str),
            Some("1000ms")
        );
    }
}
