//! The operator's own writes that the caches do not show yet.
//!
//! A reconcile can run before the watch delivers what the previous reconcile wrote: its own
//! status write may arrive before its Deployment write, for example. Deciding from the cache
//! alone would then start the platform a second time (a second history entry, Event and
//! apply). Each write is remembered with what identifies the cached versions it supersedes,
//! and is used instead of the cache until the cache moves past those:
//! - a Platform: the resourceVersions the cache may still show (compared for equality only,
//!   as resourceVersions are opaque);
//! - a Deployment: its `metadata.generation` (an integer the API server increments on every
//!   spec change), so a cached copy of the same object with a lower generation is older;
//! - a ConfigMap: the hash of the content it was applied over.
//!
//! The watch side clears entries once the cache shows the write, and on deletion and re-list,
//! so the table holds only writes in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::apps::v1::Deployment;

use crate::crd::Platform;
use crate::graph::NodeKey;

#[derive(Default)]
struct Entry {
    /// Versions older than the written one (the cached one and intermediate writes).
    platform: Option<(Vec<Option<String>>, Arc<Platform>)>,
    deployment: Option<Arc<Deployment>>,
    /// (hash of the cached ConfigMap the write replaced, hash written).
    config_hash: Option<(Option<String>, String)>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.platform.is_none() && self.deployment.is_none() && self.config_hash.is_none()
    }
}

/// See the module documentation.
#[derive(Default)]
pub struct OwnWrites {
    entries: Mutex<HashMap<NodeKey, Entry>>,
}

impl OwnWrites {
    fn lock(&self) -> MutexGuard<'_, HashMap<NodeKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Platform as last written while the cache still shows an older version.
    pub fn platform(&self, key: &NodeKey, cached: Arc<Platform>) -> Arc<Platform> {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(key) else {
            return cached;
        };
        if let Some((older, written)) = &entry.platform
            && older.contains(&cached.metadata.resource_version)
        {
            return written.clone();
        }
        entry.platform = None;
        drop_if_empty(&mut entries, key);
        cached
    }

    /// The Deployment as last applied while the cache does not show it yet.
    pub fn deployment(
        &self,
        key: &NodeKey,
        cached: Option<Arc<Deployment>>,
    ) -> Option<Arc<Deployment>> {
        let mut entries = self.lock();
        let Some(written) = entries.get(key).and_then(|e| e.deployment.clone()) else {
            return cached;
        };
        if cached.as_ref().is_none_or(|c| is_older(c, &written)) {
            return Some(written);
        }
        if let Some(entry) = entries.get_mut(key) {
            entry.deployment = None;
        }
        drop_if_empty(&mut entries, key);
        cached
    }

    /// The hash of the ConfigMap as last applied while the cache still shows the one it replaced.
    pub fn config_hash(&self, key: &NodeKey, cached: Option<String>) -> Option<String> {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(key) else {
            return cached;
        };
        if let Some((base, written)) = &entry.config_hash
            && *base == cached
        {
            return Some(written.clone());
        }
        entry.config_hash = None;
        drop_if_empty(&mut entries, key);
        cached
    }

    /// A write made while an earlier one is still in flight supersedes every version that
    /// one did, and that one too: the cache may still show any of them (it lags by seconds
    /// when the API server is busy), and each must keep yielding the newest write.
    pub fn remember_platform(
        &self,
        key: &NodeKey,
        mut older: Vec<Option<String>>,
        written: Platform,
    ) {
        let mut written = written;
        super::trim::platform(&mut written);
        let mut entries = self.lock();
        let entry = entries.entry(key.clone()).or_default();
        if let Some((superseded, previous)) = entry.platform.take() {
            for version in superseded
                .into_iter()
                .chain([previous.metadata.resource_version.clone()])
            {
                if !older.contains(&version) {
                    older.push(version);
                }
            }
        }
        entry.platform = Some((older, Arc::new(written)));
    }

    pub fn remember_deployment(&self, key: &NodeKey, written: Deployment) {
        let mut written = written;
        super::trim::deployment(&mut written);
        self.lock().entry(key.clone()).or_default().deployment = Some(Arc::new(written));
    }

    pub fn remember_config_hash(&self, key: &NodeKey, base: Option<String>, written: String) {
        self.lock().entry(key.clone()).or_default().config_hash = Some((base, written));
    }

    /// The Deployment watch delivered `seen`: a write it includes is no longer in flight.
    pub fn deployment_seen(&self, key: &NodeKey, seen: &DeploymentVersion) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key)
            && entry
                .deployment
                .as_ref()
                .is_some_and(|written| !seen.is_older_than(written))
        {
            entry.deployment = None;
            drop_if_empty(&mut entries, key);
        }
    }

    /// The Deployment watch delivered its deletion.
    pub fn deployment_deleted(&self, key: &NodeKey) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key) {
            entry.deployment = None;
            drop_if_empty(&mut entries, key);
        }
    }

    /// A list of the Deployments is done: the writes of those it does not show are gone
    /// (deleted during a gap in the watch, no Delete event is delivered for them). A write
    /// made after the list began and dropped here is only applied once more.
    pub fn deployments_listed(&self, listed: impl Fn(&NodeKey) -> bool) {
        self.lock().retain(|key, entry| {
            if !listed(key) {
                entry.deployment = None;
            }
            !entry.is_empty()
        });
    }

    /// Forgets everything about a deleted platform.
    pub fn forget(&self, key: &NodeKey) {
        self.lock().remove(key);
    }

    /// Keeps only the platforms `keep` accepts (after a re-list: the ones that still exist).
    pub fn retain(&self, keep: impl Fn(&NodeKey) -> bool) {
        self.lock().retain(|key, _| keep(key));
    }

    /// Platforms with a write in flight.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `cached` is an earlier version of the same object than `written`.
fn is_older(cached: &Deployment, written: &Deployment) -> bool {
    older_than(
        cached.metadata.uid.as_deref(),
        cached.metadata.generation,
        written,
    )
}

/// The object `uid` at `generation` is `written`, from before it (a lower generation).
fn older_than(uid: Option<&str>, generation: Option<i64>, written: &Deployment) -> bool {
    uid == written.metadata.uid.as_deref() && generation < written.metadata.generation
}

/// Which write of a Deployment an object shows: the object and its generation. All a
/// delivered Deployment is compared with a write by, so that a list under way keeps this
/// much of each Deployment rather than a copy.
#[derive(Debug)]
pub struct DeploymentVersion {
    uid: Option<String>,
    generation: Option<i64>,
}

impl DeploymentVersion {
    pub fn of(deployment: &Deployment) -> Self {
        Self {
            uid: deployment.metadata.uid.clone(),
            generation: deployment.metadata.generation,
        }
    }

    fn is_older_than(&self, written: &Deployment) -> bool {
        older_than(self.uid.as_deref(), self.generation, written)
    }
}

fn drop_if_empty(entries: &mut HashMap<NodeKey, Entry>, key: &NodeKey) {
    if entries.get(key).is_some_and(Entry::is_empty) {
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn key() -> NodeKey {
        NodeKey::new("ns", "a")
    }

    fn deployment(uid: &str, generation: i64) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("a".into()),
                uid: Some(uid.into()),
                generation: Some(generation),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_created_deployment_is_seen_before_the_cache_has_it() {
        let own = OwnWrites::default();
        own.remember_deployment(&key(), deployment("u1", 1));
        let seen = own.deployment(&key(), None).expect("the write");
        assert_eq!(seen.metadata.generation, Some(1));
        assert_eq!(own.len(), 1);
    }

    #[test]
    fn an_older_generation_in_the_cache_is_overlaid_and_a_caught_up_one_wins() {
        let own = OwnWrites::default();
        own.remember_deployment(&key(), deployment("u1", 3));
        let older = Arc::new(deployment("u1", 2));
        let seen = own.deployment(&key(), Some(older)).expect("some");
        assert_eq!(seen.metadata.generation, Some(3));
        let current = Arc::new(deployment("u1", 3));
        let seen = own.deployment(&key(), Some(current)).expect("some");
        assert_eq!(seen.metadata.generation, Some(3));
        assert!(own.is_empty(), "a caught-up cache ends the overlay");
    }

    #[test]
    fn a_list_that_no_longer_shows_a_written_deployment_ends_its_overlay() {
        let own = OwnWrites::default();
        let kept = NodeKey::new("ns", "kept");
        own.remember_deployment(&key(), deployment("u1", 1));
        own.remember_deployment(&kept, deployment("u2", 1));
        own.deployments_listed(|listed| *listed == kept);
        assert!(
            own.deployment(&key(), None).is_none(),
            "deleted during the gap"
        );
        assert!(
            own.deployment(&kept, None).is_some(),
            "listed: still in flight"
        );
        assert_eq!(own.len(), 1);
    }

    #[test]
    fn the_watch_clears_a_deployment_write_once_it_delivers_it() {
        let own = OwnWrites::default();
        own.remember_deployment(&key(), deployment("u1", 2));
        own.deployment_seen(&key(), &DeploymentVersion::of(&deployment("u1", 1)));
        assert_eq!(own.len(), 1, "an older version leaves the write in flight");
        own.deployment_seen(&key(), &DeploymentVersion::of(&deployment("u1", 2)));
        assert!(own.is_empty());
    }

    #[test]
    fn a_platform_write_is_used_while_the_cache_shows_an_older_version() {
        let own = OwnWrites::default();
        let mut written = Platform::new("a", Default::default());
        written.metadata.resource_version = Some("7".into());
        own.remember_platform(&key(), vec![Some("5".into())], written);
        let mut cached = Platform::new("a", Default::default());
        cached.metadata.resource_version = Some("5".into());
        let seen = own.platform(&key(), Arc::new(cached.clone()));
        assert_eq!(seen.metadata.resource_version.as_deref(), Some("7"));
        cached.metadata.resource_version = Some("7".into());
        let seen = own.platform(&key(), Arc::new(cached));
        assert_eq!(seen.metadata.resource_version.as_deref(), Some("7"));
        assert!(own.is_empty());
    }

    fn version(rv: &str) -> Platform {
        let mut platform = Platform::new("a", Default::default());
        platform.metadata.resource_version = Some(rv.into());
        platform
    }

    #[test]
    fn writes_in_a_row_all_overlay_a_cache_that_lags_behind_the_first() {
        let own = OwnWrites::default();
        // 5 cached; written 7 over it; then, from the overlaid 7, 9 is written.
        own.remember_platform(&key(), vec![Some("5".into())], version("7"));
        let base = own.platform(&key(), Arc::new(version("5")));
        own.remember_platform(
            &key(),
            vec![base.metadata.resource_version.clone()],
            version("9"),
        );
        for lagging in ["5", "7"] {
            let seen = own.platform(&key(), Arc::new(version(lagging)));
            assert_eq!(
                seen.metadata.resource_version.as_deref(),
                Some("9"),
                "the cache at {lagging} must not undo the newest write"
            );
        }
        let seen = own.platform(&key(), Arc::new(version("9")));
        assert_eq!(seen.metadata.resource_version.as_deref(), Some("9"));
        assert!(own.is_empty(), "the cache caught up");
    }

    #[test]
    fn config_hash_overlay_ends_when_the_cache_moves() {
        let own = OwnWrites::default();
        own.remember_config_hash(&key(), None, "h2".into());
        assert_eq!(own.config_hash(&key(), None).as_deref(), Some("h2"));
        assert_eq!(
            own.config_hash(&key(), Some("h2".into())).as_deref(),
            Some("h2")
        );
        assert!(own.is_empty());
    }

    #[test]
    fn retain_drops_platforms_that_are_gone() {
        let own = OwnWrites::default();
        for name in ["a", "b", "c"] {
            own.remember_deployment(&NodeKey::new("ns", name), deployment(name, 1));
        }
        own.retain(|k| k.name == "b");
        assert_eq!(own.len(), 1);
    }
}
