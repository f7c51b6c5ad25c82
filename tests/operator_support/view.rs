//! The current state of a test's namespace as the recorder's watches last showed it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event;
use serde::de::DeserializeOwned;
use serde_json::Value;

use platform_operator::crd::{Platform, PlatformGroup};

use super::recorder::Kind;

pub struct View {
    objects: BTreeMap<(Kind, String), Value>,
}

impl View {
    pub(super) fn new(objects: BTreeMap<(Kind, String), Value>) -> View {
        View { objects }
    }

    fn typed<K: DeserializeOwned>(kind: Kind, name: &str, value: &Value) -> K {
        serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{kind:?} {name} does not parse: {e}"))
    }

    /// Every object of `kind`, by name.
    pub fn all<K: DeserializeOwned>(&self, kind: Kind) -> BTreeMap<String, K> {
        self.objects
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, name), value)| (name.clone(), Self::typed(kind, name, value)))
            .collect()
    }

    pub fn get<K: DeserializeOwned>(&self, kind: Kind, name: &str) -> Option<K> {
        self.objects
            .get(&(kind, name.to_string()))
            .map(|value| Self::typed(kind, name, value))
    }

    pub fn platforms(&self) -> BTreeMap<String, Platform> {
        self.all(Kind::Platform)
    }

    pub fn group(&self, name: &str) -> Option<PlatformGroup> {
        self.get(Kind::PlatformGroup, name)
    }

    pub fn deployment(&self, name: &str) -> Option<Deployment> {
        self.get(Kind::Deployment, name)
    }

    pub fn config_map(&self, name: &str) -> Option<ConfigMap> {
        self.get(Kind::ConfigMap, name)
    }

    /// The platform's pods that are not terminating, by name.
    pub fn pod_names(&self, platform: &str) -> Vec<String> {
        self.all::<Pod>(Kind::Pod)
            .into_iter()
            .filter(|(_, pod)| {
                pod.metadata.deletion_timestamp.is_none()
                    && pod
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("pmp.dev/platform"))
                        .map(String::as_str)
                        == Some(platform)
            })
            .map(|(name, _)| name)
            .collect()
    }

    /// The platform's pods that are not terminating and are Ready, by name.
    pub fn ready_pod_names(&self, platform: &str) -> Vec<String> {
        let pods = self.all::<Pod>(Kind::Pod);
        self.pod_names(platform)
            .into_iter()
            .filter(|name| {
                pods[name]
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .collect()
    }

    pub fn events(&self) -> Vec<Event> {
        self.all::<Event>(Kind::Event).into_values().collect()
    }
}
