use k8s_openapi::api::core::v1::{EventSeries, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::SignedDuration;

use super::*;
use crate::controller::model::{Observed, PodHealth};
use crate::controller::supervise::{FindingKind, detect};
use crate::crd::{Phase, PlatformStatus};
use crate::fixtures::platform;

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid")
}

fn warning_event(reason: &str, kind: &str, type_: &str, seen: Timestamp) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some("a-1.abc".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some(kind.into()),
            name: Some("a-1".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some("Readiness probe failed: HTTP probe failed with statuscode: 503".into()),
        type_: Some(type_.into()),
        count: Some(3),
        last_timestamp: Some(Time(seen)),
        ..Default::default()
    }
}

#[test]
fn a_warning_on_a_pod_is_read_with_its_count_and_latest_time() {
    let (pod, warning) =
        pod_warning(&warning_event("Unhealthy", "Pod", "Warning", now())).expect("a pod warning");
    assert_eq!(
        (pod.name.as_str(), pod.namespace.as_deref()),
        ("a-1", Some("ns"))
    );
    assert_eq!(warning.reason, "Unhealthy");
    assert_eq!(warning.count, 3);
    assert_eq!(warning.last_seen, now());
    assert!(
        warning
            .describe()
            .starts_with("Warning Unhealthy (×3) on pod a-1")
    );

    let mut series = warning_event("BackOff", "Pod", "Warning", now());
    let later = now() + SignedDuration::from_secs(30);
    series.series = Some(EventSeries {
        count: Some(7),
        last_observed_time: Some(MicroTime(later)),
    });
    let (_, warning) = pod_warning(&series).expect("a pod warning");
    assert_eq!((warning.count, warning.last_seen), (7, later));
}

#[test]
fn normal_events_and_warnings_about_other_kinds_are_not_pod_warnings() {
    assert!(pod_warning(&warning_event("Started", "Pod", "Normal", now())).is_none());
    assert!(
        pod_warning(&warning_event(
            "FailedCreate",
            "ReplicaSet",
            "Warning",
            now()
        ))
        .is_none()
    );
}

#[test]
fn the_reason_sets_the_urgency() {
    assert_eq!(warning_urgency("OOMKilling"), Urgency::Resource);
    assert_eq!(warning_urgency("Unhealthy"), Urgency::Health);
    assert_eq!(warning_urgency("BackOff"), Urgency::Health);
    assert_eq!(warning_urgency("FailedScheduling"), Urgency::Health);
    assert_eq!(warning_urgency("DNSConfigForming"), Urgency::Change);
}

#[test]
fn the_table_keeps_the_latest_of_each_reason_a_few_per_platform_and_only_recent_ones() {
    let warnings = Warnings::default();
    let key = NodeKey::new("ns", "a");
    let at = |seconds_ago: i64, reason: &str| PodWarning {
        pod: "a-1".into(),
        reason: reason.into(),
        message: String::new(),
        count: 1,
        last_seen: now() - SignedDuration::from_secs(seconds_ago),
    };
    warnings.record(key.clone(), at(700, "Old"));
    warnings.record(key.clone(), at(60, "Unhealthy"));
    warnings.record(key.clone(), at(10, "Unhealthy"));
    let recent = warnings.recent(&key, now());
    assert_eq!(
        recent.len(),
        1,
        "the 700 s old one is past the TTL, the repeat replaced"
    );
    assert_eq!(recent[0].last_seen, now() - SignedDuration::from_secs(10));
    for i in 0..10 {
        warnings.record(key.clone(), at(5, &format!("Reason{i}")));
    }
    assert_eq!(warnings.recent(&key, now()).len(), 5);
    warnings.forget(&key);
    assert_eq!(warnings.platforms(), 0);
}

#[test]
fn recent_warnings_are_evidence_of_what_supervision_finds() {
    let mut p = platform("a").build();
    p.status = Some(PlatformStatus {
        phase: Some(Phase::Running),
        ..Default::default()
    });
    let mut observed = Observed::alone(p, now(), 0);
    observed.pod_health = vec![PodHealth {
        name: "a-1".into(),
        ready: false,
        ready_changed_at: Some(now() - SignedDuration::from_secs(120)),
        ..Default::default()
    }];
    let (_, warning) =
        pod_warning(&warning_event("Unhealthy", "Pod", "Warning", now())).expect("a pod warning");
    observed.warnings = vec![warning];
    let detection = detect(&observed);
    let finding = detection
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::HealthCheckFailed)
        .expect("an unready pod past the threshold is a failed health check");
    assert!(
        finding
            .evidence
            .iter()
            .any(|line| line.starts_with("Warning Unhealthy (×3) on pod a-1")),
        "{:?}",
        finding.evidence
    );
}
