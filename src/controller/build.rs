//! The objects a Platform owns, built purely from its spec and effective settings: one
//! Deployment and, when it has `spec.config`, one ConfigMap mounted into the pods.
//!
//! Each built object carries a hash of itself in an annotation; the apply step writes only when
//! that hash differs from the one on the live object, so an unchanged platform costs no write.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, ExecAction, HTTPGetAction, PodSpec,
    PodTemplateSpec, Probe as K8sProbe, ResourceRequirements, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::crd::{CpuMemory, Platform, PodTemplate};
use crate::stack::EffectiveSettings;

use super::error::Error;
use super::model::RESTART_ANNOTATION;

/// Label on every object the operator manages (and the selector of its caches).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "platform-operator";
/// Label tying a Deployment and its pods to their Platform.
pub const PLATFORM_LABEL: &str = "pmp.dev/platform";
/// Annotation holding the hash of the built object.
pub const SPEC_HASH_ANNOTATION: &str = "pmp.dev/spec-hash";
/// Pod template annotation that changes with `spec.config`, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "pmp.dev/config-hash";
/// Where `spec.config` is mounted.
pub const CONFIG_MOUNT_PATH: &str = "/etc/platform/config";
const CONFIG_VOLUME: &str = "platform-config";
const MAIN_CONTAINER: &str = "platform";

/// The ConfigMap of a platform: `<name>-config`.
pub fn config_map_name(platform_name: &str) -> String {
    format!("{platform_name}-config")
}

/// Pod template annotation carrying the operator's own last restart (supervision), apart from
/// the user's request so that neither is mistaken for the other.
pub const SUPERVISOR_RESTART_ANNOTATION: &str = "pmp.dev/supervisorRestartedAt";

/// The restarts a Deployment's pod template carries: a new value rolls the pods.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestartMarks<'a> {
    /// The user's request (`pmp.dev/restartedAt`) last carried out.
    pub requested: Option<&'a str>,
    /// The operator's own last restart.
    pub supervisor: Option<&'a str>,
}

/// The Deployment for `platform` at `replicas`, carrying the restarts `restarts`.
pub fn build_deployment(
    platform: &Platform,
    settings: &EffectiveSettings,
    replicas: i32,
    restarts: RestartMarks<'_>,
) -> Result<Deployment, Error> {
    let name = platform
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata("metadata.name"))?;
    let selector: BTreeMap<String, String> = [(PLATFORM_LABEL.to_string(), name.clone())].into();

    let mut template = pod_template(platform)?;
    let pod_meta = template.metadata.get_or_insert_with(Default::default);
    let labels = pod_meta.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(platform.spec.pod_labels.clone());
    labels.extend(selector.clone());
    let annotations = pod_meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.extend(platform.spec.pod_annotations.clone());
    if !platform.spec.config.is_empty() {
        annotations.insert(
            CONFIG_HASH_ANNOTATION.into(),
            digest_of(&platform.spec.config)?,
        );
    }
    if let Some(request) = restarts.requested {
        annotations.insert(RESTART_ANNOTATION.into(), request.to_string());
    }
    if let Some(token) = restarts.supervisor {
        annotations.insert(SUPERVISOR_RESTART_ANNOTATION.into(), token.to_string());
    }

    let pod = template.spec.get_or_insert_with(Default::default);
    pod.termination_grace_period_seconds = Some(i64::from(settings.grace_period_seconds));
    if !platform.spec.config.is_empty() {
        pod.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(&name),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if let Some(main) = pod.containers.first_mut() {
        decorate_main_container(main, platform, settings);
    }

    let labels: BTreeMap<String, String> = [
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        ("app.kubernetes.io/name".to_string(), name.clone()),
        (PLATFORM_LABEL.to_string(), name.clone()),
    ]
    .into();
    let mut deployment = Deployment {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: platform.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner_reference(platform)?]),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            template,
            ..Default::default()
        }),
        status: None,
    };
    stamp_hash(&mut deployment.metadata, &deployment.spec)?;
    Ok(deployment)
}

/// The ConfigMap rendering `spec.config`, or `None` when the platform has no config.
pub fn build_config_map(platform: &Platform) -> Result<Option<ConfigMap>, Error> {
    if platform.spec.config.is_empty() {
        return Ok(None);
    }
    let name = platform
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingMetadata("metadata.name"))?;
    let mut config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(name)),
            namespace: platform.metadata.namespace.clone(),
            labels: Some(
                [
                    (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                    (PLATFORM_LABEL.to_string(), name.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![owner_reference(platform)?]),
            ..Default::default()
        },
        data: Some(platform.spec.config.clone()),
        ..Default::default()
    };
    stamp_hash(&mut config_map.metadata, &config_map.data)?;
    Ok(Some(config_map))
}

/// Whether `platform`'s workload can be built, without building it: the check for a platform
/// that is not due to start yet.
pub fn check_workload(platform: &Platform) -> Result<(), Error> {
    pod_template(platform).map(|_| ())
}

/// The platform's pod template as the user gave it (a full `template`, or one container from
/// `image` and its companions), with at least one container.
fn pod_template(platform: &Platform) -> Result<PodTemplateSpec, Error> {
    let template = match &platform.spec.template {
        Some(template) => parse_template(template)?,
        None => PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![simple_container(platform)?],
                ..Default::default()
            }),
        },
    };
    if template
        .spec
        .as_ref()
        .is_none_or(|s| s.containers.is_empty())
    {
        return Err(Error::InvalidSpec(
            "spec.template.spec.containers must have at least one container".into(),
        ));
    }
    Ok(template)
}

/// The typed pod template, or an error naming the offending field.
fn parse_template(template: &PodTemplate) -> Result<PodTemplateSpec, Error> {
    serde_path_to_error::deserialize(&template.0).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." {
            "spec.template".to_string()
        } else {
            format!("spec.template.{path}")
        };
        Error::InvalidSpec(format!("{field}: {}", error.inner()))
    })
}

fn simple_container(platform: &Platform) -> Result<Container, Error> {
    let image = platform.spec.image.clone().ok_or_else(|| {
        Error::InvalidSpec("spec.image is required when spec.template is not set".into())
    })?;
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    Ok(Container {
        name: MAIN_CONTAINER.into(),
        image: Some(image),
        command: non_empty(&platform.spec.command),
        args: non_empty(&platform.spec.args),
        env: (!platform.spec.env.is_empty()).then(|| platform.spec.env.clone()),
        ports: (!platform.spec.ports.is_empty()).then(|| {
            platform
                .spec
                .ports
                .iter()
                .map(|p| ContainerPort {
                    name: p.name.clone(),
                    container_port: p.container_port,
                    protocol: p.protocol.clone(),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    })
}

/// Adds what the operator is responsible for to the main container, without overriding what a
/// full template sets itself.
fn decorate_main_container(
    container: &mut Container,
    platform: &Platform,
    settings: &EffectiveSettings,
) {
    if container.resources.is_none() {
        let to_map = |side: &Option<CpuMemory>| -> Option<BTreeMap<String, Quantity>> {
            let side = side.as_ref()?;
            let map: BTreeMap<String, Quantity> = [("cpu", &side.cpu), ("memory", &side.memory)]
                .into_iter()
                .filter_map(|(k, v)| v.clone().map(|q| (k.to_string(), q)))
                .collect();
            (!map.is_empty()).then_some(map)
        };
        let requests = to_map(&settings.resources.requests);
        let limits = to_map(&settings.resources.limits);
        if requests.is_some() || limits.is_some() {
            container.resources = Some(ResourceRequirements {
                requests,
                limits,
                ..Default::default()
            });
        }
    }
    if let Some(probe) = &settings.probe {
        let base = K8sProbe {
            http_get: probe.http.as_ref().map(|h| HTTPGetAction {
                path: Some(h.path.clone()),
                port: IntOrString::Int(i32::from(h.port)),
                ..Default::default()
            }),
            tcp_socket: probe.tcp.as_ref().map(|t| TCPSocketAction {
                port: IntOrString::Int(i32::from(t.port)),
                ..Default::default()
            }),
            exec: probe.exec.as_ref().map(|e| ExecAction {
                command: Some(e.command.clone()),
            }),
            period_seconds: Some(settings.health_interval_seconds as i32),
            timeout_seconds: Some(settings.health_timeout_seconds as i32),
            failure_threshold: Some(settings.failure_threshold as i32),
            ..Default::default()
        };
        if container.readiness_probe.is_none() {
            container.readiness_probe = Some(base.clone());
        }
        if container.startup_probe.is_none() {
            // The startup probe allows `startupTimeoutSeconds` before the kubelet gives up.
            let period = 5u32;
            container.startup_probe = Some(K8sProbe {
                period_seconds: Some(period as i32),
                failure_threshold: Some(
                    settings.startup_timeout_seconds.div_ceil(period).max(1) as i32
                ),
                ..base
            });
        }
    }
    if !platform.spec.config.is_empty() {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: CONFIG_VOLUME.into(),
                mount_path: CONFIG_MOUNT_PATH.into(),
                read_only: Some(true),
                ..Default::default()
            });
    }
}

fn owner_reference(platform: &Platform) -> Result<OwnerReference, Error> {
    platform
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("metadata.uid"))
}

fn stamp_hash<T: serde::Serialize>(meta: &mut ObjectMeta, content: &T) -> Result<(), Error> {
    let hash = digest_of(&(&*meta, content))?;
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(SPEC_HASH_ANNOTATION.into(), hash);
    Ok(())
}

/// A digest that stays the same across Rust releases, platforms and builds: the first 16 hex
/// digits of the SHA-256 of the value's canonical JSON (object keys sorted, no whitespace).
/// A digest that changed with the toolchain would roll every workload on an upgrade.
pub fn digest_of<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    let value = serde_json::to_value(value).map_err(|source| Error::Serialize {
        what: "desired object",
        source,
    })?;
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    Ok(digest.as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests;
