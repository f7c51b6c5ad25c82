//! Pure: the `PodStatus` a kubelet would report for a [`Snapshot`] of a pod's timeline.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::timeline::{Snapshot, State, Termination};

/// Where the pod runs: the simulated node's address and the pod's own address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub host_ip: String,
    pub pod_ip: String,
}

/// The status to report for `pod`, admitted at `admitted`, in the state `snapshot`.
pub fn pod_status(
    pod: &Pod,
    snapshot: &Snapshot,
    admitted: Timestamp,
    placement: &Placement,
) -> PodStatus {
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|spec| spec.containers.iter())
        .map(|c| c.name.as_str())
        .collect();
    let images: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|spec| spec.containers.iter())
        .map(|c| c.image.as_deref().unwrap_or(""))
        .collect();
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let running = matches!(snapshot.state, State::Running { .. });

    let container_statuses = names
        .iter()
        .zip(&images)
        .map(|(name, image)| {
            let container_id = container_id(uid, name, snapshot.restart_count);
            let state = match &snapshot.state {
                State::Waiting { reason, backoff } => ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.clone()),
                        message: match backoff {
                            Some(wait) => Some(format!(
                                "back-off {}s restarting failed container={name} pod={pod_name}_{namespace}({uid})",
                                wait.as_secs()
                            )),
                            None if reason != "ContainerCreating" => Some(format!(
                                "simulated start failure (sim.pmp.dev/fail-start: {reason})"
                            )),
                            None => None,
                        },
                    }),
                    ..ContainerState::default()
                },
                State::Running { started_at } => ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(*started_at)),
                    }),
                    ..ContainerState::default()
                },
                State::Terminated(termination) => {
                    terminated(termination, Some(container_id.clone()))
                }
            };
            ContainerStatus {
                name: (*name).to_owned(),
                image: (*image).to_owned(),
                image_id: format!("sim.pmp.dev/{image}@sha256:simulated"),
                container_id: snapshot.started_once.then_some(container_id),
                ready: snapshot.ready,
                started: Some(running),
                restart_count: snapshot.restart_count,
                state: Some(state),
                last_state: Some(
                    snapshot
                        .last_state
                        .as_ref()
                        .map(|t| {
                            let previous = (snapshot.restart_count - 1).max(0);
                            terminated(t, Some(self::container_id(uid, name, previous)))
                        })
                        .unwrap_or_default(),
                ),
                ..ContainerStatus::default()
            }
        })
        .collect();

    let admitted_time = Some(Time(admitted));
    let ready_condition = |type_: &str| PodCondition {
        type_: type_.to_owned(),
        status: bool_status(snapshot.ready).to_owned(),
        last_transition_time: Some(Time(snapshot.ready_changed_at)),
        reason: (!snapshot.ready).then(|| "ContainersNotReady".to_owned()),
        message: (!snapshot.ready)
            .then(|| format!("containers with unready status: [{}]", names.join(" "))),
        ..PodCondition::default()
    };
    let true_condition = |type_: &str| PodCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        last_transition_time: admitted_time.clone(),
        ..PodCondition::default()
    };
    let conditions = vec![
        true_condition("PodReadyToStartContainers"),
        true_condition("Initialized"),
        ready_condition("Ready"),
        ready_condition("ContainersReady"),
        true_condition("PodScheduled"),
    ];
    PodStatus {
        phase: Some(
            if snapshot.started_once {
                "Running"
            } else {
                "Pending"
            }
            .to_owned(),
        ),
        conditions: Some(conditions),
        container_statuses: Some(container_statuses),
        host_ip: Some(placement.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: placement.host_ip.clone(),
        }]),
        pod_ip: Some(placement.pod_ip.clone()),
        pod_ips: Some(vec![PodIP {
            ip: placement.pod_ip.clone(),
        }]),
        start_time: admitted_time,
        ..PodStatus::default()
    }
}

fn terminated(termination: &Termination, container_id: Option<String>) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: termination.exit_code,
            reason: Some(termination.reason.clone()),
            started_at: termination.started_at.map(Time),
            finished_at: Some(Time(termination.finished_at)),
            container_id,
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    }
}

fn container_id(uid: &str, name: &str, instance: i32) -> String {
    format!("sim://{uid}/{name}/{instance}")
}

fn bool_status(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// Whether every field of `desired` is present with the same value in `actual` (objects
/// recursively; arrays element-wise with equal length). Fields the server added are ignored.
pub fn json_subset(desired: &serde_json::Value, actual: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d.iter().all(|(key, value)| match a.get(key) {
            Some(other) => json_subset(value, other),
            None => value.is_null(),
        }),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(x, y)| json_subset(x, y))
        }
        (d, a) => d == a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::script::PodScript;
    use crate::workload::timeline::{Anchors, add, simulate};
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use std::time::Duration;

    fn pod() -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web-abc-xyz12".into()),
                namespace: Some("shop".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("nginx:1".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    fn placement() -> Placement {
        Placement {
            host_ip: "10.0.0.10".into(),
            pod_ip: "10.244.0.7".into(),
        }
    }

    fn status_at(script: &PodScript, seconds: u64) -> PodStatus {
        let admitted = Timestamp::from_second(1_700_000_000).unwrap();
        let anchors = Anchors {
            admitted,
            stopping: None,
        };
        let now = add(admitted, Duration::from_secs(seconds));
        let (snapshot, _) = simulate(script, anchors, now, None);
        pod_status(&pod(), &snapshot, admitted, &placement())
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
    }

    #[test]
    fn a_ready_pod_reports_running_and_ready() {
        let status = status_at(&PodScript::default(), 5);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&status, "Ready").status, "True");
        assert_eq!(condition(&status, "ContainersReady").status, "True");
        assert_eq!(condition(&status, "PodScheduled").status, "True");
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.7"));
        let container = &status.container_statuses.as_ref().unwrap()[0];
        assert!(container.ready);
        assert_eq!(container.started, Some(true));
        assert!(container.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn a_crash_looping_pod_reports_back_off_and_last_state() {
        let script = PodScript {
            crash_after: Some(Duration::from_secs(2)),
            ..PodScript::default()
        };
        let status = status_at(&script, 3);
        assert_eq!(condition(&status, "Ready").status, "False");
        assert_eq!(
            condition(&status, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
        let container = &status.container_statuses.as_ref().unwrap()[0];
        let waiting = container.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        assert!(waiting.message.as_ref().unwrap().contains("back-off 10s"));
        let last = container
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(last.exit_code, 1);
        assert_eq!(last.reason.as_deref(), Some("Error"));
    }

    #[test]
    fn a_pod_not_started_yet_is_pending() {
        let script = PodScript {
            start_after: Duration::from_secs(10),
            ..PodScript::default()
        };
        let status = status_at(&script, 1);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let container = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(container.container_id, None);
        assert_eq!(container.started, Some(false));
    }

    #[test]
    fn json_subset_ignores_fields_the_server_added() {
        let desired = serde_json::json!({"a": 1, "b": [{"c": 2}], "gone": null});
        let actual = serde_json::json!({"a": 1, "b": [{"c": 2, "d": 3}], "extra": true});
        assert!(json_subset(&desired, &actual));
        assert!(!json_subset(&serde_json::json!({"a": 2}), &actual));
        assert!(!json_subset(&serde_json::json!({"b": []}), &actual));
    }
}
