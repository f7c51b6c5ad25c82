//! Graph errors, dependency readiness, operator restarts and steady state.

mod operator_support;

use std::time::Duration;

use operator_support::*;
use platform_operator::controller::FIELD_MANAGER;
use platform_operator::crd::Phase;
use platform_operator::fixtures::platform;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_blocks_exactly_the_platforms_in_and_behind_it() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply(
        &client,
        &[
            platform("a").depends_on(["b"]).build(),
            platform("b").depends_on(["a"]).build(),
            platform("behind").depends_on(["b"]).build(),
            platform("free").build(),
            platform("after-free").depends_on(["free"]).build(),
        ],
    )
    .await;
    let done = wait_for(
        &client,
        "blocked and running",
        Duration::from_secs(30),
        |p| {
            all_in(Phase::Blocked, &["a", "b", "behind"])(p)
                && all_in(Phase::Running, &["free", "after-free"])(p)
        },
    )
    .await;
    let (ready, message) = condition(&done["a"], "Ready").expect("Ready condition");
    assert_eq!(ready, "False");
    assert!(
        message.contains("a → b → a"),
        "cycle path in the message: {message}"
    );
    let (_, behind) = condition(&done["behind"], "Ready").expect("Ready condition");
    assert!(
        behind.contains("a → b → a"),
        "the root cause is shown behind the cycle too: {behind}"
    );
    let started = starts(&sandbox.cluster.writes());
    assert!(
        !started.contains_key("a") && !started.contains_key("b") && !started.contains_key("behind"),
        "nothing in or behind a cycle starts"
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_losing_readiness_is_observed_by_its_dependents() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply(
        &client,
        &[
            platform("db")
                .pod_annotation("sim.pmp.dev/ready-after", "500ms")
                .pod_annotation("sim.pmp.dev/unready-after", "10s")
                .build(),
            platform("app")
                .depends_on(["db"])
                .pod_annotation("sim.pmp.dev/ready-after", "500ms")
                .build(),
        ],
    )
    .await;
    wait_for(
        &client,
        "both Running",
        Duration::from_secs(30),
        all_in(Phase::Running, &["db", "app"]),
    )
    .await;
    let done = wait_for(
        &client,
        "app sees db unready",
        Duration::from_secs(30),
        |p| {
            p.get("app")
                .and_then(|a| condition(a, "DependenciesReady"))
                .is_some_and(|(s, _)| s == "False")
        },
    )
    .await;
    let (_, message) = condition(&done["app"], "DependenciesReady").expect("condition");
    assert!(message.contains("db"), "{message}");
    assert_eq!(
        done["app"].status.as_ref().map(|s| s.blocked_by.clone()),
        Some(vec!["db".to_string()])
    );
    assert_ne!(
        phase(&done["db"]),
        Some(Phase::Running),
        "db itself is no longer Running"
    );
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restart_mid_startup_converges_in_order() {
    let mut sandbox = sandbox().await;
    let client = sandbox.client();
    apply(&client, &chain(&TRADING, "2s")).await;
    wait_for(
        &client,
        "two platforms started",
        Duration::from_secs(30),
        |p| {
            p.values()
                .filter(|x| matches!(phase(x), Some(Phase::Running)))
                .count()
                >= 2
        },
    )
    .await;
    sandbox.kill_operator();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sandbox.start_operator().expect("operator restarts");
    wait_running(&client, &TRADING).await;
    assert_started_in_order(&sandbox.cluster.writes(), &chain_dependencies(&TRADING));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_writes() {
    let sandbox = sandbox().await;
    let client = sandbox.client();
    apply(&client, &chain(&TRADING, "500ms")).await;
    wait_running(&client, &TRADING).await;
    // Let in-flight reconciles and status writes settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = sandbox.cluster.writes().len();
    let started = sandbox.cluster.clock().now();
    // 60 simulated seconds at the test speed.
    tokio::time::sleep(Duration::from_secs_f64(60.0 / SPEED)).await;
    assert!(
        sandbox
            .cluster
            .clock()
            .now()
            .duration_since(started)
            .as_secs()
            >= 60
    );
    let writes = sandbox.cluster.writes();
    let later: Vec<String> = writes[before..]
        .iter()
        .map(|w| format!("{} {:?} {}/{}", w.actor, w.verb, w.resource.plural, w.name))
        .collect();
    let by_operator = writes[before..]
        .iter()
        .filter(|w| w.actor == FIELD_MANAGER)
        .count();
    assert_eq!(
        by_operator, 0,
        "the operator wrote in steady state: {later:?}"
    );
    assert!(later.is_empty(), "nothing wrote in steady state: {later:?}");
    sandbox.shutdown().await;
}
