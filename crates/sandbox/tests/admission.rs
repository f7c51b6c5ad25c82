//! Admission of custom resources through the operator's schema checks: schema defaults,
//! pruning, structural and CEL validation, 422s.

mod support;

use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

#[tokio::test]
async fn invalid_platform_gets_422_with_causes() {
    let sim = start().await;
    let api = platforms(&sim, "default");
    let mut bad = platform("bad", "nginx");
    bad.data["spec"]["replicas"] = json!(50);
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error")
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .starts_with("Platform.pmp.dev \"bad\" is invalid: spec.replicas"),
        "{}",
        status.message
    );

    // The raw body carries details.causes like the real server.
    let body = serde_json::to_vec(
        &json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform",
        "metadata": {"name": "bad2"}, "spec": {"replicas": 50}}),
    )
    .unwrap();
    let (code, status) = raw(
        &sim,
        "POST",
        "/apis/pmp.dev/v1alpha1/namespaces/default/platforms",
        &[("content-type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(status["details"]["name"], "bad2");
    assert_eq!(status["details"]["group"], "pmp.dev");
    assert_eq!(status["details"]["kind"], "Platform");
    let causes = status["details"]["causes"].as_array().unwrap();
    let fields: Vec<&str> = causes.iter().filter_map(|c| c["field"].as_str()).collect();
    assert!(fields.contains(&"spec.image"), "{causes:?}");
    assert!(causes.iter().any(|c| c["reason"] == "FieldValueRequired"));

    // A CEL rule.
    let err = api
        .create(&PostParams::default(), &platform("cel", "bad/image"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error")
    };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("image must not come from bad/"),
        "{}",
        status.message
    );

    // Updates are validated too, and nothing was stored for the rejected writes.
    api.create(&PostParams::default(), &platform("ok", "nginx"))
        .await
        .unwrap();
    let err = api
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": -1}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 422));
    assert!(api.get_opt("bad").await.unwrap().is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn defaults_and_pruning() {
    let sim = start().await;
    let api = platforms(&sim, "default");
    let mut obj = platform("d", "nginx");
    obj.data["spec"]["unknownField"] = json!("dropped");
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(
        created.data["spec"]["replicas"], 1,
        "schema default applied"
    );
    assert!(
        created.data["spec"].get("unknownField").is_none(),
        "unknown field pruned"
    );

    // Strict field validation (kubectl's default) rejects instead.
    let body = serde_json::to_vec(
        &json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform",
        "metadata": {"name": "strict"}, "spec": {"image": "x", "nope": 1}}),
    )
    .unwrap();
    let (code, status) = raw(
        &sim,
        "POST",
        "/apis/pmp.dev/v1alpha1/namespaces/default/platforms?fieldValidation=Strict",
        &[("content-type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.nope\""),
        "{status}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn project_crds_are_served() {
    let sim = start_with(platform_sandbox::sim_config()).await;
    let (code, list) = raw(&sim, "GET", "/apis/pmp.dev/v1alpha1", &[], b"").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for expected in [
        "platforms",
        "platforms/status",
        "platformgroups",
        "platformgroups/status",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    // Causes come from the real schema.
    let body =
        br#"{"apiVersion":"pmp.dev/v1alpha1","kind":"Platform","metadata":{"name":"x"},"spec":{"replicas":-5}}"#;
    let (code, status) = raw(
        &sim,
        "POST",
        "/apis/pmp.dev/v1alpha1/namespaces/default/platforms",
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert!(!status["details"]["causes"].as_array().unwrap().is_empty());
    sim.shutdown().await;
}
