//! What the caches keep of each object: only what the operator reads. At 10,000 platforms the
//! caches are most of the operator's memory, and most of an object is what it never reads:
//! `managedFields` (often larger than the rest), a client-side apply's
//! `last-applied-configuration` copy, a pod's spec and most of its status (supervision reads
//! readiness, container waiting and termination reasons, restart counts and scheduling),
//! a Deployment's pod template spec (its changes are detected by the spec hash annotation), a
//! ConfigMap's data (likewise).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{Platform, PlatformGroup};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

pub fn platform(platform: &mut Platform) {
    trim_meta(&mut platform.metadata);
}

pub fn group(group: &mut PlatformGroup) {
    trim_meta(&mut group.metadata);
}

pub fn deployment(deployment: &mut Deployment) {
    trim_meta(&mut deployment.metadata);
    if let Some(spec) = deployment.spec.as_mut() {
        spec.template.spec = None;
    }
}

pub fn config_map(config_map: &mut ConfigMap) {
    trim_meta(&mut config_map.metadata);
    config_map.data = None;
    config_map.binary_data = None;
}

pub fn pod(pod: &mut Pod) {
    trim_meta(&mut pod.metadata);
    pod.metadata.annotations = None;
    pod.spec = None;
    if let Some(status) = pod.status.as_mut() {
        let kept = PodStatus {
            conditions: status.conditions.take().map(|conditions| {
                conditions
                    .into_iter()
                    .filter(|c| c.type_ == "Ready" || c.type_ == "PodScheduled")
                    .map(|c| PodCondition {
                        // Unschedulable's message is what a person needs; Ready's is not read.
                        message: (c.type_ == "PodScheduled").then_some(c.message).flatten(),
                        ..c
                    })
                    .collect()
            }),
            container_statuses: status.container_statuses.take().map(|containers| {
                containers
                    .into_iter()
                    .map(|c| ContainerStatus {
                        image: String::new(),
                        image_id: String::new(),
                        container_id: None,
                        resources: None,
                        volume_mounts: None,
                        allocated_resources: None,
                        user: None,
                        ..c
                    })
                    .collect()
            }),
            phase: status.phase.take(),
            ..Default::default()
        };
        *status = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use crate::controller::observe::deployment_state;

    #[test]
    fn a_trimmed_deployment_decides_the_same() {
        let mut full = Deployment {
            metadata: ObjectMeta {
                annotations: Some([("pmp.dev/spec-hash".to_string(), "abc".to_string())].into()),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(2),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        annotations: Some(
                            [("pmp.dev/restartedAt".to_string(), "r1".to_string())].into(),
                        ),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                },
                ..Default::default()
            }),
            status: None,
        };
        let before = deployment_state(&full);
        deployment(&mut full);
        assert_eq!(deployment_state(&full), before);
        assert!(full.metadata.managed_fields.is_none());
        assert!(
            full.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .is_none()
        );
    }

    #[test]
    fn a_trimmed_pod_keeps_what_identifies_it() {
        let mut p = Pod {
            metadata: ObjectMeta {
                name: Some("a-1".into()),
                namespace: Some("ns".into()),
                labels: Some([("pmp.dev/platform".to_string(), "a".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        pod(&mut p);
        assert_eq!(p.metadata.name.as_deref(), Some("a-1"));
        assert!(p.metadata.labels.is_some());
        assert!(p.spec.is_none() && p.status.is_none());
    }

    #[test]
    fn a_trimmed_pod_keeps_what_supervision_reads() {
        use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting};
        let mut p = Pod {
            status: Some(PodStatus {
                conditions: Some(vec![
                    PodCondition {
                        type_: "Ready".into(),
                        status: "False".into(),
                        message: Some("containers not ready".into()),
                        ..Default::default()
                    },
                    PodCondition {
                        type_: "Initialized".into(),
                        status: "True".into(),
                        ..Default::default()
                    },
                ]),
                container_statuses: Some(vec![ContainerStatus {
                    name: "main".into(),
                    image: "registry.example/app:1".into(),
                    restart_count: 4,
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".into()),
                            message: Some("back-off 40s".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                host_ip: Some("10.0.0.1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod(&mut p);
        let status = p.status.expect("status kept");
        let conditions = status.conditions.expect("conditions");
        assert_eq!(conditions.len(), 1, "only Ready and PodScheduled");
        assert_eq!(conditions[0].message, None);
        let container = &status.container_statuses.expect("containers")[0];
        assert_eq!(container.restart_count, 4);
        assert_eq!(
            container
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("CrashLoopBackOff")
        );
        assert!(container.image.is_empty() && status.host_ip.is_none());
    }
}
