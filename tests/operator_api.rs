//! The REST API for legacy callers, over real HTTP, against the operator running on either
//! cluster (the authentication tests use the simulator's TokenReview/SubjectAccessReview
//! table and run there only).

mod operator_support;

use std::time::Duration;

use operator_support::*;
use platform_operator::api::ApiSettings;
use platform_operator::api::auth::AuthMode;
use platform_operator::client::RateLimit;
use platform_operator::crd::{DesiredState, Phase, Platform};
use platform_operator::fixtures::platform;
use pmp_sim::AuthTable;
use serde_json::{Value, json};

fn open_api() -> ApiSettings {
    ApiSettings {
        auth: AuthMode::None,
        ..ApiSettings::default()
    }
}

/// The trading stack, each platform with its legacy id (`market_data_service`, ...).
fn trading_stack() -> Vec<Platform> {
    chain(&TRADING, "500ms")
        .into_iter()
        .map(|mut p| {
            let id = p
                .metadata
                .name
                .clone()
                .unwrap_or_default()
                .replace('-', "_");
            p.spec.platform_id = Some(id);
            p
        })
        .collect()
}

/// Applies one platform that is Ready 200 ms after it starts, and waits until it runs.
async fn run_one(env: &TestEnv, name: &str) {
    env.apply(&[platform(name)
        .pod_annotation("sim.pmp.dev/ready-after", "200ms")
        .build()])
        .await;
    env.wait_running(&[name]).await;
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list[field]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_callers_stop_and_start_the_trading_stack_by_its_ids() {
    let env = TestEnv::start().await;
    let rest = env.serve_api(open_api()).await;
    env.apply(&trading_stack()).await;
    env.wait_running(&TRADING).await;

    let stop = rest
        .post(
            "/api/v1/platform/market_data_service/control",
            r#"{"action":"stop"}"#,
        )
        .await;
    assert_eq!(stop.status, 202, "{}", stop.text());
    let accepted = stop.json();
    assert_eq!(accepted["action"], "stop");
    assert_eq!(accepted["platform"], "market-data-service");
    let reversed: Vec<&str> = TRADING.iter().rev().copied().collect();
    assert_eq!(names(&accepted, "affected"), reversed, "dependents first");
    assert_eq!(
        accepted["statusUrl"],
        format!(
            "/api/v1/platform/market-data-service/status?namespace={}",
            env.namespace()
        )
    );
    env.wait_for(
        "all Stopped",
        Duration::from_secs(30),
        all_in(Phase::Stopped, &TRADING),
    )
    .await;
    let history = env.history().await;
    let stop_order: Vec<String> = history.stops().into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        stop_order, reversed,
        "scaled down in reverse dependency order"
    );

    let start = rest
        .post(
            "/api/v1/platform/position_management/control?wait=true&timeout=60s",
            r#"{"action":"start"}"#,
        )
        .await;
    assert_eq!(start.status, 200, "{}", start.text());
    let started = start.json();
    assert_eq!(started["reached"], true);
    assert!(
        started["current"]
            .as_array()
            .is_some_and(|c| c.len() == 6 && c.iter().all(|p| p["phase"] == "Running")),
        "{started}"
    );
    let after_stop = history.last_rv();
    env.history()
        .await
        .since(after_stop)
        .assert_started_in_order(&chain_dependencies(&TRADING));

    let platforms = env.platforms().await;
    let root = platforms["market-data-service"]
        .status
        .clone()
        .expect("status");
    let stop_entry = root
        .history
        .iter()
        .find(|h| h.action == "Stop")
        .expect("the stop is in the history");
    assert_eq!(stop_entry.actor, "api:anonymous", "the caller is the actor");
    assert_eq!(
        platforms["market-data-service"].spec.desired_state,
        DesiredState::Running,
        "start set the stopped root back to Running"
    );

    let status = rest.get("/api/v1/platform/ml_inference/status").await;
    assert_eq!(status.status, 200, "{}", status.text());
    let status = status.json();
    assert_eq!(status["name"], "ml-inference");
    assert_eq!(status["platformId"], "ml_inference");
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["desiredState"], "Running");
    assert_eq!(status["replicas"], json!({"desired": 1, "ready": 1}));
    assert_eq!(
        status["dependencies"],
        json!([{"name": "feature-engineering", "namespace": env.namespace(), "phase": "Running", "ready": true}])
    );
    assert_eq!(status["health"]["healthy"], true);
    assert!(status["resources"]["usageKnown"].is_boolean(), "{status}");
    assert!(
        status["conditions"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")),
        "{status}"
    );
    assert!(
        status["lastActions"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );

    let events = rest
        .get("/api/v1/platform/market-data-service/events")
        .await
        .json();
    assert!(
        events.as_array().is_some_and(|e| e
            .iter()
            .any(|a| a["action"] == "Stop" && a["actor"] == "api:anonymous")),
        "{events}"
    );
    let audit = env.history().await;
    assert!(
        audit.of(Kind::Event).any(|e| {
            e.object["reason"] == "ControlRequested"
                && e.object["note"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("stop requested by api:anonymous"))
        }),
        "the request itself is audited as an Event"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_groups_graph_and_metrics_come_from_the_cache() {
    let env = TestEnv::start().await;
    let rest = env.serve_api(open_api()).await;
    let stack: Vec<Platform> = chain(&["a", "b", "c"], "200ms")
        .into_iter()
        .map(|mut p| {
            p.metadata.labels = Some([("stack".to_string(), "abc".to_string())].into());
            p
        })
        .collect();
    env.apply(&stack).await;
    env.apply(&[platform("lone")
        .pod_annotation("sim.pmp.dev/ready-after", "200ms")
        .build()])
        .await;
    env.apply_group(
        &platform_operator::fixtures::group("abc")
            .selecting("stack", "abc")
            .build(),
    )
    .await;
    env.wait_running(&["a", "b", "c", "lone"]).await;

    let list = rest.get("/api/v1/platforms").await.json();
    let listed: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(listed, ["a", "b", "c", "lone"]);
    let members = rest.get("/api/v1/platforms?group=abc").await.json();
    assert_eq!(members.as_array().map(Vec::len), Some(3), "{members}");
    let stopped = rest.get("/api/v1/platforms?phase=Stopped").await.json();
    assert_eq!(stopped, json!([]));

    let group = rest.get("/api/v1/groups/abc").await;
    assert_eq!(group.status, 200, "{}", group.text());
    let group = group.json();
    assert_eq!(group["desiredState"], "Running");
    assert_eq!(group["members"].as_array().map(Vec::len), Some(3));

    let stop = rest
        .post(
            "/api/v1/groups/abc/control?wait=true&timeout=60s",
            r#"{"action":"stop"}"#,
        )
        .await;
    assert_eq!(stop.status, 200, "{}", stop.text());
    assert_eq!(names(&stop.json(), "affected"), ["c", "b", "a"]);
    let lone = env.platforms().await["lone"].clone();
    assert_eq!(
        lone.status.and_then(|s| s.phase),
        Some(Phase::Running),
        "a platform outside the group is untouched"
    );
    let restart = rest
        .post("/api/v1/groups/abc/control", r#"{"action":"restart"}"#)
        .await;
    let problem = restart.problem(422, "invalid-request");
    assert_eq!(problem["allowed"]["action"], json!(["start", "stop"]));

    let graph = rest.get("/api/v1/graph?group=abc").await.json();
    assert_eq!(graph["nodes"].as_array().map(Vec::len), Some(3), "{graph}");
    let edge = &graph["edges"][0];
    assert_eq!(edge["kind"], "dependsOn");
    let dot = rest.get("/api/v1/graph?format=dot").await;
    assert_eq!(dot.content_type, "text/vnd.graphviz; charset=utf-8");
    let ns = env.namespace();
    assert!(
        dot.text().contains(&format!("\"{ns}/b\" -> \"{ns}/a\"")),
        "{}",
        dot.text()
    );
    let mermaid = rest.get("/api/v1/graph?format=mermaid").await.text();
    assert!(mermaid.starts_with("flowchart LR"), "{mermaid}");
    let unknown_format = rest.get("/api/v1/graph?format=svg").await;
    unknown_format.problem(422, "invalid-request");

    let metrics = rest.get("/metrics").await;
    assert!(
        metrics
            .content_type
            .starts_with("application/openmetrics-text")
    );
    let page = metrics.text();
    assert!(
        page.contains("pmp_platforms{phase=\"Stopped\"} 3"),
        "{page}"
    );
    assert!(
        page.contains(
            "pmp_api_requests_total{route=\"/api/v1/groups/{name}/control\",method=\"POST\",code=\"200\"} 1"
        ),
        "{page}"
    );
    assert!(page.contains("pmp_reconciles_total{controller=\"platform\",result=\"ok\"}"));
    assert!(
        page.contains("pmp_control_actions_total{action=\"Start\"} 4"),
        "{page}"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_without_dependencies_starts_only_the_platform_which_waits_for_them() {
    let env = TestEnv::start().await;
    let rest = env.serve_api(open_api()).await;
    let stack: Vec<Platform> = chain(&["a", "b"], "200ms")
        .into_iter()
        .map(|mut p| {
            p.spec.desired_state = DesiredState::Stopped;
            p
        })
        .collect();
    env.apply(&stack).await;
    env.wait_for(
        "both Stopped",
        Duration::from_secs(30),
        all_in(Phase::Stopped, &["a", "b"]),
    )
    .await;

    let start = rest
        .post(
            "/api/v1/platform/b/control",
            r#"{"action":"start","withDependencies":false}"#,
        )
        .await;
    assert_eq!(start.status, 202, "{}", start.text());
    assert_eq!(
        start.json()["affected"],
        json!([{"namespace": env.namespace(), "name": "b", "change": "wait"}])
    );
    env.let_time_pass(Duration::from_secs(5)).await;
    let platforms = env.platforms().await;
    assert_eq!(platforms["b"].spec.desired_state, DesiredState::Running);
    assert_eq!(platforms["a"].spec.desired_state, DesiredState::Stopped);
    assert_ne!(
        phase(&platforms["b"]),
        Some(Phase::Running),
        "b waits for a"
    );

    let start_a = rest
        .post(
            "/api/v1/platform/a/control?wait=true",
            r#"{"action":"start"}"#,
        )
        .await;
    assert_eq!(start_a.status, 200, "{}", start_a.text());
    env.wait_running(&["a", "b"]).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_dependents_and_a_config_override_is_persisted_and_audited() {
    let env = TestEnv::start().await;
    let rest = env.serve_api(open_api()).await;
    let mut stack = chain(&["a", "b", "c"], "200ms");
    stack[0].spec.config = [("region".to_string(), "eu".to_string())].into();
    env.apply(&stack).await;
    env.wait_running(&["a", "b", "c"]).await;

    let body = json!({
        "action": "restart",
        "withDependents": true,
        "config": {"region": "us", "db_password": "s3cret"},
    });
    let restart = rest
        .post(
            "/api/v1/platform/a/control?wait=true&timeout=90s",
            &body.to_string(),
        )
        .await;
    assert_eq!(restart.status, 200, "{}", restart.text());
    let answer = restart.json();
    assert_eq!(names(&answer, "affected"), ["a", "b", "c"]);
    assert_eq!(
        answer["configChanges"],
        json!([
            {"key": "db_password", "old": null, "new": "<redacted>"},
            {"key": "region", "old": "eu", "new": "us"},
        ])
    );
    let platforms = env.platforms().await;
    let a = &platforms["a"];
    assert_eq!(a.spec.config["region"], "us", "the override is persisted");
    assert_eq!(a.spec.config["db_password"], "s3cret");
    for name in ["a", "b", "c"] {
        let status = platforms[name].status.clone().expect("status");
        assert!(status.restart_count.unwrap_or(0) >= 1, "{name} restarted");
    }
    let history = env.history().await;
    let audited: Vec<String> = history
        .of(Kind::Event)
        .filter(|e| e.object["reason"] == "ControlRequested")
        .filter_map(|e| e.object["note"].as_str().map(str::to_string))
        .collect();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(audited[0].contains("region: eu → us"), "{}", audited[0]);
    assert!(
        audited[0].contains("db_password: (unset) → <redacted>") && !audited[0].contains("s3cret"),
        "secret values stay out of the audit trail: {}",
        audited[0]
    );
    let status = rest.get("/api/v1/platform/a/status").await.json();
    assert_eq!(status["config"]["db_password"], "<redacted>");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_times_out_answers_504_with_the_current_state() {
    let env = TestEnv::start().await;
    let rest = env.serve_api(open_api()).await;
    env.apply(&[platform("slow")
        .pod_annotation("sim.pmp.dev/ready-after", "1h")
        .build()])
        .await;
    env.wait_for(
        "Starting",
        Duration::from_secs(30),
        all_in(Phase::Starting, &["slow"]),
    )
    .await;
    let answer = rest
        .post(
            "/api/v1/platform/slow/control?wait=true&timeout=1s",
            r#"{"action":"start"}"#,
        )
        .await;
    assert_eq!(answer.status, 504, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["reached"], false);
    assert_eq!(body["current"][0]["phase"], "Starting");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_a_problem_document_with_a_stable_type() {
    let env = TestEnv::start().await;
    let rest = env.serve_api(open_api()).await;
    let twin = |name: &str| {
        platform(name)
            .platform_id("twin")
            .pod_annotation("sim.pmp.dev/ready-after", "200ms")
            .build()
    };
    env.apply(&[
        twin("twin-a"),
        twin("twin-b"),
        platform("x").depends_on(["y"]).build(),
        platform("y").depends_on(["x"]).build(),
        platform("off").stopped().build(),
    ])
    .await;
    env.wait_for(
        "x and y Blocked",
        Duration::from_secs(30),
        all_in(Phase::Blocked, &["x", "y"]),
    )
    .await;
    env.wait_for(
        "off Stopped",
        Duration::from_secs(30),
        all_in(Phase::Stopped, &["off"]),
    )
    .await;
    let control = "/api/v1/platform/twin-a/control";

    let malformed = rest.post(control, "{\"action\":").await;
    let problem = malformed.problem(400, "malformed-json");
    assert_eq!(problem["instance"], control);
    let unknown_action = rest.post(control, r#"{"action":"reboot"}"#).await;
    let problem = unknown_action.problem(422, "invalid-request");
    assert_eq!(
        problem["allowed"]["action"],
        json!(["start", "stop", "restart"])
    );
    rest.post(control, r#"{"action":"stop","force":true}"#)
        .await
        .problem(422, "invalid-request");
    rest.post(control, r#"{"action":"stop","config":{"a":1}}"#)
        .await
        .problem(422, "invalid-request");
    rest.post(
        "/api/v1/platform/twin-a/control?wait=maybe",
        r#"{"action":"stop"}"#,
    )
    .await
    .problem(422, "invalid-request");
    rest.post("/api/v1/platform/nope/control", r#"{"action":"stop"}"#)
        .await
        .problem(404, "unknown-platform");
    let ambiguous = rest
        .post("/api/v1/platform/twin/control", r#"{"action":"stop"}"#)
        .await;
    let problem = ambiguous.problem(409, "ambiguous-platform");
    assert_eq!(problem["candidates"].as_array().map(Vec::len), Some(2));
    let cycle = rest
        .post("/api/v1/platform/x/control", r#"{"action":"start"}"#)
        .await;
    let problem = cycle.problem(409, "action-not-possible");
    assert_eq!(problem["cycle"], json!(["x", "y", "x"]));
    rest.post("/api/v1/platform/off/control", r#"{"action":"restart"}"#)
        .await
        .problem(409, "action-not-possible");
    let big = format!(
        r#"{{"action":"stop","config":{{"blob":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let too_big = rest.post(control, &big).await;
    too_big.problem(413, "body-too-large");
    rest.get("/api/v1/nothing-here")
        .await
        .problem(404, "no-route");
    rest.send("DELETE", control, None, None)
        .await
        .problem(405, "method-not-allowed");
    rest.get("/api/v1/groups/none")
        .await
        .problem(404, "unknown-group");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_need_a_token_and_the_verb_and_are_rate_limited() {
    let Some(env) = TestEnv::sim_only("authentication uses the simulator's review table").await
    else {
        return;
    };
    let ns = env.namespace().to_string();
    env.sim().set_auth(
        AuthTable::default()
            .with_token("operator-token", "ops", &["trading-ops"])
            .with_token("viewer-token", "viewer", &[])
            .allow("group:trading-ops", "update", "platforms", &ns)
            .allow("group:trading-ops", "get", "platforms", &ns)
            .allow("viewer", "get", "platforms", &ns),
    );
    let rest = env
        .serve_api(ApiSettings {
            auth: AuthMode::Kubernetes,
            rate_limit: RateLimit { qps: 0.5, burst: 4 },
            ..ApiSettings::default()
        })
        .await;
    run_one(&env, "a").await;
    let control = "/api/v1/platform/a/control";
    let stop = r#"{"action":"stop"}"#;

    let anonymous = rest.post(control, stop).await;
    anonymous.problem(401, "unauthenticated");
    assert_eq!(
        anonymous
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"platform-operator\"")
    );
    rest.post_as("forged", control, stop)
        .await
        .problem(401, "unauthenticated");
    let viewer_reads = rest
        .get_as("viewer-token", "/api/v1/platform/a/status")
        .await;
    assert_eq!(viewer_reads.status, 200, "{}", viewer_reads.text());
    let viewer_stops = rest.post_as("viewer-token", control, stop).await;
    let problem = viewer_stops.problem(403, "forbidden");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("update platforms/control")),
        "{problem}"
    );
    let accepted = rest.post_as("operator-token", control, stop).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    env.wait_for(
        "a Stopped",
        Duration::from_secs(30),
        all_in(Phase::Stopped, &["a"]),
    )
    .await;
    let a = env.platforms().await["a"].clone();
    let stop_entry = a
        .status
        .and_then(|s| s.history.into_iter().find(|h| h.action == "Stop"))
        .expect("stop recorded");
    assert_eq!(
        stop_entry.actor, "api:ops",
        "the authenticated caller is the actor"
    );

    // The viewer has used 3 of its 4 tokens (refilled at 0.5/s); the 5th request in a row is
    // refused, with a Retry-After.
    let mut limited = None;
    for _ in 0..3 {
        let answer = rest
            .get_as("viewer-token", "/api/v1/platform/a/status")
            .await;
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the viewer is rate-limited");
    limited.problem(429, "rate-limited");
    assert!(limited.headers.contains_key("retry-after"));
    let others = rest
        .get_as("operator-token", "/api/v1/platform/a/status")
        .await;
    assert_eq!(others.status, 200, "another caller is not held back");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_served_routes_and_is_committed() {
    let env = TestEnv::start().await;
    let rest = env.serve_api(open_api()).await;
    let served = rest.get("/openapi.json").await;
    assert_eq!(served.status, 200);
    let document = served.json();
    assert_eq!(document["openapi"], "3.1.0");
    let generated = serde_json::to_value(platform_operator::api::openapi()).expect("serializable");
    assert_eq!(document, generated);
    let committed_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(&committed_path).expect("docs/openapi.json exists"),
    )
    .expect("docs/openapi.json is JSON");
    assert_eq!(
        committed, generated,
        "docs/openapi.json is out of date: run `make openapi`"
    );
    let paths = document["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), 7, "{:?}", paths.keys().collect::<Vec<_>>());
    for (path, operations) in paths {
        let concrete = path
            .replace("{platform_id}", "nobody")
            .replace("{name}", "nobody");
        for method in operations.as_object().expect("operations").keys() {
            let answer = rest
                .send(&method.to_uppercase(), &concrete, Some("{}"), None)
                .await;
            if answer.content_type == "application/problem+json" {
                let kind = answer.json()["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert!(
                    !kind.ends_with("/no-route") && !kind.ends_with("/method-not-allowed"),
                    "{method} {path} is documented but not served: {kind}"
                );
            }
        }
    }
    env.shutdown().await;
}

/// A token for a new ServiceAccount `name` in the test's namespace, bound to a Role with
/// `rules` (real cluster only).
async fn service_account_token(env: &TestEnv, name: &str, rules: Value) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::{Api, PostParams};
    let ns = env.namespace();
    let create = PostParams::default();
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client(), ns);
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("account");
    accounts
        .create(&create, &account)
        .await
        .expect("account created");
    let roles: Api<Role> = Api::namespaced(env.client(), ns);
    let role: Role =
        serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules})).expect("role");
    roles.create(&create, &role).await.expect("role created");
    let bindings: Api<RoleBinding> = Api::namespaced(env.client(), ns);
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
    }))
    .expect("binding");
    bindings
        .create(&create, &binding)
        .await
        .expect("binding created");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    accounts
        .create_token_request(name, &create, &request)
        .await
        .expect("token issued")
        .status
        .expect("token status")
        .token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_cluster_tokens_and_rbac_decide_who_may_control() {
    if real_kubeconfig().is_none() {
        eprintln!("skipped on the simulator: it needs real TokenReview, TokenRequest and RBAC");
        return;
    }
    let env = TestEnv::start().await;
    let controller = service_account_token(
        &env,
        "legacy-controller",
        json!([
            {"apiGroups": ["pmp.dev"], "resources": ["platforms/control"], "verbs": ["update"]},
            {"apiGroups": ["pmp.dev"], "resources": ["platforms"], "verbs": ["get"]},
        ]),
    )
    .await;
    let viewer = service_account_token(
        &env,
        "legacy-viewer",
        json!([{"apiGroups": ["pmp.dev"], "resources": ["platforms"], "verbs": ["get"]}]),
    )
    .await;
    let rest = env
        .serve_api(ApiSettings {
            auth: AuthMode::Kubernetes,
            ..ApiSettings::default()
        })
        .await;
    run_one(&env, "a").await;
    let control = "/api/v1/platform/a/control";
    let stop = r#"{"action":"stop"}"#;

    rest.post(control, stop)
        .await
        .problem(401, "unauthenticated");
    rest.post_as("not-a-token", control, stop)
        .await
        .problem(401, "unauthenticated");
    let read = rest.get_as(&viewer, "/api/v1/platform/a/status").await;
    assert_eq!(read.status, 200, "{}", read.text());
    rest.post_as(&viewer, control, stop)
        .await
        .problem(403, "forbidden");
    let accepted = rest.post_as(&controller, control, stop).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    env.wait_for(
        "a Stopped",
        Duration::from_secs(60),
        all_in(Phase::Stopped, &["a"]),
    )
    .await;
    let a = env.platforms().await["a"].clone();
    let actor = a
        .status
        .and_then(|s| s.history.into_iter().find(|h| h.action == "Stop"))
        .map(|h| h.actor);
    assert_eq!(
        actor.as_deref(),
        Some(
            format!(
                "api:system:serviceaccount:{}:legacy-controller",
                env.namespace()
            )
            .as_str()
        )
    );
    env.shutdown().await;
}

/// Random JSON: scalars, arrays and objects, with the request's own field names and actions
/// mixed in so that many bodies get past the first checks.
fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let key = prop_oneof![
        Just("action".to_string()),
        Just("config".to_string()),
        Just("withDependencies".to_string()),
        Just("withDependents".to_string()),
        "[a-z_.-]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just("start".to_string()),
            Just("stop".to_string()),
            Just("restart".to_string()),
            ".{0,20}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_caller_sends_gets_a_server_error() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let env = TestEnv::start().await;
    let rest = env
        .serve_api(ApiSettings {
            auth: AuthMode::None,
            rate_limit: RateLimit { qps: 0.0, burst: 1 },
            ..ApiSettings::default()
        })
        .await;
    run_one(&env, "a").await;
    let mut runner = TestRunner::deterministic();
    let bodies = any_json();
    let raw = proptest::collection::vec(proptest::num::u8::ANY, 0..64);
    let paths = [
        "/api/v1/platform/a/control",
        "/api/v1/groups/a/control",
        "/api/v1/platform/a/control?namespace=%zz&timeout=%%",
        "/api/v1/platform/%2e%2e/control",
    ];
    for case in 0..300 {
        let body = if case % 4 == 3 {
            let bytes = raw.new_tree(&mut runner).expect("bytes").current();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            bodies
                .new_tree(&mut runner)
                .expect("json")
                .current()
                .to_string()
        };
        let path = paths[case % paths.len()];
        let answer = rest.post(path, &body).await;
        assert!(
            answer.status < 500,
            "POST {path} with {body} answered {}: {}",
            answer.status,
            answer.text()
        );
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_the_caches_are_synced_the_api_answers_503() {
    let Some(mut env) =
        TestEnv::sim_only("holds the operator's first list with the simulator's fault injection")
            .await
    else {
        return;
    };
    env.stop_operator().await;
    env.sim()
        .faults()
        .update(|f| f.hang_paths.push("/apis/pmp.dev/".into()));
    env.start_operator();
    let rest = env.serve_api(open_api()).await;
    rest.get("/api/v1/platforms")
        .await
        .problem(503, "not-synced");
    rest.post("/api/v1/platform/a/control", r#"{"action":"stop"}"#)
        .await
        .problem(503, "not-synced");
    let ready = rest.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    env.sim().faults().clear();
    env.kill_operator();
    env.shutdown().await;
}

#[test]
fn run_refuses_an_unauthenticated_api_on_a_reachable_address() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_platform-operator"))
        .args(["run", "--api-auth", "none", "--api-addr", "0.0.0.0:0"])
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .expect("platform-operator runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--api-auth none") && stderr.contains("loopback"),
        "{stderr}"
    );
}
