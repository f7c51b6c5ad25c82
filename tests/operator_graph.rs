//! Graph errors, dependency readiness, operator restarts and steady state.

mod operator_support;

use std::time::Duration;

use operator_support::*;
use platform_operator::crd::Phase;
use platform_operator::fixtures::platform;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_blocks_exactly_the_platforms_in_and_behind_it() {
    let env = TestEnv::start().await;
    env.apply(&[
        platform("a").depends_on(["b"]).build(),
        platform("b").depends_on(["a"]).build(),
        platform("behind").depends_on(["b"]).build(),
        platform("free").build(),
        platform("after-free").depends_on(["free"]).build(),
    ])
    .await;
    let done = env
        .wait_for("blocked and running", Duration::from_secs(30), |p| {
            all_in(Phase::Blocked, &["a", "b", "behind"])(p)
                && all_in(Phase::Running, &["free", "after-free"])(p)
        })
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
    let started = env.history().await.starts();
    assert!(
        !started.contains_key("a") && !started.contains_key("b") && !started.contains_key("behind"),
        "nothing in or behind a cycle starts"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_losing_readiness_is_observed_by_its_dependents() {
    let env = TestEnv::start().await;
    env.apply(&[
        platform("db")
            .pod_annotation("sim.pmp.dev/ready-after", "500ms")
            .pod_annotation("sim.pmp.dev/unready-after", "10s")
            .build(),
        platform("app")
            .depends_on(["db"])
            .pod_annotation("sim.pmp.dev/ready-after", "500ms")
            .build(),
    ])
    .await;
    env.wait_for(
        "both Running",
        Duration::from_secs(30),
        all_in(Phase::Running, &["db", "app"]),
    )
    .await;
    let done = env
        .wait_for("app sees db unready", Duration::from_secs(30), |p| {
            p.get("app")
                .and_then(|a| condition(a, "DependenciesReady"))
                .is_some_and(|(s, _)| s == "False")
        })
        .await;
    let (_, message) = condition(&done["app"], "DependenciesReady").expect("condition");
    assert!(message.contains("db"), "{message}");
    assert_eq!(
        done["app"].status.as_ref().map(|s| s.blocked_by.clone()),
        Some(vec!["db".to_string()])
    );
    // Dependents judge db from its workload, so they may see it first; db's own status follows.
    env.wait_for("db no longer Running", Duration::from_secs(30), |p| {
        p.get("db").and_then(phase) != Some(Phase::Running)
    })
    .await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restart_mid_startup_converges_in_order() {
    let mut env = TestEnv::start().await;
    env.apply(&chain(&TRADING, "2s")).await;
    env.wait_for("two platforms started", Duration::from_secs(30), |p| {
        p.values()
            .filter(|x| matches!(phase(x), Some(Phase::Running)))
            .count()
            >= 2
    })
    .await;
    env.kill_operator();
    // The third platform's pods become Ready while no operator watches.
    env.let_time_pass(Duration::from_secs(3)).await;
    env.start_operator();
    env.wait_running(&TRADING).await;
    env.history()
        .await
        .assert_started_in_order(&chain_dependencies(&TRADING));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_writes() {
    let env = TestEnv::start().await;
    env.apply(&chain(&TRADING, "500ms")).await;
    env.wait_running(&TRADING).await;
    // Let in-flight reconciles, status writes and Events settle.
    env.settle().await;
    let before = env.history().await.last_rv();
    env.let_time_pass(Duration::from_secs(60)).await;
    let later = env.history().await.since(before);
    assert!(
        later.is_empty(),
        "something wrote in steady state: {:?}",
        later.describe()
    );
    env.shutdown().await;
}
