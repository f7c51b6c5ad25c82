use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::workload::pods::{pod_from_template, pod_name};

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

fn deployment(replicas: i32) -> Deployment {
    let labels: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("dep-uid".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("nginx".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn restarted(mut d: Deployment, at: &str) -> Deployment {
    let template = &mut d.spec.as_mut().unwrap().template;
    template
        .metadata
        .as_mut()
        .unwrap()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("kubectl.kubernetes.io/restartedAt".into(), at.into());
    d
}

/// A pod of `d`'s current template, created at `created`, Ready since `ready` if given.
fn pod(d: &Deployment, n: u64, created: i64, ready: Option<i64>) -> Pod {
    let hash = template_hash(&d.spec.as_ref().unwrap().template);
    let mut pod = pod_from_template(d, &hash, &pod_name("web", &hash, n));
    pod.metadata.creation_timestamp = Some(Time(t(created)));
    pod.status = Some(PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready.is_some() { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(t(ready.unwrap_or(created)))),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    pod
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap()
}

fn cond<'a>(status: &'a DeploymentStatus, type_: &str) -> &'a DeploymentCondition {
    status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap()
}

#[test]
fn template_hash_is_stable_and_changes_with_the_template() {
    let d = deployment(1);
    let template = &d.spec.as_ref().unwrap().template;
    let hash = template_hash(template);
    assert_eq!(hash, template_hash(&template.clone()));
    assert_eq!(hash.len(), 10);
    assert!(
        hash.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
    let other = restarted(d.clone(), "2025-01-01T00:00:00Z");
    assert_ne!(hash, template_hash(&other.spec.as_ref().unwrap().template));
}

#[test]
fn pods_are_named_and_labelled_from_the_template() {
    let d = deployment(1);
    let p = pod(&d, 12345, 0, None);
    let pod_name = name(&p);
    let parts: Vec<&str> = pod_name.split('-').collect();
    assert_eq!(parts.len(), 3, "{pod_name}");
    assert_eq!(parts[0], "web");
    assert_eq!(parts[2].len(), 5);
    assert!(
        parts[2]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
    let labels = p.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels[TEMPLATE_HASH_LABEL], parts[1]);
    let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Deployment", "dep-uid")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(p.metadata.namespace.as_deref(), Some("shop"));
}

#[test]
fn strategy_rounds_like_kubernetes() {
    let rolling = |replicas| strategy(&deployment(replicas));
    assert_eq!(
        rolling(1),
        Strategy::RollingUpdate {
            max_surge: 1,
            max_unavailable: 0
        }
    );
    assert_eq!(
        rolling(3),
        Strategy::RollingUpdate {
            max_surge: 1,
            max_unavailable: 0
        }
    );
    assert_eq!(
        rolling(10),
        Strategy::RollingUpdate {
            max_surge: 3,
            max_unavailable: 2
        }
    );
    let mut zero = deployment(4);
    zero.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::String("0%".into())),
        }),
    });
    assert_eq!(
        strategy(&zero),
        Strategy::RollingUpdate {
            max_surge: 0,
            max_unavailable: 1
        }
    );
}

#[test]
fn a_new_deployment_creates_its_replicas() {
    let d = deployment(3);
    let plan = plan(&d, &[], t(0));
    assert_eq!(plan.create, 3);
    assert!(plan.delete.is_empty());
    assert_eq!(plan.status.replicas, None);
    assert_eq!(plan.status.unavailable_replicas, Some(3));
    assert_eq!(plan.status.observed_generation, Some(1));
    assert_eq!(cond(&plan.status, "Available").status, "False");
    assert_eq!(
        cond(&plan.status, "Progressing").reason.as_deref(),
        Some("NewReplicaSetCreated")
    );
}

#[test]
fn ready_pods_complete_the_deployment() {
    let mut d = deployment(2);
    let pods = [pod(&d, 1, 0, Some(1)), pod(&d, 2, 0, Some(2))];
    let refs: Vec<&Pod> = pods.iter().collect();
    let first = plan(&d, &refs, t(3));
    assert_eq!(first.create, 0);
    let s = &first.status;
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas
        ),
        (Some(2), Some(2), Some(2), Some(2))
    );
    assert_eq!(s.unavailable_replicas, None);
    assert_eq!(cond(s, "Available").status, "True");
    assert_eq!(
        cond(s, "Available").reason.as_deref(),
        Some("MinimumReplicasAvailable")
    );
    assert_eq!(
        cond(s, "Progressing").reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(first.recheck_at, None);
    // Nothing changes on the next pass: the same status.
    d.status = Some(first.status.clone());
    assert_eq!(plan(&d, &refs, t(50)).status, first.status);
}

#[test]
fn scaling_down_deletes_not_ready_then_newest_first() {
    let d = deployment(1);
    let pods = [
        pod(&d, 1, 0, Some(1)),
        pod(&d, 2, 5, Some(6)),
        pod(&d, 3, 1, None),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = plan(&d, &refs, t(10));
    assert_eq!(plan.create, 0);
    assert_eq!(plan.delete, [name(&pods[2]), name(&pods[1])]);
    assert_eq!(plan.status.replicas, Some(1));

    let zero = deployment(0);
    let all = super::plan(&zero, &refs, t(10));
    assert_eq!(all.delete.len(), 3);
    assert_eq!(all.status.replicas, None);
    assert_eq!(cond(&all.status, "Available").status, "True");
}

#[test]
fn terminating_pods_do_not_count() {
    let d = deployment(2);
    let mut gone = pod(&d, 1, 0, Some(1));
    gone.metadata.deletion_timestamp = Some(Time(t(5)));
    let kept = pod(&d, 2, 0, Some(1));
    let plan = plan(&d, &[&gone, &kept], t(6));
    assert_eq!(plan.create, 1);
    assert_eq!(plan.status.replicas, Some(1));
}

#[test]
fn rolling_one_replica_surges_and_waits_for_readiness() {
    let old_d = deployment(1);
    let old = pod(&old_d, 1, 0, Some(1));
    let mut d = restarted(old_d.clone(), "now");
    d.status = Some(plan(&old_d, &[&old], t(2)).status);

    // Step 1: one new pod, the old one stays.
    let step1 = plan(&d, &[&old], t(10));
    assert_eq!((step1.create, step1.delete.len()), (1, 0));
    assert_eq!(
        cond(&step1.status, "Progressing").reason.as_deref(),
        Some("NewReplicaSetCreated")
    );
    assert_eq!(cond(&step1.status, "Available").status, "True");

    // Step 2: the new pod exists but is not ready: nothing to do.
    let fresh = pod(&d, 2, 10, None);
    d.status = Some(step1.status);
    let step2 = plan(&d, &[&old, &fresh], t(11));
    assert_eq!((step2.create, step2.delete.len()), (0, 0));
    assert_eq!(step2.status.updated_replicas, Some(1));
    assert_eq!(step2.status.replicas, Some(2));

    // Step 3: the new pod is ready: the old one goes.
    let fresh = pod(&d, 2, 10, Some(12));
    d.status = Some(step2.status);
    let step3 = plan(&d, &[&old, &fresh], t(13));
    assert_eq!(step3.create, 0);
    assert_eq!(step3.delete, [name(&old)]);
    assert_eq!(step3.status.replicas, Some(1));
    assert_eq!(
        cond(&step3.status, "Progressing").reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
}

#[test]
fn rolling_ten_replicas_respects_surge_and_unavailability() {
    let old_d = deployment(10);
    let old: Vec<Pod> = (0..10).map(|i| pod(&old_d, i, 0, Some(1))).collect();
    let d = restarted(old_d, "now");
    let refs: Vec<&Pod> = old.iter().collect();
    // maxSurge 3 → 13 pods at most; a pass that scales up does not scale down.
    let step1 = plan(&d, &refs, t(10));
    assert_eq!((step1.create, step1.delete.len()), (3, 0));
    // maxUnavailable 2 → 8 available at least: two old pods go while the new ones start.
    let fresh: Vec<Pod> = (10..13).map(|i| pod(&d, i, 10, None)).collect();
    let all: Vec<&Pod> = old.iter().chain(&fresh).collect();
    let step2 = plan(&d, &all, t(11));
    assert_eq!((step2.create, step2.delete.len()), (0, 2));
    assert!(
        step2
            .delete
            .iter()
            .all(|n| old.iter().any(|p| &name(p) == n))
    );
}

#[test]
fn unavailable_old_pods_are_cleaned_up_once_the_new_pod_is_available() {
    let old_d = deployment(3);
    let old = [
        pod(&old_d, 1, 0, Some(1)),
        pod(&old_d, 2, 0, Some(1)),
        pod(&old_d, 3, 0, None),
    ];
    let d = restarted(old_d, "now");
    let refs: Vec<&Pod> = old.iter().collect();
    let step1 = plan(&d, &refs, t(10));
    assert_eq!((step1.create, step1.delete.len()), (1, 0));
    // The new pod is not ready: maxUnavailable 0 keeps every old pod.
    let starting = pod(&d, 4, 10, None);
    let with_new: Vec<&Pod> = old.iter().chain([&starting]).collect();
    assert!(plan(&d, &with_new, t(11)).delete.is_empty());
    // The new pod is ready: the not-ready old pod goes first; the ready ones stay.
    let ready = pod(&d, 4, 10, Some(12));
    let with_ready: Vec<&Pod> = old.iter().chain([&ready]).collect();
    let step3 = plan(&d, &with_ready, t(13));
    assert_eq!(step3.delete, [name(&old[2])]);
}

#[test]
fn recreate_deletes_old_pods_before_creating_new_ones() {
    let mut old_d = deployment(2);
    old_d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let old = [pod(&old_d, 1, 0, Some(1)), pod(&old_d, 2, 0, Some(1))];
    let d = restarted(old_d, "now");
    let step1 = plan(&d, &[&old[0], &old[1]], t(10));
    assert_eq!((step1.create, step1.delete.len()), (0, 2));
    let mut stopping = old[0].clone();
    stopping.metadata.deletion_timestamp = Some(Time(t(40)));
    assert_eq!(plan(&d, &[&stopping], t(11)).create, 0);
    assert_eq!(plan(&d, &[], t(12)).create, 2);
}

#[test]
fn a_rollout_that_never_becomes_ready_exceeds_its_deadline() {
    let mut d = deployment(1);
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
    let first = plan(&d, &[], t(0));
    d.status = Some(first.status);
    let stuck = pod(&d, 1, 0, None);
    let second = plan(&d, &[&stuck], t(1));
    assert_eq!(
        cond(&second.status, "Progressing").reason.as_deref(),
        Some("ReplicaSetUpdated")
    );
    assert_eq!(second.recheck_at, Some(t(62)));
    d.status = Some(second.status);
    let waiting = plan(&d, &[&stuck], t(30));
    assert_eq!(cond(&waiting.status, "Progressing").status, "True");
    let late = plan(&d, &[&stuck], t(62));
    let progressing = cond(&late.status, "Progressing");
    assert_eq!(progressing.status, "False");
    assert_eq!(
        progressing.reason.as_deref(),
        Some("ProgressDeadlineExceeded")
    );
    assert_eq!(cond(&late.status, "Available").status, "False");
    assert_eq!(late.recheck_at, None);
}

#[test]
fn min_ready_seconds_delays_availability() {
    let mut d = deployment(1);
    d.spec.as_mut().unwrap().min_ready_seconds = Some(10);
    let ready = pod(&d, 1, 0, Some(5));
    let early = plan(&d, &[&ready], t(8));
    assert_eq!(early.status.ready_replicas, Some(1));
    assert_eq!(early.status.available_replicas, None);
    assert_eq!(early.recheck_at.map(|r| r <= t(15)), Some(true));
    let later = plan(&d, &[&ready], t(15));
    assert_eq!(later.status.available_replicas, Some(1));
}
