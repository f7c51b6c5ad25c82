//! Facts derived from the recorded watch events, ordered by resourceVersion: when each platform
//! was started, stopped, first Ready, when its pods were gone. They replace the simulator's write
//! history, so the same assertions hold on a real API server.
//!
//! - start: the first Deployment version with `spec.replicas` > 0;
//! - stop: a Deployment version whose `spec.replicas` became 0;
//! - first Ready: the first Platform version whose `Ready` condition is True;
//! - pods gone: the DELETED event of the platform's last pod.
//!
//! Only the operator writes a Deployment's `spec.replicas` and a Platform's status in these
//! tests, so no filtering by writer is needed for those; [`managers_changed`] tells writers
//! apart by `managedFields` where a test needs to know who wrote.

use std::collections::BTreeMap;

use serde_json::Value;

use platform_operator::controller::model::FINALIZER;

use super::recorder::{Action, Change, Kind};

const PLATFORM_LABEL: &str = "/metadata/labels/pmp.dev~1platform";

pub struct History {
    changes: Vec<Change>,
}

impl History {
    pub(super) fn new(changes: Vec<Change>) -> History {
        History { changes }
    }

    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The resourceVersion of the last change (0 if none), to take [`History::since`] later.
    pub fn last_rv(&self) -> u64 {
        self.changes.last().map_or(0, |c| c.rv)
    }

    /// The changes after resourceVersion `rv`.
    pub fn since(&self, rv: u64) -> History {
        History {
            changes: self.changes.iter().filter(|c| c.rv > rv).cloned().collect(),
        }
    }

    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.kind == kind)
    }

    /// Each version of each Deployment (deletions excluded) with its `spec.replicas`, in order.
    pub fn deployment_versions(&self) -> Vec<(u64, &str, i64)> {
        self.of(Kind::Deployment)
            .filter(|c| !c.deleted())
            .map(|c| {
                let replicas = c
                    .object
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                (c.rv, c.name.as_str(), replicas)
            })
            .collect()
    }

    /// The first version of each platform's Deployment that asked for pods (its start).
    pub fn starts(&self) -> BTreeMap<String, u64> {
        let mut starts = BTreeMap::new();
        for (rv, name, replicas) in self.deployment_versions() {
            if replicas > 0 {
                starts.entry(name.to_string()).or_insert(rv);
            }
        }
        starts
    }

    /// The versions in which a Deployment's replicas became 0 (created at 0 counts too), in
    /// order.
    pub fn stops(&self) -> Vec<(u64, String)> {
        let mut previous: BTreeMap<&str, i64> = BTreeMap::new();
        let mut stops = Vec::new();
        for (rv, name, replicas) in self.deployment_versions() {
            if replicas == 0 && previous.get(name) != Some(&0) {
                stops.push((rv, name.to_string()));
            }
            previous.insert(name, replicas);
        }
        stops
    }

    /// The version of each Deployment in which its replicas last became 0.
    pub fn stop_of(&self, name: &str) -> Option<u64> {
        self.stops()
            .into_iter()
            .filter(|(_, n)| n == name)
            .map(|(rv, _)| rv)
            .next_back()
    }

    /// Times a Deployment's replicas changed to a positive number (its creation included).
    pub fn scale_ups(&self) -> usize {
        let mut previous: BTreeMap<&str, i64> = BTreeMap::new();
        let mut count = 0;
        for (_, name, replicas) in self.deployment_versions() {
            if replicas > 0 && previous.get(name) != Some(&replicas) {
                count += 1;
            }
            previous.insert(name, replicas);
        }
        count
    }

    /// The first version of each Platform whose Ready condition is True.
    pub fn first_ready(&self) -> BTreeMap<String, u64> {
        let mut ready = BTreeMap::new();
        for change in self.of(Kind::Platform).filter(|c| !c.deleted()) {
            if condition_true(&change.object, "Ready") {
                ready.entry(change.name.clone()).or_insert(change.rv);
            }
        }
        ready
    }

    /// The DELETED event of the platform's last pod: its pods are all gone after this.
    pub fn pods_gone(&self, platform: &str) -> Option<u64> {
        self.of(Kind::Pod)
            .filter(|c| c.deleted() && pod_of(c) == Some(platform))
            .map(|c| c.rv)
            .max()
    }

    /// The first version of the platform's Deployment whose pod template carries `annotation`.
    pub fn template_annotated(&self, name: &str, annotation: &str) -> Option<u64> {
        let pointer = format!(
            "/spec/template/metadata/annotations/{}",
            annotation.replace('~', "~0").replace('/', "~1")
        );
        self.of(Kind::Deployment)
            .filter(|c| !c.deleted() && c.name == name)
            .find(|c| c.object.pointer(&pointer).is_some())
            .map(|c| c.rv)
    }

    /// The first version at which `count` pods of the platform created after version `rv`
    /// (from the template written then or later) exist, are not terminating and are Ready.
    pub fn pods_ready_after(&self, platform: &str, rv: u64, count: usize) -> Option<u64> {
        let mut ready: BTreeMap<&str, bool> = BTreeMap::new();
        let mut created_after: Vec<&str> = Vec::new();
        for change in self.of(Kind::Pod).filter(|c| pod_of(c) == Some(platform)) {
            if change.action == Action::Added && change.rv > rv {
                created_after.push(change.name.as_str());
            }
            if !created_after.contains(&change.name.as_str()) {
                continue;
            }
            let is_ready = !change.deleted()
                && change
                    .object
                    .pointer("/metadata/deletionTimestamp")
                    .is_none()
                && condition_true(&change.object, "Ready");
            ready.insert(change.name.as_str(), is_ready);
            if ready.values().filter(|r| **r).count() >= count {
                return Some(change.rv);
            }
        }
        None
    }

    /// When the ordered-shutdown finalizer left the (deleted) Platform: the first version that
    /// has a deletionTimestamp and not the finalizer, or its DELETED event.
    pub fn finalizer_removed(&self, name: &str) -> Option<u64> {
        self.of(Kind::Platform)
            .filter(|c| c.name == name)
            .find(|c| {
                c.deleted()
                    || (c.object.pointer("/metadata/deletionTimestamp").is_some()
                        && !c
                            .object
                            .pointer("/metadata/finalizers")
                            .and_then(Value::as_array)
                            .is_some_and(|f| f.iter().any(|f| f == FINALIZER)))
            })
            .map(|c| c.rv)
    }

    /// The first version of each platform's Deployment that reports its workload ready: the
    /// deployment controller has seen the latest spec, and every desired replica (at least
    /// one) is updated and ready.
    pub fn first_workload_ready(&self) -> BTreeMap<String, u64> {
        let number = |c: &Change, pointer: &str| c.object.pointer(pointer).and_then(Value::as_i64);
        let mut ready = BTreeMap::new();
        for change in self.of(Kind::Deployment).filter(|c| !c.deleted()) {
            let desired = number(change, "/spec/replicas").unwrap_or(1);
            let seen = number(change, "/status/observedGeneration").unwrap_or(0)
                >= number(change, "/metadata/generation").unwrap_or(0);
            let all = |field: &str| number(change, field).unwrap_or(0) >= desired;
            if desired > 0 && seen && all("/status/readyReplicas") && all("/status/updatedReplicas")
            {
                ready.entry(change.name.clone()).or_insert(change.rv);
            }
        }
        ready
    }

    /// Checks that no platform was started before the workloads of all its dependencies were
    /// ready (their Deployments reporting every replica ready).
    pub fn assert_started_in_order(&self, dependencies: &BTreeMap<String, Vec<String>>) {
        let starts = self.starts();
        let ready = self.first_workload_ready();
        for (name, start) in &starts {
            for dependency in dependencies.get(name).into_iter().flatten() {
                let dependency_ready = ready.get(dependency).copied().unwrap_or(u64::MAX);
                assert!(
                    dependency_ready < *start,
                    "{name} was started (version {start}) before its dependency {dependency} was Ready (version {dependency_ready})"
                );
            }
        }
    }

    /// One line per change, naming the managers whose managedFields entries it changed.
    pub fn describe(&self) -> Vec<String> {
        let mut previous: BTreeMap<(Kind, &str), &Value> = BTreeMap::new();
        self.changes
            .iter()
            .map(|c| {
                let before = previous.insert((c.kind, c.name.as_str()), &c.object);
                let writers = if before.is_some() {
                    "written by"
                } else {
                    "(first version here) managers"
                };
                format!(
                    "{} {:?} {:?} {} {writers} {:?}",
                    c.rv,
                    c.action,
                    c.kind,
                    c.name,
                    managers_changed(before, &c.object)
                )
            })
            .collect()
    }
}

fn pod_of(change: &Change) -> Option<&str> {
    change
        .object
        .pointer(PLATFORM_LABEL)
        .and_then(Value::as_str)
}

/// Whether the object's `status.conditions` has `type_` with status True.
pub fn condition_true(object: &Value, type_: &str) -> bool {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == type_ && c["status"] == "True")
        })
}

/// The managers (with their subresource) whose managedFields entry differs between two versions
/// of an object: who wrote the later one, as far as the API server tracks it.
pub fn managers_changed(before: Option<&Value>, after: &Value) -> Vec<String> {
    let entries = |object: Option<&Value>| -> BTreeMap<String, Value> {
        object
            .and_then(|o| o.pointer("/metadata/managedFields"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| {
                let key = format!(
                    "{}/{}{}",
                    e["manager"].as_str().unwrap_or(""),
                    e["operation"].as_str().unwrap_or(""),
                    e["subresource"]
                        .as_str()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                );
                (key, e.clone())
            })
            .collect()
    };
    let (old, new) = (entries(before), entries(Some(after)));
    new.into_iter()
        .filter(|(key, entry)| old.get(key) != Some(entry))
        .map(|(key, _)| key)
        .collect()
}
