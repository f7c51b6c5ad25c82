//! The control plan, row by row: which Platforms are patched, with what, and which platforms a
//! request affects in which order.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::controller::Topology;
use crate::crd::{PlatformGroup, PlatformStatus};
use crate::fixtures::{PlatformBuilder, group, platform};

const NOW: &str = "2026-12-06T10:00:00Z";

fn with_phase(builder: PlatformBuilder, phase: Phase) -> Platform {
    let mut platform = builder.build();
    platform.status = Some(PlatformStatus {
        phase: Some(phase),
        ..Default::default()
    });
    platform
}

fn snapshot(platforms: Vec<Platform>, groups: Vec<PlatformGroup>) -> Snapshot {
    let platforms: Vec<Arc<Platform>> = platforms.into_iter().map(Arc::new).collect();
    let groups: Vec<Arc<PlatformGroup>> = groups.into_iter().map(Arc::new).collect();
    Snapshot {
        topology: Arc::new(Topology::of(&platforms, &groups)),
        platforms: platforms
            .into_iter()
            .map(|p| (crate::stack::key_of(p.as_ref()), p))
            .collect(),
    }
}

/// a ← b ← c ← d (each depends on the one before), all running.
fn chain_running() -> Vec<Platform> {
    vec![
        with_phase(platform("a"), Phase::Running),
        with_phase(platform("b").depends_on(["a"]), Phase::Running),
        with_phase(platform("c").depends_on(["b"]), Phase::Running),
        with_phase(platform("d").depends_on(["c"]), Phase::Running),
    ]
}

fn options(action: Action) -> ControlOptions {
    ControlOptions {
        action,
        config: BTreeMap::new(),
        with_dependencies: true,
        with_dependents: false,
        actor: "api:alice".to_string(),
        now: NOW.to_string(),
    }
}

fn key(name: &str) -> NodeKey {
    NodeKey::new("default", name)
}

fn changes(plan: &ControlPlan) -> Vec<(String, String)> {
    plan.affected
        .iter()
        .map(|a| (a.name.clone(), a.change.clone()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn patched(plan: &ControlPlan) -> Vec<String> {
    plan.patches.iter().map(|(k, _)| k.name.clone()).collect()
}

fn requested() -> Value {
    json!({REQUESTED_BY_ANNOTATION: "api:alice", REQUESTED_AT_ANNOTATION: NOW})
}

#[test]
fn start_starts_the_stopped_dependencies_first_then_the_platform() {
    let snapshot = snapshot(
        vec![
            with_phase(platform("a").stopped(), Phase::Stopped),
            with_phase(platform("b").depends_on(["a"]).stopped(), Phase::Stopped),
            with_phase(platform("c").depends_on(["b"]).stopped(), Phase::Stopped),
        ],
        vec![],
    );
    let plan = plan_control(&snapshot, &key("c"), &options(Action::Start)).expect("plan");
    assert_eq!(patched(&plan), ["a", "b", "c"]);
    assert_eq!(
        changes(&plan),
        pairs(&[("a", "start"), ("b", "start"), ("c", "start")])
    );
    for (_, patch) in &plan.patches {
        assert_eq!(patch["spec"], json!({"desiredState": "Running"}));
        assert_eq!(patch["metadata"]["annotations"], requested());
    }
}

#[test]
fn start_without_dependencies_starts_only_the_platform_which_then_waits() {
    let snapshot = snapshot(
        vec![
            with_phase(platform("a").stopped(), Phase::Stopped),
            with_phase(platform("b").depends_on(["a"]).stopped(), Phase::Stopped),
        ],
        vec![],
    );
    let mut options = options(Action::Start);
    options.with_dependencies = false;
    let plan = plan_control(&snapshot, &key("b"), &options).expect("plan");
    assert_eq!(patched(&plan), ["b"]);
    assert_eq!(changes(&plan), pairs(&[("b", "wait")]));
}

#[test]
fn start_of_a_running_platform_changes_nothing() {
    let snapshot = snapshot(chain_running(), vec![]);
    let plan = plan_control(&snapshot, &key("c"), &options(Action::Start)).expect("plan");
    assert!(plan.patches.is_empty(), "{:?}", plan.patches);
    assert!(plan.affected.is_empty(), "{:?}", plan.affected);
}

#[test]
fn start_of_a_failed_platform_resets_it_with_a_restart() {
    let snapshot = snapshot(
        vec![
            with_phase(platform("a"), Phase::Running),
            with_phase(platform("b").depends_on(["a"]), Phase::Failed),
        ],
        vec![],
    );
    let plan = plan_control(&snapshot, &key("b"), &options(Action::Start)).expect("plan");
    assert_eq!(patched(&plan), ["b"]);
    assert_eq!(changes(&plan), pairs(&[("b", "reset")]));
    assert_eq!(plan.restart_request.as_deref(), Some(NOW));
    assert_eq!(
        plan.patches[0].1["metadata"]["annotations"][RESTART_ANNOTATION],
        json!(NOW)
    );
}

#[test]
fn start_of_a_platform_in_a_cycle_is_a_conflict_naming_the_cycle() {
    let snapshot = snapshot(
        vec![
            with_phase(platform("a").depends_on(["b"]), Phase::Blocked),
            with_phase(platform("b").depends_on(["a"]), Phase::Blocked),
        ],
        vec![],
    );
    let error = plan_control(&snapshot, &key("a"), &options(Action::Start)).expect_err("cycle");
    let ApiError::Conflict { message, facts } = &error else {
        panic!("expected a conflict, got {error:?}");
    };
    assert!(message.contains("cycle"), "{message}");
    assert_eq!(facts["cycle"], json!(["a", "b", "a"]));
}

#[test]
fn start_of_a_platform_its_group_stopped_is_a_conflict_pointing_at_the_group() {
    let snapshot = snapshot(
        vec![with_phase(
            platform("a").label("stack", "s"),
            Phase::Stopped,
        )],
        vec![group("stack").selecting("stack", "s").stopped().build()],
    );
    let error = plan_control(&snapshot, &key("a"), &options(Action::Start)).expect_err("group");
    assert_eq!(error.status(), axum::http::StatusCode::CONFLICT);
    assert!(error.to_string().contains("group stack"), "{error}");
}

#[test]
fn stop_stops_the_running_dependents_first_in_reverse_order() {
    let mut platforms = chain_running();
    platforms.push(with_phase(platform("e").depends_on(["b"]), Phase::Stopped));
    let snapshot = snapshot(platforms, vec![]);
    let plan = plan_control(&snapshot, &key("b"), &options(Action::Stop)).expect("plan");
    assert_eq!(patched(&plan), ["b"], "only the platform itself is patched");
    assert_eq!(
        plan.patches[0].1["spec"],
        json!({"desiredState": "Stopped"})
    );
    assert_eq!(
        changes(&plan),
        pairs(&[("d", "cascade-stop"), ("c", "cascade-stop"), ("b", "stop")])
    );
}

#[test]
fn stop_of_a_stopped_platform_changes_nothing() {
    let snapshot = snapshot(
        vec![with_phase(platform("a").stopped(), Phase::Stopped)],
        vec![],
    );
    let plan = plan_control(&snapshot, &key("a"), &options(Action::Stop)).expect("plan");
    assert!(plan.patches.is_empty());
    assert!(plan.affected.is_empty());
}

#[test]
fn restart_with_dependents_rolls_the_platform_then_its_dependents_in_order() {
    let snapshot = snapshot(chain_running(), vec![]);
    let mut options = options(Action::Restart);
    options.with_dependents = true;
    let plan = plan_control(&snapshot, &key("b"), &options).expect("plan");
    let annotations = &plan.patches[0].1["metadata"]["annotations"];
    assert_eq!(annotations[RESTART_ANNOTATION], json!(NOW));
    assert_eq!(annotations[RESTART_DEPENDENTS_ANNOTATION], json!("true"));
    assert_eq!(
        changes(&plan),
        pairs(&[("b", "restart"), ("c", "restart"), ("d", "restart")])
    );
}

#[test]
fn restart_without_dependents_clears_an_earlier_cascade() {
    let snapshot = snapshot(chain_running(), vec![]);
    let plan = plan_control(&snapshot, &key("b"), &options(Action::Restart)).expect("plan");
    let annotations = &plan.patches[0].1["metadata"]["annotations"];
    assert_eq!(annotations[RESTART_DEPENDENTS_ANNOTATION], Value::Null);
    assert_eq!(changes(&plan), pairs(&[("b", "restart")]));
}

#[test]
fn restart_of_a_stopped_platform_is_a_conflict() {
    let snapshot = snapshot(
        vec![with_phase(platform("a").stopped(), Phase::Stopped)],
        vec![],
    );
    let error = plan_control(&snapshot, &key("a"), &options(Action::Restart)).expect_err("stopped");
    assert_eq!(error.status(), axum::http::StatusCode::CONFLICT);
    assert!(error.to_string().contains("Stopped"), "{error}");
}

#[test]
fn a_config_override_is_merged_and_its_changes_audited_with_secrets_redacted() {
    let snapshot = snapshot(
        vec![with_phase(
            platform("a")
                .config("region", "eu")
                .config("db_password", "old")
                .config("keep", "same"),
            Phase::Running,
        )],
        vec![],
    );
    let mut options = options(Action::Restart);
    options.config = BTreeMap::from([
        ("region".to_string(), "us".to_string()),
        ("db_password".to_string(), "new".to_string()),
        ("keep".to_string(), "same".to_string()),
    ]);
    let plan = plan_control(&snapshot, &key("a"), &options).expect("plan");
    assert_eq!(
        plan.patches[0].1["spec"]["config"],
        json!({"region": "us", "db_password": "new", "keep": "same"})
    );
    assert_eq!(
        plan.config_changes,
        vec![
            ConfigChange {
                key: "db_password".into(),
                old: Some("<redacted>".into()),
                new: "<redacted>".into(),
            },
            ConfigChange {
                key: "region".into(),
                old: Some("eu".into()),
                new: "us".into(),
            },
        ]
    );
}

#[test]
fn secret_looking_keys() {
    for secret in [
        "password",
        "DB_PASSWORD",
        "api_key",
        "apiKey",
        "tls.key",
        "auth-token",
    ] {
        assert!(looks_secret(secret), "{secret}");
    }
    for plain in ["region", "keyspace", "monkey", "max_connections"] {
        assert!(!looks_secret(plain), "{plain}");
    }
}

#[test]
fn request_bodies_are_checked_with_the_field_and_what_is_allowed() {
    let malformed = parse_request(b"{\"action\": ").expect_err("malformed");
    assert_eq!(malformed.status(), axum::http::StatusCode::BAD_REQUEST);
    let unknown_field = parse_request(br#"{"action":"stop","force":true}"#).expect_err("field");
    assert_eq!(
        unknown_field.status(),
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    );
    assert!(
        unknown_field.to_string().contains("force"),
        "{unknown_field}"
    );
    let request = parse_request(br#"{"action":"stop","config":{"a":1}}"#).expect("shape is fine");
    let not_a_string = config_override(request.config.as_ref()).expect_err("number");
    assert!(
        not_a_string.to_string().contains("config.a"),
        "{not_a_string}"
    );
    let bad_key = parse_request(br#"{"action":"stop","config":{"a b":"x"}}"#).expect("shape");
    assert!(config_override(bad_key.config.as_ref()).is_err());
    let unknown_action = Action::parse("reboot", &PLATFORM_ACTIONS).expect_err("unknown");
    let problem = unknown_action.problem(None);
    assert_eq!(
        problem.extensions["allowed"]["action"],
        json!(["start", "stop", "restart"])
    );
}
