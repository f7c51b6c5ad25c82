use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::controller::model::{DependencyState, DeploymentState, GroupFacts, Observed};
use crate::crd::{Phase, Platform, PodTemplate, condition};
use crate::fixtures::{TEST_NAMESPACE, platform};

fn key(name: &str) -> NodeKey {
    NodeKey::new(TEST_NAMESPACE, name)
}

fn with_uid(mut p: Platform) -> Platform {
    p.metadata.uid = Some(format!(
        "uid-{}",
        p.metadata.name.clone().unwrap_or_default()
    ));
    p.metadata.generation = Some(1);
    p.metadata.finalizers = Some(vec![crate::controller::model::FINALIZER.into()]);
    p
}

fn observed(p: Platform) -> Observed {
    Observed::alone(
        with_uid(p),
        Timestamp::from_second(1_800_000_000).expect("valid"),
        0,
    )
}

fn in_group(mut o: Observed, limit: u32, starting: &[&str]) -> Observed {
    o.group = Some(GroupFacts {
        key: key("stack"),
        max_concurrent_starts: limit,
        starting_members: starting.iter().map(|n| key(n)).collect::<BTreeSet<_>>(),
    });
    o
}

fn ready_condition(plan: &Plan) -> (String, String, String) {
    let status = plan.status.as_ref().expect("a status write");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::READY)
        .expect("Ready condition");
    (
        ready.status.clone(),
        ready.reason.clone(),
        ready.message.clone(),
    )
}

#[test]
fn a_start_claims_a_slot_and_writes_the_deployment() {
    let plan = plan(&in_group(observed(platform("a").build()), 2, &[]));
    assert_eq!(
        plan.slot,
        SlotChange::Claim {
            group: key("stack"),
            limit: 2
        }
    );
    let deployment = plan.deployment.expect("the Deployment is applied");
    assert_eq!(deployment.spec.and_then(|s| s.replicas), Some(1));
    assert_eq!(plan.audit.len(), 1);
    assert_eq!(plan.audit[0].kind, ActionKind::Start);
}

#[test]
fn an_invalid_workload_is_failed_in_status_and_claims_no_slot() {
    let broken = platform("a").with_spec(|s| s.image = None).build();
    let plan = plan(&in_group(observed(broken), 1, &[]));
    assert_eq!(
        plan.slot,
        SlotChange::Release,
        "a broken member frees its slot"
    );
    assert!(plan.deployment.is_none());
    assert_eq!(plan.decision.phase, Phase::Failed);
    let (status, reason, message) = ready_condition(&plan);
    assert_eq!(status, "False");
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("spec.image"), "{message}");
    let kinds: Vec<ActionKind> = plan.audit.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec![ActionKind::Failed]);
}

#[test]
fn an_invalid_workload_is_audited_once() {
    let broken = platform("a").with_spec(|s| s.image = None).build();
    let first = plan(&observed(broken.clone()));
    let mut again = broken;
    again.status = first.status.clone();
    let second = plan(&observed(again));
    assert!(second.audit.is_empty(), "{:?}", second.audit);
    assert!(second.status.is_none(), "nothing new to write");
}

#[test]
fn a_template_without_containers_names_the_field() {
    let broken = platform("a")
        .with_spec(|s| {
            s.image = None;
            s.template = Some(PodTemplate(json!({"spec": {"containers": []}})));
        })
        .build();
    let plan = plan(&observed(broken));
    let (_, reason, message) = ready_condition(&plan);
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("spec.template.spec.containers"),
        "{message}"
    );
}

#[test]
fn waiting_for_a_dependency_writes_no_workload() {
    let mut o = observed(platform("b").depends_on(["a"]).build());
    o.dependencies = vec![DependencyState {
        key: key("a"),
        ready: false,
    }];
    let plan = plan(&o);
    assert!(plan.deployment.is_none() && plan.config_map.is_none());
    assert_eq!(plan.slot, SlotChange::Release);
    assert_eq!(plan.decision.phase, Phase::WaitingForDependencies);
}

#[test]
fn a_settled_platform_plans_no_writes() {
    let o = observed(platform("a").config("k", "v").build());
    let first = plan(&o);
    let deployment = first.deployment.clone().expect("deployment");
    let config_map = first.config_map.clone().expect("config map");
    let mut settled = o.clone();
    settled.platform.status = first.status.clone();
    settled.deployment = Some(DeploymentState {
        replicas: 1,
        ready_replicas: 1,
        updated_replicas: 1,
        status_replicas: 1,
        observed_current: true,
        applied_hash: deployment.annotations().get(SPEC_HASH_ANNOTATION).cloned(),
        ..Default::default()
    });
    settled.config_map_hash = config_map.annotations().get(SPEC_HASH_ANNOTATION).cloned();
    settled.pods = 1;
    let running = plan(&settled);
    // Running now: one status write for the phase change, nothing else.
    assert!(running.deployment.is_none() && running.config_map.is_none());
    settled.platform.status = running.status.clone();
    let again = plan(&settled);
    assert!(again.deployment.is_none());
    assert!(again.config_map.is_none());
    assert!(again.status.is_none());
    assert!(again.audit.is_empty());
    assert_eq!(again.slot, SlotChange::Release);
}

#[test]
fn a_platform_still_starting_keeps_its_slot() {
    let mut o = in_group(observed(platform("a").build()), 1, &[]);
    o.deployment = Some(DeploymentState {
        replicas: 1,
        ..Default::default()
    });
    o.pods = 1;
    let plan = plan(&o);
    assert_eq!(plan.decision.phase, Phase::Starting);
    assert_eq!(plan.slot, SlotChange::Keep);
}

#[test]
fn a_full_group_waits_without_a_claim() {
    let plan = plan(&in_group(observed(platform("c").build()), 2, &["a", "b"]));
    assert!(plan.deployment.is_none());
    assert_eq!(plan.slot, SlotChange::Release);
    assert!(plan.decision.message.contains("start slot"));
}

#[test]
fn a_malformed_template_names_the_field_it_breaks() {
    let broken = platform("a")
        .with_spec(|s| {
            s.image = None;
            s.template = Some(PodTemplate(
                json!({"spec": {"containers": [{"name": "main", "ports": "80"}]}}),
            ));
        })
        .build();
    let plan = plan(&observed(broken));
    let (status, reason, message) = ready_condition(&plan);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.contains("spec.template.spec.containers[0].ports"),
        "{message}"
    );
}

#[test]
fn an_invalid_workload_is_reported_while_waiting_for_dependencies() {
    let broken = platform("b")
        .depends_on(["a"])
        .with_spec(|s| {
            s.image = None;
            s.template = Some(PodTemplate(json!({"spec": {"containers": 3}})));
        })
        .build();
    let mut o = observed(broken);
    o.dependencies = vec![DependencyState {
        key: key("a"),
        ready: false,
    }];
    let plan = plan(&o);
    assert_eq!(plan.decision.phase, Phase::Failed);
    assert!(plan.deployment.is_none());
    assert_eq!(ready_condition(&plan).1, "InvalidSpec");
}

fn waiting_on(names: &[(&str, bool)]) -> Observed {
    let dependencies: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
    let mut o = observed(platform("c").depends_on(dependencies).build());
    o.dependencies = names
        .iter()
        .map(|(name, ready)| DependencyState {
            key: key(name),
            ready: *ready,
        })
        .collect();
    o
}

fn blocked_by(plan: &Plan) -> Vec<String> {
    plan.status
        .as_ref()
        .expect("a status write")
        .blocked_by
        .clone()
}

#[test]
fn blockers_that_become_ready_stay_shown_for_a_moment_while_others_remain() {
    let first = plan(&waiting_on(&[("a", false), ("b", false)]));
    assert_eq!(blocked_by(&first), ["a", "b"]);
    assert_eq!(first.blockers_held_since, None);

    // a becomes ready, b not yet: no write, a look again when the grace ends.
    let mut o = waiting_on(&[("a", true), ("b", false)]);
    o.platform.status = first.status.clone();
    let held = plan(&o);
    assert!(held.status.is_none(), "{:?}", held.status);
    assert_eq!(held.blockers_held_since, Some(o.now));
    assert_eq!(held.requeue_after, Some(BLOCKERS_GRACE));

    // b becomes ready within the grace: the start's own write clears the list.
    let mut both = waiting_on(&[("a", true), ("b", true)]);
    both.platform.status = first.status.clone();
    both.blockers_held_since = held.blockers_held_since;
    both.now = o.now + Duration::from_millis(500);
    let start = plan(&both);
    assert!(start.deployment.is_some());
    assert!(blocked_by(&start).is_empty());
    assert_eq!(start.blockers_held_since, None);

    // b still not ready when the grace ends: the shorter list is written.
    let mut late = o.clone();
    late.blockers_held_since = held.blockers_held_since;
    late.now = o.now + BLOCKERS_GRACE;
    let shrunk = plan(&late);
    assert_eq!(blocked_by(&shrunk), ["b"]);
    assert_eq!(shrunk.blockers_held_since, None);

    // A new blocker is shown at once.
    let mut grown = waiting_on(&[("a", true), ("b", false), ("d", false)]);
    grown.platform.status = shrunk.status.clone();
    assert_eq!(blocked_by(&plan(&grown)), ["b", "d"]);
}
