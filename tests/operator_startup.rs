//! Ordered startup.

mod operator_support;

use std::collections::BTreeMap;
use std::time::Duration;

use operator_support::*;
use platform_operator::crd::Phase;
use platform_operator::fixtures::platform;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trading_stack_comes_up_strictly_in_order() {
    let env = TestEnv::start().await;
    env.apply(&chain(&TRADING, "1s")).await;
    let done = env
        .wait_for(
            "the trading stack Running",
            Duration::from_secs(30),
            all_in(Phase::Running, &TRADING),
        )
        .await;
    for name in TRADING {
        let (ready, _) = condition(&done[name], "Ready").expect("Ready condition");
        assert_eq!(ready, "True", "{name} Ready");
    }
    let history = env.history().await;
    history.assert_started_in_order(&chain_dependencies(&TRADING));
    let starts = history.starts();
    let order: Vec<&str> = {
        let mut by_rv: Vec<(&u64, &String)> = starts.iter().map(|(n, s)| (s, n)).collect();
        by_rv.sort();
        by_rv.into_iter().map(|(_, n)| n.as_str()).collect()
    };
    assert_eq!(order, TRADING.to_vec());
    let waves: Vec<Option<i32>> = TRADING
        .iter()
        .map(|n| done[*n].status.as_ref().and_then(|s| s.startup_wave))
        .collect();
    assert_eq!(waves, (0..6).map(Some).collect::<Vec<_>>());
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_wave_starts_in_parallel() {
    let env = TestEnv::start().await;
    let slow = "4s";
    let mut stack = vec![
        platform("root")
            .pod_annotation("sim.pmp.dev/ready-after", "1s")
            .build(),
    ];
    let wide: Vec<String> = (0..6).map(|i| format!("wide-{i}")).collect();
    for name in &wide {
        stack.push(
            platform(name)
                .depends_on(["root"])
                .pod_annotation("sim.pmp.dev/ready-after", slow)
                .build(),
        );
    }
    stack.push(
        platform("join")
            .depends_on(wide.iter().map(String::as_str))
            .build(),
    );
    env.apply(&stack).await;
    let mut all: Vec<&str> = wide.iter().map(String::as_str).collect();
    all.extend(["root", "join"]);
    env.wait_for(
        "the diamond Running",
        Duration::from_secs(30),
        all_in(Phase::Running, &all),
    )
    .await;

    let history = env.history().await;
    let starts = history.starts();
    let ready = history.first_ready();
    let last_wide_start = wide.iter().map(|n| starts[n]).max().expect("starts");
    let first_wide_ready = wide.iter().map(|n| ready[n]).min().expect("ready");
    assert!(
        last_wide_start < first_wide_ready,
        "every platform of wave 1 starts before any of them is Ready (a wave does not wait for unrelated platforms)"
    );
    let dependencies: BTreeMap<String, Vec<String>> = wide
        .iter()
        .map(|n| (n.clone(), vec!["root".to_string()]))
        .chain([("join".to_string(), wide.clone())])
        .collect();
    history.assert_started_in_order(&dependencies);
    env.shutdown().await;
}

/// A dependency counts as ready for its dependents when its workload is, not when its own
/// status says so: that status is written from the same observation one round trip later.
/// Here the dependency's status cannot be written at all, yet its dependent starts once its
/// pods are ready, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_starts_on_its_dependencys_ready_workload_without_waiting_for_its_status() {
    let Some(env) = TestEnv::sim_only("fails one platform's status writes (fault injection)").await
    else {
        return;
    };
    let status_path = format!("/namespaces/{}/platforms/a/status", env.namespace());
    env.sim()
        .faults()
        .update(|f| f.fail_paths.push((status_path, 503)));
    env.apply(&chain(&["a", "b"], "500ms")).await;
    let platforms = env
        .wait_for(
            "b Running",
            Duration::from_secs(60),
            all_in(Phase::Running, &["b"]),
        )
        .await;
    assert_ne!(
        platforms.get("a").and_then(phase),
        Some(Phase::Running),
        "a's status was never written"
    );
    env.history()
        .await
        .assert_started_in_order(&chain_dependencies(&["a", "b"]));
    env.sim().faults().clear();
    env.shutdown().await;
}
