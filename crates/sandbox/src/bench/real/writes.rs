//! What each Platform write the benchmark's watch delivers changed: the finalizers, the phase
//! (from → to) or, within a phase, the dependency count, the message or something else. Says
//! which writes a run's writes per platform are made of, and which of them a phase change
//! does not explain.

use std::collections::{BTreeMap, HashMap};

use kube::ResourceExt;
use platform_operator::crd::{Phase, Platform, PlatformStatus};

/// What is compared of a Platform from one write to the next.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    finalizers: Vec<String>,
    status: Option<PlatformStatus>,
}

impl Seen {
    fn of(platform: &Platform) -> Self {
        Self {
            finalizers: platform.finalizers().to_vec(),
            status: platform.status.clone(),
        }
    }

    fn phase(&self) -> Option<Phase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    fn dependencies(&self) -> Option<&str> {
        self.status.as_ref().and_then(|s| s.dependencies.as_deref())
    }

    fn message(&self) -> Option<&str> {
        self.status.as_ref().and_then(|s| s.message.as_deref())
    }
}

/// Writes counted by kind, per platform's previous version.
#[derive(Debug, Default)]
pub(super) struct WriteKinds {
    last: HashMap<String, Seen>,
    counts: BTreeMap<String, usize>,
}

impl WriteKinds {
    /// A version of `platform` from the list that precedes the counted writes.
    pub fn listed(&mut self, platform: &Platform) {
        self.last.insert(platform.name_any(), Seen::of(platform));
    }

    /// A write of `platform`, counted by what changed since its previous version.
    pub fn written(&mut self, platform: &Platform) {
        let seen = Seen::of(platform);
        let kind = kind(self.last.get(&platform.name_any()), &seen);
        *self.counts.entry(kind).or_default() += 1;
        self.last.insert(platform.name_any(), seen);
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.counts.clone()
    }

    /// The kinds, most frequent first.
    pub fn describe(&self) -> String {
        let mut kinds: Vec<(&String, &usize)> = self.counts.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let kinds: Vec<String> = kinds
            .into_iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect();
        kinds.join(", ")
    }
}

fn kind(before: Option<&Seen>, after: &Seen) -> String {
    let phase = |p: Option<Phase>| p.map_or("none", Phase::as_str);
    let Some(before) = before else {
        return "first seen in a write".to_string();
    };
    if before.finalizers != after.finalizers {
        return "finalizers".to_string();
    }
    if before.phase() != after.phase() {
        return format!("{} → {}", phase(before.phase()), phase(after.phase()));
    }
    let within = if before.dependencies() != after.dependencies() {
        "dependencies"
    } else if before.message() != after.message() {
        "message"
    } else if before.status != after.status {
        "other status"
    } else {
        "nothing in status"
    };
    format!("{} ({within})", phase(after.phase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform_operator::fixtures::platform;

    fn version(phase: Option<Phase>, dependencies: &str, message: &str) -> Platform {
        let mut p = platform("a").build();
        p.status = phase.map(|phase| PlatformStatus {
            phase: Some(phase),
            dependencies: Some(dependencies.into()),
            message: Some(message.into()),
            ..Default::default()
        });
        p
    }

    #[test]
    fn each_write_is_counted_by_what_it_changed() {
        let mut kinds = WriteKinds::default();
        let created = version(None, "", "");
        kinds.listed(&created);
        let mut finalized = created.clone();
        finalized.metadata.finalizers = Some(vec!["pmp.dev/ordered-shutdown".into()]);
        kinds.written(&finalized);
        let mut waiting = version(
            Some(Phase::WaitingForDependencies),
            "0/2",
            "waiting for a, b",
        );
        waiting.metadata.finalizers = finalized.metadata.finalizers.clone();
        kinds.written(&waiting);
        let mut one_ready = version(Some(Phase::WaitingForDependencies), "1/2", "waiting for b");
        one_ready.metadata.finalizers = finalized.metadata.finalizers.clone();
        kinds.written(&one_ready);
        let mut reworded = version(Some(Phase::WaitingForDependencies), "1/2", "waiting: b");
        reworded.metadata.finalizers = finalized.metadata.finalizers.clone();
        kinds.written(&reworded);
        kinds.written(&reworded);

        let counts = kinds.counts();
        let expected: BTreeMap<String, usize> = [
            ("finalizers", 1),
            ("none → WaitingForDependencies", 1),
            ("WaitingForDependencies (dependencies)", 1),
            ("WaitingForDependencies (message)", 1),
            ("WaitingForDependencies (nothing in status)", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(counts, expected);
    }

    #[test]
    fn a_platform_not_in_the_list_is_counted_as_such() {
        let mut kinds = WriteKinds::default();
        kinds.written(&version(Some(Phase::Running), "0/0", "1/1 replicas ready"));
        assert_eq!(kinds.counts().get("first seen in a write"), Some(&1));
    }
}
