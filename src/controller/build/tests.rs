use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use serde_json::json;

use super::*;
use crate::crd::PodTemplate;
use crate::fixtures::{PlatformBuilder, TEST_NAMESPACE, platform};
use crate::stack::effective_settings;

/// A platform as the cache holds it: with a uid, so that it can own objects.
fn cached(builder: PlatformBuilder) -> Platform {
    let mut p = builder.build();
    p.metadata.uid = Some("0a1b2c3d-0000-4000-8000-000000000001".into());
    p
}

fn deployment_of(p: &Platform) -> Deployment {
    deployment_with(p, 1, None)
}

fn deployment_with(p: &Platform, replicas: i32, restarted_at: Option<&str>) -> Deployment {
    build_deployment(
        p,
        &effective_settings(p, None),
        replicas,
        RestartMarks {
            requested: restarted_at,
            supervisor: None,
        },
    )
    .expect("builds")
}

fn pod_spec(d: &Deployment) -> &PodSpec {
    let spec = d.spec.as_ref().expect("deployment spec");
    spec.template.spec.as_ref().expect("pod spec")
}

fn main_container(d: &Deployment) -> &Container {
    &pod_spec(d).containers[0]
}

fn template_annotations(d: &Deployment) -> BTreeMap<String, String> {
    let spec = d.spec.as_ref().expect("deployment spec");
    let meta = spec.template.metadata.clone().unwrap_or_default();
    meta.annotations.unwrap_or_default()
}

fn template_labels(d: &Deployment) -> BTreeMap<String, String> {
    let spec = d.spec.as_ref().expect("deployment spec");
    let meta = spec.template.metadata.clone().unwrap_or_default();
    meta.labels.unwrap_or_default()
}

fn spec_hash(meta: &ObjectMeta) -> String {
    meta.annotations.as_ref().expect("annotations")[SPEC_HASH_ANNOTATION].clone()
}

fn with_template(containers: Vec<Container>) -> PlatformBuilder {
    platform("a").with_spec(|s| {
        s.image = None;
        let template = PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
        };
        s.template = Some(template.into());
    })
}

#[test]
fn an_image_only_platform_gets_one_container_named_platform() {
    let d = deployment_of(&cached(platform("web")));
    let pod = pod_spec(&d);
    assert_eq!(pod.containers.len(), 1);
    assert_eq!(pod.containers[0].name, "platform");
    assert_eq!(pod.containers[0].image.as_deref(), Some("busybox:1.36"));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    assert_eq!(d.metadata.name.as_deref(), Some("web"));
    assert_eq!(d.metadata.namespace.as_deref(), Some(TEST_NAMESPACE));
}

#[test]
fn the_deployment_selects_its_pods_by_the_platform_label() {
    let d = deployment_of(&cached(platform("web")));
    let selector = d.spec.as_ref().expect("spec").selector.match_labels.clone();
    let expected: BTreeMap<String, String> = [(PLATFORM_LABEL.into(), "web".into())].into();
    assert_eq!(selector, Some(expected));
    assert_eq!(template_labels(&d)[PLATFORM_LABEL], "web");
    let labels = d.metadata.labels.clone().expect("labels");
    assert_eq!(labels[PLATFORM_LABEL], "web");
    assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(labels["app.kubernetes.io/name"], "web");
}

#[test]
fn built_objects_are_controlled_by_their_platform() {
    let p = cached(platform("web").config("k", "v"));
    let config_map = build_config_map(&p).expect("builds").expect("has config");
    for owners in [
        deployment_of(&p).metadata.owner_references,
        config_map.metadata.owner_references,
    ] {
        let owners = owners.expect("owner references");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "Platform");
        assert_eq!(owners[0].api_version, "pmp.dev/v1alpha1");
        assert_eq!(owners[0].name, "web");
        assert_eq!(owners[0].uid, "0a1b2c3d-0000-4000-8000-000000000001");
        assert_eq!(owners[0].controller, Some(true));
    }
}

#[test]
fn replicas_come_from_the_decision_not_the_spec() {
    let p = cached(platform("a").replicas(3));
    for replicas in [0, 1, 5] {
        let d = deployment_with(&p, replicas, None);
        assert_eq!(d.spec.expect("spec").replicas, Some(replicas));
    }
}

#[test]
fn pod_annotations_and_labels_are_copied_to_the_template() {
    let p = cached(
        platform("a")
            .pod_annotation("sim.pmp.dev/ready-after", "2s")
            .with_spec(|s| {
                s.pod_labels.insert("team".into(), "payments".into());
                // The selector label cannot be overridden, or the Deployment would lose its pods.
                s.pod_labels.insert(PLATFORM_LABEL.into(), "other".into());
            }),
    );
    let d = deployment_of(&p);
    assert_eq!(template_annotations(&d)["sim.pmp.dev/ready-after"], "2s");
    assert_eq!(template_labels(&d)["team"], "payments");
    assert_eq!(template_labels(&d)[PLATFORM_LABEL], "a");
}

#[test]
fn config_is_mounted_from_the_config_map_and_hashed_into_the_template() {
    let d = deployment_of(&cached(platform("a").config("app.yaml", "x: 1")));
    let volumes = pod_spec(&d).volumes.clone().expect("volumes");
    assert_eq!(volumes.len(), 1);
    let source = volumes[0].config_map.as_ref().expect("config map volume");
    assert_eq!(source.name, "a-config");
    let mounts = main_container(&d).volume_mounts.clone().expect("mounts");
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].name, volumes[0].name);
    assert_eq!(mounts[0].mount_path, CONFIG_MOUNT_PATH);
    assert_eq!(mounts[0].mount_path, "/etc/platform/config");
    assert_eq!(mounts[0].read_only, Some(true));
    assert!(template_annotations(&d).contains_key(CONFIG_HASH_ANNOTATION));
}

#[test]
fn without_config_there_is_no_volume_mount_or_config_hash() {
    let d = deployment_of(&cached(platform("a")));
    assert_eq!(pod_spec(&d).volumes, None);
    assert_eq!(main_container(&d).volume_mounts, None);
    assert!(!template_annotations(&d).contains_key(CONFIG_HASH_ANNOTATION));
}

#[test]
fn the_config_hash_changes_with_the_config_and_only_then() {
    let hash = |p: PlatformBuilder| {
        template_annotations(&deployment_of(&cached(p)))[CONFIG_HASH_ANNOTATION].clone()
    };
    let base = hash(platform("a").config("k", "v1"));
    assert_eq!(base, hash(platform("a").config("k", "v1")), "same config");
    assert_eq!(base, hash(platform("a").config("k", "v1").replicas(4)));
    assert_ne!(base, hash(platform("a").config("k", "v2")), "value changed");
    assert_ne!(base, hash(platform("a").config("k2", "v1")), "key changed");
    let extra = platform("a").config("k", "v1").config("k2", "v");
    assert_ne!(base, hash(extra), "key added");
}

#[test]
fn a_restart_request_becomes_a_template_annotation() {
    let p = cached(platform("a"));
    let d = deployment_with(&p, 1, Some("2026-11-26T10:00:00Z"));
    assert_eq!(
        template_annotations(&d)[RESTART_ANNOTATION],
        "2026-11-26T10:00:00Z"
    );
    assert_eq!(RESTART_ANNOTATION, "pmp.dev/restartedAt");
    let d = deployment_with(&p, 1, None);
    assert!(!template_annotations(&d).contains_key(RESTART_ANNOTATION));
}

#[test]
fn specs_that_cannot_become_a_workload_are_invalid() {
    let no_containers = cached(with_template(Vec::new()));
    let no_workload = cached(platform("a").with_spec(|s| s.image = None));
    let malformed = cached(platform("a").with_spec(|s| {
        s.template = Some(PodTemplate(json!({"spec": {"containers": [{"name": 5}]}})));
    }));
    for (p, field) in [
        (no_containers, "spec.template.spec.containers"),
        (no_workload, "spec.image"),
        (malformed, "spec.template.spec.containers[0].name"),
    ] {
        let error = build_deployment(
            &p,
            &effective_settings(&p, None),
            1,
            RestartMarks::default(),
        )
        .expect_err("invalid spec");
        assert!(
            matches!(&error, Error::InvalidSpec(m) if m.contains(field)),
            "{error} names {field}"
        );
        assert_eq!(error.category(), "InvalidSpec");
    }
}

#[test]
fn objects_without_uid_or_name_cannot_be_built() {
    let no_uid = platform("a").config("k", "v").build();
    let mut no_name = cached(platform("a").config("k", "v"));
    no_name.metadata.name = None;
    for (p, missing) in [(no_uid, "metadata.uid"), (no_name, "metadata.name")] {
        let settings = effective_settings(&p, None);
        let deployment =
            build_deployment(&p, &settings, 1, RestartMarks::default()).expect_err("no metadata");
        assert!(matches!(deployment, Error::MissingMetadata(m) if m == missing));
        let config_map = build_config_map(&p).expect_err("no metadata");
        assert!(matches!(config_map, Error::MissingMetadata(m) if m == missing));
    }
}

#[test]
fn the_config_map_renders_the_config() {
    assert_eq!(build_config_map(&cached(platform("a"))).expect("ok"), None);
    let p = cached(platform("a").config("app.yaml", "x: 1").config("b", "2"));
    let config_map = build_config_map(&p).expect("ok").expect("has config");
    assert_eq!(config_map.metadata.name.as_deref(), Some("a-config"));
    assert_eq!(config_map.metadata.name, Some(config_map_name("a")));
    assert_eq!(
        config_map.metadata.namespace.as_deref(),
        Some(TEST_NAMESPACE)
    );
    let labels = config_map.metadata.labels.clone().expect("labels");
    assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(labels[PLATFORM_LABEL], "a");
    assert_eq!(config_map.data, Some(p.spec.config.clone()));

    let again = build_config_map(&p).expect("ok").expect("has config");
    assert_eq!(spec_hash(&config_map.metadata), spec_hash(&again.metadata));
    let changed = cached(platform("a").config("app.yaml", "x: 2").config("b", "2"));
    let changed = build_config_map(&changed).expect("ok").expect("has config");
    assert_ne!(
        spec_hash(&config_map.metadata),
        spec_hash(&changed.metadata)
    );
}

#[test]
fn the_spec_hash_is_equal_for_equal_input_and_changes_with_the_built_object() {
    let hash = |p: PlatformBuilder, replicas: i32, restart: Option<&str>| {
        spec_hash(&deployment_with(&cached(p), replicas, restart).metadata)
    };
    let base = hash(platform("a"), 1, None);
    assert_eq!(base, hash(platform("a"), 1, None));
    assert_eq!(base.len(), 16);
    for (what, other) in [
        ("replicas", hash(platform("a"), 2, None)),
        ("restart request", hash(platform("a"), 1, Some("r1"))),
        (
            "image",
            hash(
                platform("a").with_spec(|s| s.image = Some("b".into())),
                1,
                None,
            ),
        ),
        ("config", hash(platform("a").config("k", "v"), 1, None)),
        (
            "pod annotation",
            hash(platform("a").pod_annotation("k", "v"), 1, None),
        ),
    ] {
        assert_ne!(base, other, "{what} changes the hash");
    }
}

#[test]
fn the_digest_is_sha256_of_canonical_json() {
    // Expected values computed outside Rust, e.g.
    // printf '%s' '{"a":1,"b":[true,null]}' | sha256sum | cut -c1-16
    assert_eq!(
        digest_of(&json!({"b": [true, null], "a": 1})).expect("digest"),
        "1cc69c7fa23616ca"
    );
    // printf '%s' '{"a":"x\"y","b":{"c":1.5,"d":-2}}' | sha256sum | cut -c1-16
    assert_eq!(
        digest_of(&json!({"b": {"d": -2, "c": 1.5}, "a": "x\"y"})).expect("digest"),
        "9d7e6fd71ec88c27"
    );
}

/// The spec hash of a fixed platform. This value must only change together with a deliberate
/// change of the built Deployment (or of the digest): a new hash makes the operator re-apply
/// every Deployment, and a changed pod template rolls every workload in every cluster.
#[test]
fn the_spec_hash_of_a_fixed_platform_is_stable() {
    let mut p = platform("golden")
        .namespace("prod")
        .replicas(2)
        .config("app.yaml", "x: 1")
        .pod_annotation("team", "payments")
        .build();
    p.metadata.uid = Some("6f1c2a4e-8d3b-4c5a-9e7f-0123456789ab".into());
    let d = build_deployment(
        &p,
        &effective_settings(&p, None),
        2,
        RestartMarks {
            requested: Some("r1"),
            supervisor: None,
        },
    )
    .expect("builds");
    assert_eq!(spec_hash(&d.metadata), "3deec10774ae375b");
}

mod main_container;
