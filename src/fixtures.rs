//! Small builders for Platforms and PlatformGroups, for tests and benchmarks:
//! `platform("b").depends_on(["a"]).build()`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;

use crate::crd::{
    DependencyRef, DesiredState, GroupDefaults, OrderingRule, Platform, PlatformGroup,
    PlatformGroupSpec, PlatformSpec, StartupSettings,
};

/// The namespace fixtures live in unless told otherwise.
pub const TEST_NAMESPACE: &str = "default";

/// Starts a Platform named `name` in [`TEST_NAMESPACE`], running image `busybox`.
pub fn platform(name: &str) -> PlatformBuilder {
    PlatformBuilder(Platform {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(TEST_NAMESPACE.to_string()),
            ..Default::default()
        },
        spec: PlatformSpec {
            image: Some("busybox:1.36".to_string()),
            replicas: 1,
            ..Default::default()
        },
        status: None,
    })
}

/// Builder for [`Platform`].
#[derive(Debug, Clone)]
pub struct PlatformBuilder(Platform);

impl PlatformBuilder {
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.to_string());
        self
    }

    /// Dependencies in the same namespace.
    pub fn depends_on<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.0
            .spec
            .depends_on
            .extend(names.into_iter().map(|name| DependencyRef {
                name: name.to_string(),
                namespace: None,
            }));
        self
    }

    /// A dependency in another namespace.
    pub fn depends_on_in(mut self, namespace: &str, name: &str) -> Self {
        self.0.spec.depends_on.push(DependencyRef {
            name: name.to_string(),
            namespace: Some(namespace.to_string()),
        });
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    pub fn pod_annotation(mut self, key: &str, value: &str) -> Self {
        self.0.spec.pod_annotations.insert(key.into(), value.into());
        self
    }

    pub fn replicas(mut self, replicas: i32) -> Self {
        self.0.spec.replicas = replicas;
        self
    }

    pub fn stopped(mut self) -> Self {
        self.0.spec.desired_state = DesiredState::Stopped;
        self
    }

    pub fn platform_id(mut self, id: &str) -> Self {
        self.0.spec.platform_id = Some(id.to_string());
        self
    }

    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.0.spec.config.insert(key.into(), value.into());
        self
    }

    pub fn with_spec(mut self, change: impl FnOnce(&mut PlatformSpec)) -> Self {
        change(&mut self.0.spec);
        self
    }

    pub fn build(self) -> Platform {
        self.0
    }
}

/// Starts a PlatformGroup named `name` in [`TEST_NAMESPACE`] selecting nothing yet.
pub fn group(name: &str) -> GroupBuilder {
    GroupBuilder(PlatformGroup {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(TEST_NAMESPACE.to_string()),
            ..Default::default()
        },
        spec: PlatformGroupSpec::default(),
        status: None,
    })
}

/// Builder for [`PlatformGroup`].
#[derive(Debug, Clone)]
pub struct GroupBuilder(PlatformGroup);

impl GroupBuilder {
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.to_string());
        self
    }

    /// Selects platforms labelled `key=value`.
    pub fn selecting(mut self, key: &str, value: &str) -> Self {
        self.0.spec.selector = LabelSelector {
            match_labels: Some([(key.to_string(), value.to_string())].into()),
            ..Default::default()
        };
        self
    }

    pub fn ordering(mut self, before: &str, after: &str) -> Self {
        self.0
            .spec
            .startup
            .get_or_insert_with(StartupSettings::default)
            .ordering
            .push(OrderingRule {
                before: before.into(),
                after: after.into(),
            });
        self
    }

    pub fn max_concurrent_starts(mut self, limit: u32) -> Self {
        self.0
            .spec
            .startup
            .get_or_insert_with(StartupSettings::default)
            .max_concurrent_starts = limit;
        self
    }

    pub fn defaults(mut self, defaults: GroupDefaults) -> Self {
        self.0.spec.defaults = Some(defaults);
        self
    }

    pub fn stopped(mut self) -> Self {
        self.0.spec.desired_state = DesiredState::Stopped;
        self
    }

    pub fn build(self) -> PlatformGroup {
        self.0
    }
}
