//! Runtime supervision against a cluster whose pods fail as scripted (`sim.pmp.dev/*`
//! annotations; kwok stages give them the same meaning on the real control plane): restarts
//! with back-off, the circuit opening and its dependents stopping in reverse order, recovery
//! in order once the cause is fixed, OOM kills per the platform's reaction, and a user's reset.

mod operator_support;

use std::time::Duration;

use operator_support::*;
use platform_operator::crd::{
    Backoff, CircuitState, HealthCheckReaction, Phase, Platform, Reactions, ResourceReaction,
    RestartPolicySettings,
};
use platform_operator::fixtures::{PlatformBuilder, platform};
use serde_json::json;

/// Restarts allowed before the circuit opens, and their back-off (simulated seconds).
fn quick_restarts(builder: PlatformBuilder, attempts: u32) -> PlatformBuilder {
    builder.with_spec(|spec| {
        spec.restart_policy = Some(RestartPolicySettings {
            max_restart_attempts: Some(attempts),
            window_seconds: Some(600),
            backoff: Some(Backoff {
                initial_seconds: Some(2),
                max_seconds: Some(8),
            }),
        });
    })
}

fn actions(platform: &Platform) -> Vec<String> {
    platform
        .status
        .as_ref()
        .map(|s| s.history.iter().map(|h| h.action.clone()).collect())
        .unwrap_or_default()
}

fn circuit(platform: &Platform) -> Option<CircuitState> {
    platform
        .status
        .as_ref()
        .and_then(|s| s.supervision.as_ref())
        .map(|s| s.circuit)
}

fn own_restarts(platform: &Platform) -> usize {
    platform
        .status
        .as_ref()
        .and_then(|s| s.supervision.as_ref())
        .map_or(0, |s| s.restarts.len())
}

/// a ← b ← c, with `a` crashing a second after each start.
fn failing_chain() -> Vec<Platform> {
    let a = quick_restarts(
        platform("a")
            .pod_annotation("sim.pmp.dev/ready-after", "200ms")
            .pod_annotation("sim.pmp.dev/crash-after", "3s"),
        2,
    )
    .build();
    let mut rest = chain(&["a", "b", "c"], "200ms");
    rest[0] = a;
    rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_is_restarted_then_its_circuit_opens_its_dependents_stop_and_all_recover_in_order()
 {
    let env = TestEnv::start().await;
    env.apply(&failing_chain()).await;
    let failed = env
        .wait_for(
            "a Failed with its circuit open, b and c stopped",
            Duration::from_secs(120),
            |p| {
                p.get("a").and_then(phase) == Some(Phase::Failed)
                    && p.get("a").and_then(circuit) == Some(CircuitState::Open)
                    && ["b", "c"]
                        .iter()
                        .all(|n| p.get(*n).and_then(phase) == Some(Phase::Stopped))
            },
        )
        .await;
    let a = &failed["a"];
    let history = actions(a);
    let restarts = history.iter().filter(|h| *h == "Restart").count();
    assert_eq!(
        restarts, 2,
        "maxRestartAttempts restarts, then the circuit: {history:?}"
    );
    assert!(history.contains(&"CircuitOpen".to_string()), "{history:?}");
    let status = a.status.clone().expect("status");
    assert_eq!(status.restart_count, Some(2));
    let degraded = condition(a, "Degraded").expect("Degraded");
    assert_eq!(degraded.0, "True");
    let reason = a.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .map(|c| c.reason.clone())
    });
    assert_eq!(reason.as_deref(), Some("CircuitOpen"));
    let stalled = condition(a, "Stalled").expect("Stalled");
    assert_eq!(stalled.0, "True", "kstatus reads it as Failed");
    for dependent in ["b", "c"] {
        let p = &failed[dependent];
        assert_eq!(
            p.status.as_ref().and_then(|s| s.stopped_by.as_deref()),
            Some("Platform/a: dependency failed"),
            "{dependent}"
        );
        assert_eq!(
            own_restarts(p),
            0,
            "{dependent} spent none of its restart budget"
        );
    }
    let recorded = env.history().await;
    let stops: Vec<String> = recorded.stops().into_iter().map(|(_, n)| n).collect();
    // Only what had started is scaled down; under load `a` may fail before `c` started.
    let started = recorded.starts();
    let expected: Vec<String> = ["c", "b", "a"]
        .iter()
        .filter(|n| started.contains_key(**n))
        .map(|n| n.to_string())
        .collect();
    if stops != expected {
        for line in recorded.describe() {
            if line.contains("Platform") || line.contains("Deployment") {
                eprintln!("{line}");
            }
        }
        for (name, p) in &failed {
            eprintln!(
                "{name}: {:?}",
                p.status
                    .as_ref()
                    .map(|s| (&s.phase, &s.message, &s.history))
            );
        }
    }
    assert_eq!(stops, expected, "dependents first, in reverse order");
    assert!(
        expected.len() >= 2,
        "a and b at least had started: {expected:?}"
    );

    // The fix: a spec without the crash. The new spec resets supervision; everything comes
    // back in dependency order.
    let before_fix = env.history().await.last_rv();
    env.patch_spec(
        "a",
        json!({"podAnnotations": {"sim.pmp.dev/crash-after": null}}),
    )
    .await;
    let running = env
        .wait_for(
            "all Running again",
            Duration::from_secs(120),
            all_in(Phase::Running, &["a", "b", "c"]),
        )
        .await;
    env.history()
        .await
        .since(before_fix)
        .assert_started_in_order(&chain_dependencies(&["a", "b", "c"]));
    assert!(actions(&running["a"]).contains(&"CircuitReset".to_string()));
    assert_eq!(
        running["a"]
            .status
            .as_ref()
            .and_then(|s| s.stopped_by.clone()),
        None
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_cooldown_one_trial_start_and_a_failing_trial_reopens_for_longer() {
    let env = TestEnv::start().await;
    env.apply(&[quick_restarts(
        platform("a")
            .pod_annotation("sim.pmp.dev/ready-after", "200ms")
            .pod_annotation("sim.pmp.dev/crash-after", "1s"),
        1,
    )
    .build()])
        .await;
    let reopened = env
        .wait_for(
            "the circuit opened, tried and opened again",
            Duration::from_secs(180),
            |p| {
                p.get("a").is_some_and(|a| {
                    let history = actions(a);
                    let opened = history.iter().filter(|h| *h == "CircuitOpen").count();
                    opened >= 2 && circuit(a) == Some(CircuitState::Open)
                })
            },
        )
        .await;
    let a = &reopened["a"];
    let history = actions(a);
    let first_open = history
        .iter()
        .position(|h| h == "CircuitOpen")
        .expect("opened");
    let trial = history
        .iter()
        .position(|h| h == "CircuitHalfOpen")
        .expect("tried");
    assert!(first_open < trial, "{history:?}");
    let cooldown = a
        .status
        .as_ref()
        .and_then(|s| s.supervision.as_ref())
        .and_then(|s| s.cooldown_seconds);
    assert_eq!(
        cooldown,
        Some(16),
        "twice the first cooldown (backoff.maxSeconds 8)"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_stops_restarts_or_is_ignored_as_each_platform_says() {
    let env = TestEnv::start().await;
    let oom = |name: &str, on_resource: ResourceReaction| {
        quick_restarts(
            platform(name)
                .pod_annotation("sim.pmp.dev/ready-after", "200ms")
                .pod_annotation("sim.pmp.dev/oom-after", "2s"),
            5,
        )
        .with_spec(|spec| {
            spec.reactions = Some(Reactions {
                on_resource_exceeded: Some(on_resource),
                // The OOM kills also crash-loop the pod: let only the resource reaction act.
                on_health_check_failed: Some(HealthCheckReaction::Ignore),
                on_dependency_failed: None,
            });
        })
        .build()
    };
    env.apply(&[
        oom("stops", ResourceReaction::Stop),
        oom("restarts", ResourceReaction::Restart),
        oom("ignores", ResourceReaction::Ignore),
    ])
    .await;
    let seen = env
        .wait_for("each reaction carried out", Duration::from_secs(120), |p| {
            p.get("stops").and_then(phase) == Some(Phase::Failed)
                && p.get("restarts")
                    .is_some_and(|r| actions(r).iter().filter(|a| *a == "Restart").count() >= 2)
        })
        .await;
    let stops = &seen["stops"];
    assert!(actions(stops).contains(&"ResourceExceeded".to_string()));
    assert_eq!(
        condition(stops, "Ready").map(|c| c.0),
        Some("False".to_string())
    );
    let supervision = stops
        .status
        .as_ref()
        .and_then(|s| s.supervision.clone())
        .expect("kept");
    assert_eq!(
        supervision.stopped_for.as_deref(),
        Some("ResourceExceeded: OOMKilled")
    );
    let ignores = &seen["ignores"];
    let acted: Vec<String> = actions(ignores)
        .into_iter()
        .filter(|a| a != "Start")
        .collect();
    assert!(acted.is_empty(), "ignored: {acted:?}");
    let last_failure = ignores
        .status
        .as_ref()
        .and_then(|s| s.supervision.as_ref())
        .and_then(|s| s.last_failure.clone())
        .expect("but recorded");
    assert_eq!(last_failure.reason, "OOMKilled");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_restart_resets_the_circuit_and_a_user_stopped_dependent_stays_stopped() {
    let env = TestEnv::start().await;
    let mut stack = failing_chain();
    stack[2].spec.desired_state = platform_operator::crd::DesiredState::Stopped;
    // The circuit stays open (no trial) long enough for the REST checks below on a slow
    // machine: 60 simulated seconds are 3 real ones.
    if let Some(backoff) = stack[0]
        .spec
        .restart_policy
        .as_mut()
        .and_then(|p| p.backoff.as_mut())
    {
        backoff.max_seconds = Some(60);
    }
    env.apply(&stack).await;
    env.wait_for(
        "a Failed, b stopped by the failure",
        Duration::from_secs(120),
        |p| {
            p.get("a").and_then(phase) == Some(Phase::Failed)
                && p.get("b").and_then(phase) == Some(Phase::Stopped)
        },
    )
    .await;
    let rest = env
        .serve_api(platform_operator::api::ApiSettings {
            auth: platform_operator::api::auth::AuthMode::None,
            ..Default::default()
        })
        .await;
    let status = rest.get("/api/v1/platform/a/status").await.json();
    assert_eq!(status["circuit"], "Open", "{status}");
    assert_eq!(
        status["health"]["reason"], "HealthCheckFailed: CrashLoopBackOff",
        "{status}"
    );
    let reset = rest
        .post("/api/v1/platform/a/control", r#"{"action":"start"}"#)
        .await;
    assert_eq!(reset.status, 202, "{}", reset.text());
    assert_eq!(reset.json()["affected"][0]["change"], "reset");
    let after_reset = env
        .wait_for("the reset carried out", Duration::from_secs(60), |p| {
            p.get("a")
                .is_some_and(|a| actions(a).contains(&"CircuitReset".to_string()))
        })
        .await;
    let reset_entry = after_reset["a"]
        .status
        .as_ref()
        .and_then(|s| {
            s.history
                .iter()
                .find(|h| h.action == "CircuitReset")
                .cloned()
        })
        .expect("audited");
    assert_eq!(reset_entry.actor, "api:anonymous", "the caller reset it");

    // The real fix is in the spec; a and b come back, the platform the user stopped does not.
    env.patch_spec(
        "a",
        json!({"podAnnotations": {"sim.pmp.dev/crash-after": null}}),
    )
    .await;
    let back = env
        .wait_for(
            "a and b Running again",
            Duration::from_secs(120),
            all_in(Phase::Running, &["a", "b"]),
        )
        .await;
    assert_eq!(
        back["c"].status.as_ref().and_then(|s| s.phase),
        Some(Phase::Stopped),
        "the platform the user stopped stays stopped"
    );
    env.shutdown().await;
}

/// A webhook receiver on 127.0.0.1 that passes each alert's event name on.
async fn webhook_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(tx): axum::extract::State<
                    tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
                >,
                 axum::Json(body): axum::Json<serde_json::Value>| async move {
                    let _ = tx.send(body);
                    "ok"
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opening_and_the_recovery_are_alerted() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PostParams};
    use platform_operator::crd::{
        AlertChannel, AlertChannelType, AlertEvent, Alerts, SecretKeyRef,
    };
    let env = TestEnv::start().await;
    let (url, mut received) = webhook_receiver().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "ops-hook"},
        "stringData": {"url": url},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(env.client(), env.namespace())
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret created");
    let mut stack = failing_chain();
    stack[0].spec.alerts = Some(Alerts {
        channels: vec![AlertChannel {
            name: "ops".into(),
            channel_type: AlertChannelType::Webhook,
            secret_ref: SecretKeyRef {
                name: "ops-hook".into(),
                key: "url".into(),
            },
        }],
        events: Some(vec![AlertEvent::CircuitOpen, AlertEvent::Recovered]),
    });
    env.apply(&stack).await;
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !events.contains(&"CircuitOpen".to_string()) {
        let body = tokio::time::timeout_at(deadline, received.recv())
            .await
            .expect("a CircuitOpen alert within 120 s")
            .expect("receiver open");
        assert_eq!(body["platform"], "a", "{body}");
        events.push(body["event"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(events, ["CircuitOpen"], "only the subscribed events");
    env.patch_spec(
        "a",
        json!({"podAnnotations": {"sim.pmp.dev/crash-after": null}}),
    )
    .await;
    // A trial after the cooldown may fail (and alert) again before the fix lands.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let body = tokio::time::timeout_at(deadline, received.recv())
            .await
            .expect("a Recovered alert within 120 s")
            .expect("receiver open");
        match body["event"].as_str() {
            Some("Recovered") => break,
            Some("CircuitOpen") => continue,
            _ => panic!("an event it does not subscribe to: {body}"),
        }
    }
    env.shutdown().await;
}

/// Whether usage is known is asked at start, not after the first interval: the first status
/// writes carry it, instead of one more write per platform when the answer comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_statuses_already_say_whether_usage_is_known() {
    let mut env = TestEnv::start().await;
    env.kill_operator();
    env.start_operator_with(|config| config.usage_interval = Duration::from_secs(3600));
    env.apply(&[platform("db")
        .pod_annotation("sim.pmp.dev/ready-after", "200ms")
        .build()])
        .await;
    let seen = env
        .wait_for("db Running", Duration::from_secs(60), |p| {
            p.get("db").and_then(phase) == Some(Phase::Running)
        })
        .await;
    let status = seen["db"].status.clone().expect("status");
    // The simulator serves the metrics API; the test control plane has no metrics-server.
    let expected = real_kubeconfig().is_none();
    assert_eq!(status.usage_known, Some(expected), "{status:?}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_above_the_threshold_of_a_limit_is_a_resource_event_where_usage_is_known() {
    let mut env = TestEnv::start().await;
    env.kill_operator();
    env.start_operator_with(|config| config.usage_interval = Duration::from_millis(200));
    env.wait_for_operator_caches().await;
    let hog = platform("hog")
        .pod_annotation("sim.pmp.dev/ready-after", "200ms")
        .pod_annotation("sim.pmp.dev/memory-usage", "95Mi")
        .with_spec(|spec| {
            spec.resources = Some(platform_operator::crd::ResourceSettings {
                requests: None,
                limits: Some(platform_operator::crd::CpuMemory {
                    cpu: None,
                    memory: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                        "100Mi".into(),
                    )),
                }),
            });
        })
        .build();
    env.apply(&[hog]).await;
    if real_kubeconfig().is_some() {
        // No metrics-server on the test control plane: usage is unknown, and said so.
        let seen = env
            .wait_for("usage unknown in status", Duration::from_secs(60), |p| {
                p.get("hog")
                    .and_then(|h| h.status.as_ref())
                    .is_some_and(|s| {
                        s.usage_known == Some(false) && s.phase == Some(Phase::Running)
                    })
            })
            .await;
        assert!(actions(&seen["hog"]).iter().all(|a| a == "Start"));
    } else {
        let stopped = env
            .wait_for("hog stopped for its memory", Duration::from_secs(60), |p| {
                p.get("hog").and_then(phase) == Some(Phase::Failed)
            })
            .await;
        let status = stopped["hog"].status.clone().expect("status");
        assert_eq!(status.usage_known, Some(true));
        let supervision = status.supervision.expect("kept");
        assert_eq!(
            supervision.stopped_for.as_deref(),
            Some("ResourceExceeded: MemoryAboveThreshold")
        );
        let evidence = supervision
            .last_failure
            .expect("recorded")
            .evidence
            .join(" ");
        assert!(evidence.contains("95 MiB (95% of its limit)"), "{evidence}");
    }
    env.shutdown().await;
}
