//! The API behaviour the operator relies on, on a real API server: server-side apply under its
//! field manager (forced, a repeat is a no-op), status subresource apply, the finalizer held
//! until a guarded JSON patch removes it, ownerReference garbage collection, and the
//! Deployment controller bringing up a ReplicaSet and Ready pods (kwok as the kubelet).
//! Objects are built with the operator's own builders. Skips without `PMP_TEST_KUBECONFIG`
//! (see tests/real_support).

mod real_support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use platform_operator::controller::FIELD_MANAGER;
use platform_operator::controller::build::{
    PLATFORM_LABEL, RestartMarks, build_config_map, build_deployment,
};
use platform_operator::crd::{Platform, PlatformStatus};
use platform_operator::fixtures::platform;
use platform_operator::stack::effective_settings;

use real_support::{TEST_MANAGER, apply_body, eventually, status_code};

const FINALIZER: &str = "pmp.dev/ordered-shutdown";

/// Creates `platform` as a user would (server-side apply under the test's manager).
async fn create_platform(client: &Client, platform: &Platform) -> Platform {
    let api: Api<Platform> =
        Api::namespaced(client.clone(), platform.namespace().as_deref().unwrap());
    api.patch(
        &platform.name_any(),
        &PatchParams::apply(TEST_MANAGER),
        &Patch::Apply(apply_body(platform)),
    )
    .await
    .expect("platform applied")
}

fn operator_apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn entry<'a>(
    fields: &'a [ManagedFieldsEntry],
    manager: &str,
    subresource: Option<&str>,
) -> Option<&'a ManagedFieldsEntry> {
    fields.iter().find(|f| {
        f.manager.as_deref() == Some(manager)
            && f.operation.as_deref() == Some("Apply")
            && f.subresource.as_deref() == subresource
    })
}

#[tokio::test]
async fn server_side_apply_under_the_operators_field_manager_is_forced_and_idempotent() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    let ns = env.namespace("ssa").await;
    let owner = create_platform(
        &env.client,
        &platform("ssa")
            .namespace(&ns.name)
            .config("mode", "fast")
            .build(),
    )
    .await;

    // The ConfigMap: nothing else writes it, so the repeat must leave it untouched.
    let config_map = build_config_map(&owner)
        .expect("built")
        .expect("has config");
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &ns.name);
    let first = config_maps
        .patch(
            &config_map.name_any(),
            &operator_apply(),
            &Patch::Apply(&config_map),
        )
        .await
        .expect("ConfigMap applied");
    let fields = first.managed_fields();
    let mine = entry(fields, FIELD_MANAGER, None)
        .unwrap_or_else(|| panic!("managedFields name {FIELD_MANAGER} (Apply): {fields:?}"));
    assert_eq!(mine.api_version.as_deref(), Some("v1"));
    let again = config_maps
        .patch(
            &config_map.name_any(),
            &operator_apply(),
            &Patch::Apply(&config_map),
        )
        .await
        .expect("ConfigMap applied again");
    assert_eq!(
        again.resource_version(),
        first.resource_version(),
        "an identical apply must not write"
    );
    assert_eq!(
        entry(again.managed_fields(), FIELD_MANAGER, None).and_then(|e| e.time.clone()),
        mine.time,
        "an identical apply must not touch the managedFields time"
    );

    // The Deployment: its controller writes the status, so compare once that has settled.
    let settings = effective_settings(&owner, None);
    let deployment =
        build_deployment(&owner, &settings, 0, RestartMarks::default()).expect("built");
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &ns.name);
    let applied = deployments
        .patch(
            &owner.name_any(),
            &operator_apply(),
            &Patch::Apply(&deployment),
        )
        .await
        .expect("Deployment applied");
    assert!(entry(applied.managed_fields(), FIELD_MANAGER, None).is_some());
    let generation = applied.metadata.generation;
    let settled = eventually(
        Duration::from_secs(30),
        "the Deployment controller observing the Deployment",
        || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("ssa").await.ok()?;
                (d.status.as_ref()?.observed_generation == d.metadata.generation).then_some(d)
            }
        },
    )
    .await;
    let mut unchanged = false;
    let mut before = settled.resource_version();
    for _ in 0..3 {
        let repeat = deployments
            .patch("ssa", &operator_apply(), &Patch::Apply(&deployment))
            .await
            .expect("Deployment applied again");
        assert_eq!(repeat.metadata.generation, generation);
        if repeat.resource_version() == before {
            unchanged = true;
            break;
        }
        // The controller wrote the status in between; try again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        before = deployments
            .get("ssa")
            .await
            .expect("Deployment")
            .resource_version();
    }
    assert!(
        unchanged,
        "an identical Deployment apply changed resourceVersion"
    );

    // Another manager changing a field the operator owns conflicts unless forced; the
    // operator's forced apply takes it back.
    let mut user_change = deployment.clone();
    user_change.metadata.owner_references = None;
    user_change.metadata.annotations = None;
    if let Some(spec) = user_change.spec.as_mut() {
        spec.replicas = Some(3);
    }
    let conflict = deployments
        .patch(
            "ssa",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&user_change),
        )
        .await
        .expect_err("a conflicting unforced apply fails");
    assert_eq!(status_code(&conflict), 409, "{conflict}");
    assert!(conflict.to_string().contains(FIELD_MANAGER), "{conflict}");
    deployments
        .patch(
            "ssa",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&user_change),
        )
        .await
        .expect("forced apply by someone else");
    let back = deployments
        .patch("ssa", &operator_apply(), &Patch::Apply(&deployment))
        .await
        .expect("the operator's forced apply");
    assert_eq!(back.spec.and_then(|s| s.replicas), Some(0));
}

#[tokio::test]
async fn status_is_applied_through_the_status_subresource() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    let ns = env.namespace("status").await;
    let created = create_platform(&env.client, &platform("web").namespace(&ns.name).build()).await;
    assert_eq!(created.metadata.generation, Some(1));
    let api: Api<Platform> = Api::namespaced(env.client.clone(), &ns.name);
    let status: PlatformStatus = serde_json::from_value(json!({
        "phase": "Running",
        "observedGeneration": 1,
        "ready": "1/1",
        "readyReplicas": 1,
    }))
    .expect("status");
    let body = json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform", "status": status});
    let written = api
        .patch_status("web", &operator_apply(), &Patch::Apply(&body))
        .await
        .expect("status applied");
    let stored = written.status.clone().expect("status stored");
    assert_eq!(stored.ready.as_deref(), Some("1/1"));
    assert_eq!(
        serde_json::to_value(stored.phase).expect("json"),
        json!("Running")
    );
    assert_eq!(
        written.metadata.generation,
        Some(1),
        "a status write is no spec change"
    );
    let fields = written.managed_fields();
    assert!(
        entry(fields, FIELD_MANAGER, Some("status")).is_some(),
        "managedFields name {FIELD_MANAGER} on the status subresource: {fields:?}"
    );
    // The same status again writes nothing.
    let again = api
        .patch_status("web", &operator_apply(), &Patch::Apply(&body))
        .await
        .expect("status applied again");
    assert_eq!(again.resource_version(), written.resource_version());
    // A status sent to the main resource is ignored, and the user's spec applies keep the
    // operator's status.
    let mut user = apply_body(&platform("web").namespace(&ns.name).replicas(2).build());
    user["status"] = json!({"phase": "Failed"});
    let after_user = api
        .patch(
            "web",
            &PatchParams::apply(TEST_MANAGER),
            &Patch::Apply(&user),
        )
        .await
        .expect("user apply");
    assert_eq!(after_user.metadata.generation, Some(2));
    assert_eq!(after_user.status, written.status);
}

#[tokio::test]
async fn a_finalizer_holds_deletion_until_a_guarded_json_patch_removes_it() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    let ns = env.namespace("finalizer").await;
    create_platform(&env.client, &platform("web").namespace(&ns.name).build()).await;
    let api: Api<Platform> = Api::namespaced(env.client.clone(), &ns.name);
    let json_patch = |operations: serde_json::Value| -> Patch<()> {
        Patch::Json(serde_json::from_value(operations).expect("JSON patch"))
    };
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    // As the operator adds it to a platform without finalizers.
    let added = api
        .patch(
            "web",
            &params,
            &json_patch(
                json!([{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]),
            ),
        )
        .await
        .expect("finalizer added");
    assert_eq!(added.finalizers(), [FINALIZER]);

    let deleted = api
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete accepted");
    let held = deleted
        .left()
        .expect("the object is returned: deletion is pending");
    assert!(held.metadata.deletion_timestamp.is_some());
    let still = api.get("web").await.expect("still there");
    assert!(still.metadata.deletion_timestamp.is_some());
    assert_eq!(still.finalizers(), [FINALIZER]);

    // A stale guard (the operator saw no finalizers) fails and changes nothing.
    let stale = api
        .patch(
            "web",
            &params,
            &json_patch(json!([
                {"op": "test", "path": "/metadata/finalizers", "value": []},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ])),
        )
        .await
        .expect_err("a failed test op rejects the patch");
    assert_eq!(status_code(&stale), 422, "{stale}");
    println!("stale test op: {stale}");
    assert_eq!(
        api.get("web").await.expect("held").finalizers(),
        [FINALIZER]
    );

    // The guarded removal, as the operator sends it.
    api.patch(
        "web",
        &params,
        &json_patch(json!([
            {"op": "test", "path": "/metadata/finalizers", "value": [FINALIZER]},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])),
    )
    .await
    .expect("finalizer removed");
    eventually(Duration::from_secs(10), "the platform gone", || {
        let api = api.clone();
        async move {
            api.get_opt("web")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
    // What the operator sees when it is too late: 404, which it tolerates.
    let gone = api
        .patch(
            "web",
            &params,
            &json_patch(json!([
                {"op": "test", "path": "/metadata/finalizers", "value": [FINALIZER]},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ])),
        )
        .await
        .expect_err("gone");
    assert_eq!(status_code(&gone), 404, "{gone}");
}

/// A platform with its Deployment as the operator builds and applies it.
async fn platform_with_deployment(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> (Platform, Deployment) {
    let owner = create_platform(
        client,
        &platform(name)
            .namespace(namespace)
            .replicas(replicas)
            .pod_annotation("sim.pmp.dev/ready-after", "500ms")
            .build(),
    )
    .await;
    let settings = effective_settings(&owner, None);
    let deployment =
        build_deployment(&owner, &settings, replicas, RestartMarks::default()).expect("built");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let applied = deployments
        .patch(name, &operator_apply(), &Patch::Apply(&deployment))
        .await
        .expect("Deployment applied");
    (owner, applied)
}

#[tokio::test]
async fn the_deployment_controller_brings_up_a_replica_set_and_ready_pods() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    let ns = env.namespace("workload").await;
    let started = Instant::now();
    let (_, applied) = platform_with_deployment(&env.client, &ns.name, "web", 2).await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &ns.name);
    let ready = eventually(Duration::from_secs(60), "2 ready replicas", || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("web").await.ok()?;
            let status = d.status.as_ref()?;
            (status.ready_replicas == Some(2)
                && status.observed_generation == d.metadata.generation)
                .then_some(d)
        }
    })
    .await;
    let took = started.elapsed();
    println!("Deployment with 2 replicas (ready-after 500ms) ready after {took:?}");
    assert!(
        took >= Duration::from_millis(500),
        "pods Ready before sim.pmp.dev/ready-after"
    );
    assert_eq!(ready.status.as_ref().and_then(|s| s.replicas), Some(2));

    let replica_sets: Api<ReplicaSet> = Api::namespaced(env.client.clone(), &ns.name);
    let sets = replica_sets
        .list(&ListParams::default().labels(&format!("{PLATFORM_LABEL}=web")))
        .await
        .expect("ReplicaSets");
    assert_eq!(sets.items.len(), 1, "one ReplicaSet");
    let set = &sets.items[0];
    let set_owner = set.owner_references().first().cloned().expect("owned");
    assert_eq!(
        (set_owner.kind.as_str(), set_owner.uid.as_str()),
        ("Deployment", applied.uid().unwrap_or_default().as_str())
    );
    assert_eq!(set_owner.controller, Some(true));

    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns.name);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{PLATFORM_LABEL}=web")))
        .await
        .expect("pods");
    assert_eq!(listed.items.len(), 2);
    for pod in &listed.items {
        let owner = pod.owner_references().first().cloned().expect("owned");
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ReplicaSet", set.uid().unwrap_or_default().as_str())
        );
        assert_eq!(
            pod.annotations()
                .get("sim.pmp.dev/ready-after")
                .map(String::as_str),
            Some("500ms")
        );
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("kwok-node-0"), "scheduled");
        let conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            "{conditions:?}"
        );
    }
}

#[tokio::test]
async fn owned_objects_are_garbage_collected_after_their_platform() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    let ns = env.namespace("gc").await;
    let (owner, applied) = platform_with_deployment(&env.client, &ns.name, "web", 1).await;
    let reference = applied.owner_references().first().cloned().expect("owned");
    assert_eq!(reference.kind, "Platform");
    assert_eq!(Some(reference.uid.clone()), owner.uid());
    assert_eq!(reference.controller, Some(true));
    // build_deployment's reference (kube's controller_owner_ref) leaves blockOwnerDeletion
    // unset; the reference the GC is shown with here has it, as a foreground deletion needs.
    if reference.block_owner_deletion != Some(true) {
        println!(
            "note: the operator's ownerReference has blockOwnerDeletion {:?}",
            reference.block_owner_deletion
        );
        let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &ns.name);
        let mut blocking = build_deployment(
            &owner,
            &effective_settings(&owner, None),
            1,
            RestartMarks::default(),
        )
        .expect("built");
        blocking.metadata.owner_references = Some(vec![OwnerReference {
            block_owner_deletion: Some(true),
            ..reference
        }]);
        let applied = deployments
            .patch("web", &operator_apply(), &Patch::Apply(&blocking))
            .await
            .expect("Deployment applied");
        assert_eq!(
            applied.owner_references()[0].block_owner_deletion,
            Some(true)
        );
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &ns.name);
    let owned_config = platform("web").namespace(&ns.name).config("k", "v").build();
    let mut owned_config_with_uid = owned_config.clone();
    owned_config_with_uid.metadata.uid = owner.uid();
    let config_map = build_config_map(&owned_config_with_uid)
        .expect("built")
        .expect("config");
    config_maps
        .create(&PostParams::default(), &config_map)
        .await
        .expect("ConfigMap");

    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns.name);
    eventually(Duration::from_secs(60), "the pod", || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default()).await.ok()?;
            (!list.items.is_empty()).then_some(())
        }
    })
    .await;

    let platforms: Api<Platform> = Api::namespaced(env.client.clone(), &ns.name);
    let deleted_at = Instant::now();
    platforms
        .delete("web", &DeleteParams::default())
        .await
        .expect("platform deleted");
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &ns.name);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(env.client.clone(), &ns.name);
    eventually(
        Duration::from_secs(60),
        "the Deployment, its ReplicaSet and pods and the ConfigMap collected",
        || {
            let (deployments, replica_sets, pods, config_maps) = (
                deployments.clone(),
                replica_sets.clone(),
                pods.clone(),
                config_maps.clone(),
            );
            async move {
                let lp = ListParams::default();
                let left = deployments.list(&lp).await.ok()?.items.len()
                    + replica_sets.list(&lp).await.ok()?.items.len()
                    + pods.list(&lp).await.ok()?.items.len()
                    + config_maps
                        .list(&ListParams::default().labels(PLATFORM_LABEL))
                        .await
                        .ok()?
                        .items
                        .len();
                (left == 0).then_some(())
            }
        },
    )
    .await;
    println!(
        "owned objects collected {:?} after the platform's deletion",
        deleted_at.elapsed()
    );
}

#[tokio::test]
async fn a_quantity_that_no_deployment_could_carry_is_refused_at_admission() {
    let Some(env) = real_support::env().await else {
        return;
    };
    env.install_crds().await;
    let ns = env.namespace("quantity").await;
    // Without the CRD's quantity pattern the Platform was admitted and then every Deployment
    // the operator built from it failed to convert (500 "quantities must match ..."), forever.
    let api: Api<Platform> = Api::namespaced(env.client.clone(), &ns.name);
    let mut body = serde_json::to_value(
        platform("web")
            .namespace(&ns.name)
            .with_spec(|spec| {
                spec.resources = Some(
                    serde_json::from_value(json!({"requests": {"cpu": "four"}}))
                        .expect("requirements"),
                );
            })
            .build(),
    )
    .expect("serializable");
    body["apiVersion"] = "pmp.dev/v1alpha1".into();
    body["kind"] = "Platform".into();
    let refused = api
        .patch(
            "web",
            &PatchParams::apply("real-test").force(),
            &Patch::Apply(&body),
        )
        .await
        .expect_err("the quantity is refused");
    assert_eq!(status_code(&refused), 422, "{refused}");
    assert!(
        refused.to_string().contains("spec.resources.requests.cpu"),
        "{refused}"
    );
}
