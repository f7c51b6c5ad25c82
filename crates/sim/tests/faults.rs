//! Fault injection, auth reviews, pod metrics, discovery and error bodies.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::discovery::Discovery;
use pmp_sim::{AuthTable, FaultConfig, PauseMode, SimCluster, SimConfig, TimeoutMode};
use serde_json::json;
use support::*;

#[tokio::test]
async fn error_fraction_is_deterministic_and_uses_status_bodies() {
    let faults = FaultConfig {
        seed: 42,
        error_rate: 0.5,
        ..FaultConfig::default()
    };
    let run = async || {
        let sim = start_with(SimConfig::default().with_faults(faults.clone())).await;
        let mut codes = Vec::new();
        for _ in 0..20 {
            let (code, body) = raw(
                &sim,
                "GET",
                "/api/v1/namespaces/default/configmaps",
                "",
                b"",
            )
            .await;
            if code != 200 {
                assert_eq!(body["kind"], "Status");
                assert_eq!(body["code"], code);
            }
            codes.push(code);
        }
        sim.shutdown().await;
        codes
    };
    let first = run().await;
    assert_eq!(first, run().await, "same seed, same faults");
    assert!(
        first.contains(&200) && first.iter().any(|c| [500, 503, 429].contains(c)),
        "{first:?}"
    );
}

#[tokio::test]
async fn latency_timeouts_and_pause() {
    let sim = start().await;
    let faults = sim.faults();
    faults.update(|f| f.latency = Duration::from_millis(200));
    let started = Instant::now();
    raw(&sim, "GET", "/api/v1/namespaces", "", b"").await;
    assert!(started.elapsed() >= Duration::from_millis(200));

    faults.set(FaultConfig {
        timeout_rate: 1.0,
        timeout_hold: Duration::from_millis(100),
        ..FaultConfig::default()
    });
    let (code, body) = raw(&sim, "GET", "/api/v1/namespaces", "", b"").await;
    assert_eq!((code, body["reason"].as_str()), (504, Some("Timeout")));
    faults.update(|f| f.timeout_mode = TimeoutMode::Drop);
    let (code, _) = raw_text(&sim, "GET", "/api/v1/namespaces", "", b"").await;
    assert_ne!(code, 504);

    // Faults can target one client by User-Agent only.
    faults.set(FaultConfig {
        error_rate: 1.0,
        user_agent_prefix: Some("operator".into()),
        ..FaultConfig::default()
    });
    assert_eq!(raw(&sim, "GET", "/api/v1/namespaces", "", b"").await.0, 200);
    faults.clear();

    faults.pause(Duration::from_millis(300), PauseMode::Hang);
    let started = Instant::now();
    assert_eq!(raw(&sim, "GET", "/api/v1/namespaces", "", b"").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(250));

    faults.pause(Duration::from_secs(60), PauseMode::Refuse);
    let client = sim.client();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    assert!(
        api.list(&ListParams::default()).await.is_err(),
        "connections are refused while paused"
    );
    faults.resume();
    assert!(api.list(&ListParams::default()).await.is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn token_and_access_reviews_come_from_the_table() {
    let auth = AuthTable::default()
        .with_token("t0k3n", "alice", &["devs"])
        .allow("group:devs", "get", "platforms", "*");
    let sim = start_with(SimConfig::default().with_auth(auth)).await;
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "t0k3n"}});
    let (code, body) = raw(
        &sim,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "application/json",
        review.to_string().as_bytes(),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(body["status"]["authenticated"], true);
    assert_eq!(body["status"]["user"]["username"], "alice");
    let sar = |verb: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "groups": ["devs"], "resourceAttributes": {"verb": verb, "resource": "platforms", "namespace": "x", "group": "pmp.dev"}}})
    };
    let (_, allowed) = raw(
        &sim,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "application/json",
        sar("get").to_string().as_bytes(),
    )
    .await;
    assert_eq!(allowed["status"]["allowed"], true);
    let (_, denied) = raw(
        &sim,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "application/json",
        sar("delete").to_string().as_bytes(),
    )
    .await;
    assert_eq!(denied["status"]["allowed"], false);
    let (code, _) = raw(
        &sim,
        "GET",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "",
        b"",
    )
    .await;
    assert_eq!(code, 405);
    sim.shutdown().await;
}

/// A client of `sim` that sends `token` as its bearer token (none: as the sim's kubeconfig).
async fn client_with_token(sim: &SimCluster, token: Option<&str>) -> kube::Client {
    let mut kubeconfig = serde_json::to_value(sim.kubeconfig()).expect("kubeconfig as JSON");
    if let Some(token) = token {
        kubeconfig["users"][0]["user"]["token"] = json!(token);
    }
    let kubeconfig = serde_json::from_value(kubeconfig).expect("kubeconfig from JSON");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

#[tokio::test]
async fn self_subject_review_names_the_bearer_tokens_user() {
    let auth = AuthTable::default().with_token("t0k3n", "alice", &["devs"]);
    let sim = start_with(SimConfig::default().with_auth(auth)).await;
    let whoami = async |token: Option<&str>| {
        let api: Api<SelfSubjectReview> = Api::all(client_with_token(&sim, token).await);
        api.create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .map(|review| review.status.and_then(|s| s.user_info).unwrap_or_default())
    };
    let alice = whoami(Some("t0k3n")).await.expect("alice's review");
    assert_eq!(alice.username.as_deref(), Some("alice"));
    assert_eq!(alice.groups, Some(vec!["devs".to_string()]));
    let admin = whoami(None).await.expect("the admin's review");
    assert_eq!(
        admin.username.as_deref(),
        Some(pmp_sim::auth::ANONYMOUS_ADMIN)
    );
    match whoami(Some("stolen")).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401),
        other => panic!("an unknown token is 401, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn answers_are_dated_by_the_simulated_clock() {
    let sim = start().await;
    sim.clock().advance(Duration::from_secs(86_400));
    let head = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(sim.addr())
            .await
            .expect("connect");
        let request = "GET /api/v1/namespaces HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        let text = String::from_utf8_lossy(&response).to_string();
        text.split_once("\r\n\r\n")
            .map_or(text.clone(), |(h, _)| h.to_string())
    };
    let date = head
        .lines()
        .find_map(|line| line.strip_prefix("date: ").or(line.strip_prefix("Date: ")))
        .expect("a Date header");
    let date = k8s_openapi::jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(date)
        .expect("an HTTP date");
    let behind = sim.clock().now().duration_since(date);
    assert!(
        behind.as_secs() >= 0 && behind.as_secs() < 5,
        "Date {date} is the simulated time {}, a day ahead of the wall clock",
        sim.clock().now()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn pod_metrics_from_the_usage_map() {
    let sim = start().await;
    sim.apply_manifests("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: default\nspec:\n  containers:\n  - name: main\n    image: img\n").await;
    let (code, _) = raw(
        &sim,
        "GET",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/p",
        "",
        b"",
    )
    .await;
    assert_eq!(code, 404, "no usage reported yet");
    sim.set_pod_usage("default", "p", "250m", "64Mi");
    let (code, m) = raw(
        &sim,
        "GET",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/p",
        "",
        b"",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(m["kind"], "PodMetrics");
    assert_eq!(
        m["containers"][0]["usage"],
        json!({"cpu": "250m", "memory": "64Mi"})
    );
    let (_, list) = raw(&sim, "GET", "/apis/metrics.k8s.io/v1beta1/pods", "", b"").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn kube_discovery_works_and_errors_are_status_bodies() {
    let sim = start().await;
    let discovery = Discovery::new(sim.client()).run().await.unwrap();
    assert!(
        discovery.has_group("pmp.dev")
            && discovery.has_group("apps")
            && discovery.has_group("metrics.k8s.io")
    );
    let (ar, caps) = discovery
        .resolve_gvk(&kube::core::GroupVersionKind::gvk(
            "pmp.dev", "v1alpha1", "Platform",
        ))
        .unwrap();
    assert_eq!(ar.plural, "platforms");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));
    let (code, version) = raw(&sim, "GET", "/version", "", b"").await;
    assert_eq!((code, version["minor"].as_str()), (200, Some("33")));

    for (method, path, code) in [
        ("GET", "/apis/nope.dev/v1/things", 404),
        ("POST", "/api/v1/namespaces/default/configmaps/x", 405),
        ("DELETE", "/version", 405),
    ] {
        let (got, body) = raw(&sim, method, path, "application/json", b"{}").await;
        assert_eq!(got, code, "{method} {path}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["status"], "Failure");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn garbage_requests_never_crash_the_server() {
    let sim = start().await;
    let bodies: [&[u8]; 8] = [
        b"",
        b"null",
        b"[]",
        b"\"str\"",
        b"{\"metadata\": 5}",
        b"\xff\xfe\x00",
        b"{\"apiVersion\": \"v2\", \"kind\": \"Nope\"}",
        &[b'['; 10_000],
    ];
    let paths = [
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/configmaps/x",
        "/apis/pmp.dev/v1alpha1/namespaces/default/platforms/x/status",
        "/apis/apps/v1/namespaces/default/deployments/x/scale",
        "/api/v1/namespaces/%zz/pods?labelSelector=(((&limit=-1",
        "/api/v1/namespaces/default/pods?watch=1&resourceVersion=abc",
    ];
    let types = [
        "application/json",
        "application/yaml",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];
    for path in paths {
        for (i, body) in bodies.iter().enumerate() {
            for method in ["POST", "PUT", "PATCH", "DELETE", "GET"] {
                let ct = types[i % types.len()];
                let full = if method == "PATCH" && ct == "application/apply-patch+yaml" {
                    format!("{path}?fieldManager=fuzz")
                } else {
                    path.to_string()
                };
                let (code, _) = raw_text(&sim, method, &full, ct, body).await;
                assert!((200..600).contains(&code), "{method} {full}: {code}");
            }
        }
    }
    let (code, _) = raw(&sim, "GET", "/api/v1/namespaces", "", b"").await;
    assert_eq!(code, 200, "still serving");
    sim.shutdown().await;
}
