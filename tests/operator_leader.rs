//! Leader election with two operator instances on one cluster (either cluster): only the
//! leader reconciles and writes, a standby's writes are refused by its client, a dead leader
//! is replaced once its lease runs out, and a leader whose lease is taken stops writing.

mod operator_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event as EventV1;
use kube::api::{Api, Patch, PatchParams};
use operator_support::*;
use platform_operator::api::ApiSettings;
use platform_operator::api::auth::AuthMode;
use platform_operator::client::{
    ApiTransport, RateLimit, Transport, operator_client, throttled_client,
};
use platform_operator::controller::{
    ElectionConfig, FIELD_MANAGER, Leadership, Operator, OperatorConfig, run_election,
};
use platform_operator::crd::Platform;
use platform_operator::fixtures::platform;
use serde_json::json;

/// A lease short enough for a test: renewed every second, given up after three.
const LEASE: Duration = Duration::from_secs(3);

/// One operator replica on a runtime of its own, so that it can die as a process does:
/// dropping the runtime drops every task at once, the lease manager's too, without releasing
/// the lease.
struct Replica {
    runtime: Option<tokio::runtime::Runtime>,
    leadership: Arc<Leadership>,
    client: kube::Client,
    operator: Operator,
    _stop_election: tokio::sync::watch::Sender<bool>,
}

impl Replica {
    async fn start(env: &TestEnv, identity: &str) -> Replica {
        let config = env.kube_config().await;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let _inside = runtime.enter();
        let leadership = Leadership::elected(identity);
        let unlimited = RateLimit { qps: 0.0, burst: 1 };
        // The transport `run` uses by default: HTTP/2 on the real API server (one connection
        // for both clients), HTTP/1.1 on the simulator's plain-http endpoint.
        let transport = ApiTransport::new(config, Transport::default()).expect("transport");
        let client = operator_client(&transport, unlimited, leadership.clone()).expect("client");
        let election_client = throttled_client(&transport, unlimited).expect("client");
        let mut election = ElectionConfig::new(env.namespace(), identity);
        election.lease_duration = LEASE;
        election.renew_before = Duration::from_secs(1);
        let (stop_election, stopped) = tokio::sync::watch::channel(false);
        runtime.spawn(run_election(
            election_client,
            election,
            leadership.clone(),
            stopped,
        ));
        let operator = Operator::start(
            client.clone(),
            OperatorConfig {
                namespace: Some(env.namespace().to_string()),
                instance: Some(identity.to_string()),
                clock: env.operator_clock(),
                leadership: leadership.clone(),
                ..OperatorConfig::default()
            },
        );
        Replica {
            runtime: Some(runtime),
            leadership,
            client,
            operator,
            _stop_election: stop_election,
        }
    }

    fn leads(&self) -> bool {
        self.leadership.is_leader()
    }

    /// Dies at once, as a killed process does.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn eventually(what: &str, timeout: Duration, check: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// The operator's `Started` Events per platform, with the replica that reported each.
async fn started_by(env: &TestEnv) -> BTreeMap<String, Vec<String>> {
    let api: Api<EventV1> = Api::namespaced(env.client(), env.namespace());
    let mut by = BTreeMap::<String, Vec<String>>::new();
    for event in api.list(&Default::default()).await.expect("events").items {
        if event.reason.as_deref() == Some("Started")
            && event.reporting_controller.as_deref() == Some(FIELD_MANAGER)
            && let Some(name) = event.regarding.and_then(|r| r.name)
        {
            by.entry(name)
                .or_default()
                .push(event.reporting_instance.unwrap_or_default());
        }
    }
    by
}

fn starts(platforms: &BTreeMap<String, Platform>) -> BTreeMap<String, usize> {
    platforms
        .iter()
        .map(|(name, p)| {
            let count = p.status.as_ref().map_or(0, |s| {
                s.history.iter().filter(|h| h.action == "Start").count()
            });
            (name.clone(), count)
        })
        .collect()
}

/// A write through `client` (an annotation on a Platform), refused or not.
async fn try_write(client: &kube::Client, env: &TestEnv, name: &str) -> Result<(), String> {
    let api: Api<Platform> = Api::namespaced(client.clone(), env.namespace());
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"test/touched": "yes"}}})),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_standby_takes_over_when_it_dies() {
    let mut env = TestEnv::start().await;
    env.kill_operator();
    let mut first = Replica::start(&env, "replica-a").await;
    eventually("replica-a to lead", Duration::from_secs(30), || {
        first.leads()
    })
    .await;
    let second = Replica::start(&env, "replica-b").await;

    let stack = chain(&["a", "b", "c"], "200ms");
    env.apply(&stack).await;
    env.wait_running(&["a", "b", "c"]).await;
    env.settle().await;
    assert!(first.leads() && !second.leads(), "exactly one leader");
    let refused = try_write(&second.client, &env, "a")
        .await
        .expect_err("a standby's writes are refused");
    assert!(refused.contains("not the leader"), "{refused}");
    let standby_api = Rest::serve(
        second.operator.context().clone(),
        ApiSettings {
            auth: AuthMode::None,
            ..ApiSettings::default()
        },
    )
    .await;
    let read = standby_api.get("/api/v1/platform/c/status").await;
    assert_eq!(read.status, 200, "a standby serves reads: {}", read.text());
    assert_eq!(read.json()["phase"], "Running");
    let control = standby_api
        .post("/api/v1/platform/c/control", r#"{"action":"restart"}"#)
        .await;
    let problem = control.problem(503, "standby");
    assert_eq!(problem["leader"], "replica-a", "{problem}");
    assert_eq!(
        control
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let ready = standby_api.get("/readyz").await.json();
    assert_eq!(ready["role"], "standby", "{ready}");

    first.kill();
    let failover = eventually("replica-b to take over", Duration::from_secs(30), || {
        second.leads()
    })
    .await;
    eprintln!("failover took {failover:?} (lease {LEASE:?})");

    env.apply(&[platform("d")
        .depends_on(["c"])
        .pod_annotation("sim.pmp.dev/ready-after", "200ms")
        .build()])
        .await;
    let platforms = env.wait_running(&["a", "b", "c", "d"]).await;
    let ready = standby_api.get("/readyz").await.json();
    assert_eq!(ready["role"], "leader", "{ready}");
    env.settle().await;
    let once: BTreeMap<String, usize> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| (n.to_string(), 1))
        .collect();
    assert_eq!(starts(&platforms), once, "no platform started twice");
    let started = started_by(&env).await;
    let expected: BTreeMap<String, Vec<String>> = [
        ("a", "replica-a"),
        ("b", "replica-a"),
        ("c", "replica-a"),
        ("d", "replica-b"),
    ]
    .iter()
    .map(|(p, r)| (p.to_string(), vec![r.to_string()]))
    .collect();
    assert_eq!(
        started, expected,
        "each start by the leader of its time, once"
    );
    assert_eq!(
        env.history().await.scale_ups(),
        4,
        "one scale-up per platform: the new leader repeated nothing"
    );
    drop(second);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_writing_at_once() {
    let mut env = TestEnv::start().await;
    env.kill_operator();
    let leader = Replica::start(&env, "replica-a").await;
    eventually("replica-a to lead", Duration::from_secs(30), || {
        leader.leads()
    })
    .await;
    env.apply(&chain(&["a"], "200ms")).await;
    env.wait_running(&["a"]).await;
    try_write(&leader.client, &env, "a")
        .await
        .expect("the leader writes");

    // Someone else holds the lease now (as after a partition the leader did not notice).
    let leases: Api<Lease> = Api::namespaced(env.client(), env.namespace());
    let now = k8s_openapi::jiff::Timestamp::now();
    leases
        .patch(
            "platform-operator",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "holderIdentity": "intruder",
                "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now),
                "leaseDurationSeconds": 60,
            }})),
        )
        .await
        .expect("lease taken over");
    let stepped_down = eventually("replica-a to step down", Duration::from_secs(10), || {
        !leader.leads()
    })
    .await;
    eprintln!("stepped down {stepped_down:?} after the lease changed hands");
    let refused = try_write(&leader.client, &env, "a")
        .await
        .expect_err("no writes after the lease is lost");
    assert!(refused.contains("not the leader"), "{refused}");
    drop(leader);
    env.shutdown().await;
}
