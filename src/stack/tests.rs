use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::crd::{
    CpuMemory, GroupDefaults, HealthCheckSettings, Reactions, ResourceReaction, ResourceSettings,
    RestartPolicySettings,
};
use crate::fixtures::{TEST_NAMESPACE, group, platform};

fn key(name: &str) -> NodeKey {
    NodeKey::new(TEST_NAMESPACE, name)
}

#[test]
fn dependencies_default_to_the_platforms_namespace() {
    let p = platform("b")
        .namespace("prod")
        .depends_on(["a"])
        .depends_on_in("shared", "db")
        .build();
    assert_eq!(
        dependency_keys(&p),
        vec![NodeKey::new("prod", "a"), NodeKey::new("shared", "db")]
    );
}

#[test]
fn membership_follows_selectors_within_the_namespace() {
    let platforms = [
        platform("a").label("stack", "t").build(),
        platform("b").label("stack", "t").build(),
        platform("c").label("stack", "other").build(),
        platform("d")
            .namespace("elsewhere")
            .label("stack", "t")
            .build(),
    ];
    let groups = [group("t").selecting("stack", "t").build()];
    let found = membership(&platforms, &groups);
    assert_eq!(found.members[&key("t")], vec![key("a"), key("b")]);
    assert_eq!(found.group_of.get(&key("a")), Some(&key("t")));
    assert!(found.conflicts.is_empty());
}

#[test]
fn a_platform_in_two_groups_is_a_conflict_of_both() {
    let platforms = [platform("a").label("stack", "t").label("tier", "x").build()];
    let groups = [
        group("g1").selecting("stack", "t").build(),
        group("g2").selecting("tier", "x").build(),
    ];
    let found = membership(&platforms, &groups);
    assert_eq!(found.conflicts[&key("a")], vec![key("g1"), key("g2")]);
    assert!(found.members[&key("g1")].is_empty());
    assert_eq!(
        found.conflicts_of(&key("g1")),
        vec![(key("a"), vec![key("g2")])]
    );
    assert!(found.group_of.is_empty());
}

#[test]
fn group_ordering_edges_join_the_graph() {
    let platforms = [
        platform("a").label("s", "1").build(),
        platform("b").label("s", "1").build(),
    ];
    let groups = [group("g").selecting("s", "1").ordering("a", "b").build()];
    let graph = build_graph(&platforms, &groups);
    assert_eq!(graph.waves(), &[vec![key("a")], vec![key("b")]]);
}

fn quantity(text: &str) -> Quantity {
    Quantity(text.to_string())
}

#[test]
fn effective_settings_layer_platform_over_group_over_builtin() {
    let defaults = GroupDefaults {
        health_check: Some(HealthCheckSettings {
            interval_seconds: Some(60),
            failure_threshold: Some(5),
            ..Default::default()
        }),
        restart_policy: Some(RestartPolicySettings {
            max_restart_attempts: Some(7),
            ..Default::default()
        }),
        reactions: Some(Reactions {
            on_resource_exceeded: Some(ResourceReaction::Restart),
            ..Default::default()
        }),
        resources: Some(ResourceSettings {
            requests: Some(CpuMemory {
                cpu: Some(quantity("1")),
                memory: Some(quantity("1Gi")),
            }),
            limits: None,
        }),
        ..Default::default()
    };
    let member = platform("a")
        .with_spec(|spec| {
            spec.health_check = Some(HealthCheckSettings {
                interval_seconds: Some(10),
                ..Default::default()
            });
            spec.resources = Some(ResourceSettings {
                requests: Some(CpuMemory {
                    cpu: Some(quantity("4")),
                    memory: None,
                }),
                limits: None,
            });
        })
        .build();
    let effective = effective_settings(&member, Some(&defaults));
    assert_eq!(effective.health_interval_seconds, 10, "own value wins");
    assert_eq!(effective.failure_threshold, 5, "group value fills the gap");
    assert_eq!(
        effective.startup_timeout_seconds, 60,
        "built-in default last"
    );
    let requests = effective.resources.requests.clone().expect("requests");
    assert_eq!(requests.cpu, Some(quantity("4")));
    assert_eq!(requests.memory, Some(quantity("1Gi")));
    assert_eq!(
        effective.resources.limits,
        Some(requests),
        "limits default to requests"
    );
}

#[test]
fn effective_settings_without_a_group_are_the_documented_defaults() {
    let effective = effective_settings(&platform("a").build(), None);
    assert_eq!(effective.health_interval_seconds, 30);
    assert_eq!(effective.startup_timeout_seconds, 60);
    assert_eq!(effective.shutdown_timeout_seconds, 180);
    assert_eq!(effective.resources, ResourceSettings::default());
}
