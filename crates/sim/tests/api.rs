//! CRUD semantics of the simulated API server, through a real kube Client.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

fn configmap(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

#[tokio::test]
async fn create_get_list_and_already_exists() {
    let sim = start().await;
    let api = platforms(&sim, "default");
    let created = api
        .create(&PostParams::default(), &platform("web", "nginx:1"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    // Defaulted from the schema once admission runs; status is never set on create.
    assert!(created.data.get("status").is_none());
    let got = api.get("web").await.unwrap();
    assert_eq!(got.metadata.resource_version, meta.resource_version);

    let err = api
        .create(&PostParams::default(), &platform("web", "nginx:1"))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "AlreadyExists");
        }
        other => panic!("unexpected {other:?}"),
    }
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        list.metadata.resource_version,
        Some(sim.store().resource_version().to_string())
    );

    let missing = api.get("nope").await.unwrap_err();
    match missing {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
            assert_eq!(status.message, "platforms.pmp.dev \"nope\" not found");
        }
        other => panic!("unexpected {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn generate_name_and_namespace_must_exist() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let mut cm = configmap("", json!({}));
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("cfg-".into());
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");

    let elsewhere: Api<ConfigMap> = Api::namespaced(sim.client(), "missing-ns");
    let err = elsewhere
        .create(&PostParams::default(), &configmap("x", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
    sim.shutdown().await;
}

#[tokio::test]
async fn stale_put_conflicts_and_noop_keeps_resource_version() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let first = api
        .create(&PostParams::default(), &configmap("c", json!({"a": "1"})))
        .await
        .unwrap();
    let rv0 = first.metadata.resource_version.clone().unwrap();
    let writes_before = sim.writes().len();

    // No-op replace: same content, same resourceVersion, no write, no event.
    let same = api
        .replace("c", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version.as_deref(),
        Some(rv0.as_str())
    );
    // No-op patch and no-op apply (apply after a first apply by the same manager).
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    assert_eq!(sim.writes().len(), writes_before);

    let mut changed = first.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = api
        .replace("c", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv0.as_str())
    );

    // `changed` still carries rv0: now stale.
    let err = api
        .replace("c", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let pp = PatchParams::apply("tester");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "w"}});
    let a1 = api.patch("c", &pp, &Patch::Apply(&applied)).await.unwrap();
    let count = sim.writes().len();
    let a2 = api.patch("c", &pp, &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(a1.metadata.resource_version, a2.metadata.resource_version);
    assert_eq!(sim.writes().len(), count, "a repeated apply is a no-op");
    sim.shutdown().await;
}

#[tokio::test]
async fn generation_tracks_spec_only() {
    let sim = start().await;
    let api = platforms(&sim, "default");
    api.create(&PostParams::default(), &platform("g", "img:1"))
        .await
        .unwrap();
    let labelled = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let bumped = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": "img:2"}})),
        )
        .await
        .unwrap();
    assert_eq!(bumped.metadata.generation, Some(2));
    sim.shutdown().await;
}

#[tokio::test]
async fn label_and_field_selectors_on_list() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let pp = PostParams::default();
    api.create(&pp, &configmap("a", json!({"app": "web", "tier": "front"})))
        .await
        .unwrap();
    api.create(&pp, &configmap("b", json!({"app": "api"})))
        .await
        .unwrap();
    api.create(&pp, &configmap("c", json!({"app": "db", "tier": "back"})))
        .await
        .unwrap();
    let names = |sel: &str| {
        let api = api.clone();
        let sel = sel.to_string();
        async move {
            let lp = ListParams::default().labels(&sel);
            api.list(&lp)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.metadata.name.unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=web").await, ["a"]);
    assert_eq!(names("app!=web").await, ["b", "c"]);
    assert_eq!(names("app in (web,db)").await, ["a", "c"]);
    assert_eq!(names("app notin (web,db)").await, ["b"]);
    assert_eq!(names("tier").await, ["a", "c"]);
    assert_eq!(names("!tier").await, ["b"]);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    let other: Api<ConfigMap> = Api::namespaced(sim.client(), "kube-system");
    other
        .create(&pp, &configmap("z", json!({"app": "web"})))
        .await
        .unwrap();
    let everywhere: Api<ConfigMap> = Api::all(sim.client());
    assert_eq!(
        everywhere
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let in_ns = everywhere
        .list(&ListParams::default().fields("metadata.namespace=kube-system"))
        .await
        .unwrap();
    assert_eq!(in_ns.items.len(), 1);

    // Pagination keeps every item exactly once.
    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().unwrap();
    let rest = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.metadata.continue_.is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn delete_returns_object_and_honours_preconditions() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let created = api
        .create(&PostParams::default(), &configmap("d", json!({})))
        .await
        .unwrap();
    let wrong = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("other".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let err = api.delete("d", &wrong).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
    let gone = api.delete("d", &DeleteParams::default()).await.unwrap();
    let obj = gone.left().expect("deleted object");
    assert_eq!(obj.metadata.uid, created.metadata.uid);
    assert!(api.get_opt("d").await.unwrap().is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn namespaces_are_cluster_scoped_and_seeded() {
    let sim = start().await;
    let api: Api<Namespace> = Api::all(sim.client());
    let default = api.get("default").await.unwrap();
    assert_eq!(
        default.status.and_then(|s| s.phase).as_deref(),
        Some("Active")
    );
    assert_eq!(
        default.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_string()])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn write_history_records_actor_and_order() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    api.create(
        &PostParams {
            field_manager: Some("writer-a".into()),
            ..PostParams::default()
        },
        &configmap("h", json!({})),
    )
    .await
    .unwrap();
    api.patch(
        "h",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"n": "1"}})),
    )
    .await
    .unwrap();
    let writes: Vec<_> = sim
        .writes()
        .into_iter()
        .filter(|w| w.resource.plural == "configmaps")
        .collect();
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[0].actor, "writer-a");
    // kube-rs sends no User-Agent and no field manager on a plain merge patch.
    assert_eq!(writes[1].actor, "unknown");
    assert!(
        writes[0].seq < writes[1].seq && writes[0].resource_version < writes[1].resource_version
    );
    assert_eq!(writes[1].object["data"]["n"], "1");
    sim.shutdown().await;
}
