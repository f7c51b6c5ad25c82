//! A pod's script: how its simulated containers behave, read from `sim.pmp.dev/*` annotations
//! (copied from the Deployment's pod template). See the module docs of [`super`] for the reference.

use std::collections::BTreeMap;
use std::time::Duration;

use super::duration::parse_duration;
use super::quantity::{Usage, parse_usage};

/// The annotation prefix of the simulator's scripting annotations.
pub const PREFIX: &str = "sim.pmp.dev/";
pub const READY_AFTER: &str = "sim.pmp.dev/ready-after";
pub const NEVER_READY: &str = "sim.pmp.dev/never-ready";
pub const START_AFTER: &str = "sim.pmp.dev/start-after";
pub const FAIL_START: &str = "sim.pmp.dev/fail-start";
pub const CRASH_AFTER: &str = "sim.pmp.dev/crash-after";
pub const OOM_AFTER: &str = "sim.pmp.dev/oom-after";
pub const UNREADY_AFTER: &str = "sim.pmp.dev/unready-after";
pub const RECOVER_AFTER: &str = "sim.pmp.dev/recover-after";
pub const STOP_AFTER: &str = "sim.pmp.dev/stop-after";
pub const CPU_USAGE: &str = "sim.pmp.dev/cpu-usage";
pub const MEMORY_USAGE: &str = "sim.pmp.dev/memory-usage";
pub const USAGE_RAMP: &str = "sim.pmp.dev/usage-ramp";

/// Default time from container start until Ready.
pub const DEFAULT_READY_AFTER: Duration = Duration::from_secs(1);
/// Default time a container takes to stop when its pod is deleted.
pub const DEFAULT_STOP_AFTER: Duration = Duration::from_secs(1);
/// Default readiness probe period when the container declares no readiness probe.
pub const DEFAULT_PROBE_PERIOD: Duration = Duration::from_secs(10);
/// Default duration of a usage ramp.
pub const DEFAULT_USAGE_RAMP: Duration = Duration::from_secs(60);
/// The waiting reason used by `sim.pmp.dev/fail-start: "true"`.
pub const DEFAULT_FAIL_START_REASON: &str = "CreateContainerConfigError";

/// How a pod's containers behave over time. Every container of the pod follows the same script.
#[derive(Debug, Clone, PartialEq)]
pub struct PodScript {
    /// Time from admission until the container starts (state waiting `ContainerCreating` before).
    pub start_after: Duration,
    /// Time from each container start until Ready.
    pub ready_after: Duration,
    /// The container never becomes Ready.
    pub never_ready: bool,
    /// The container cannot be started: it waits with this reason (until `recover_after`).
    pub fail_start: Option<String>,
    /// The container exits with code 1 this long after each start.
    pub crash_after: Option<Duration>,
    /// The container is OOM-killed (exit code 137) this long after each start.
    pub oom_after: Option<Duration>,
    /// The readiness probe starts failing this long after the pod first became Ready.
    pub unready_after: Option<Duration>,
    /// Time after the first failure (start failure, crash, OOM kill or probe failure) until the
    /// pod behaves well again.
    pub recover_after: Option<Duration>,
    /// Time the container takes to stop once the pod is deleted (bounded by the grace period).
    pub stop_after: Duration,
    pub cpu: Option<Usage>,
    pub memory: Option<Usage>,
    pub usage_ramp: Duration,
    /// Readiness probe period (the first container's `readinessProbe.periodSeconds`, or 10s).
    pub probe_period: Duration,
}

impl Default for PodScript {
    fn default() -> Self {
        Self {
            start_after: Duration::ZERO,
            ready_after: DEFAULT_READY_AFTER,
            never_ready: false,
            fail_start: None,
            crash_after: None,
            oom_after: None,
            unready_after: None,
            recover_after: None,
            stop_after: DEFAULT_STOP_AFTER,
            cpu: None,
            memory: None,
            usage_ramp: DEFAULT_USAGE_RAMP,
            probe_period: DEFAULT_PROBE_PERIOD,
        }
    }
}

/// What kind of failure ends a container run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Crash,
    OomKilled,
}

impl PodScript {
    /// The failure that ends each run (the earlier one when both are scripted).
    pub fn failure(&self) -> Option<(Duration, FailureKind)> {
        match (self.crash_after, self.oom_after) {
            (Some(crash), Some(oom)) if oom <= crash => Some((oom, FailureKind::OomKilled)),
            (Some(crash), _) => Some((crash, FailureKind::Crash)),
            (None, Some(oom)) => Some((oom, FailureKind::OomKilled)),
            (None, None) => None,
        }
    }
}

/// Reads a pod's script from its annotations. Invalid values fall back to the default and are
/// returned as warnings (one line each, for a Warning event); unknown `sim.pmp.dev/` keys too.
pub fn parse_script(
    annotations: &BTreeMap<String, String>,
    probe_period_seconds: Option<i32>,
) -> (PodScript, Vec<String>) {
    let mut script = PodScript::default();
    let mut warnings = Vec::new();
    if let Some(period) = probe_period_seconds.filter(|p| *p > 0) {
        script.probe_period = Duration::from_secs(u64::try_from(period).unwrap_or(10));
    }
    let duration = |key: &str, warnings: &mut Vec<String>| -> Option<Duration> {
        let value = annotations.get(key)?;
        match parse_duration(value) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                warnings.push(format!(
                    "annotation {key}: invalid duration {value:?}: {error}; using the default"
                ));
                None
            }
        }
    };
    if let Some(value) = duration(START_AFTER, &mut warnings) {
        script.start_after = value;
    }
    if let Some(value) = duration(READY_AFTER, &mut warnings) {
        script.ready_after = value;
    }
    if let Some(value) = duration(STOP_AFTER, &mut warnings) {
        script.stop_after = value;
    }
    if let Some(value) = duration(USAGE_RAMP, &mut warnings) {
        script.usage_ramp = value;
    }
    script.crash_after = duration(CRASH_AFTER, &mut warnings);
    script.oom_after = duration(OOM_AFTER, &mut warnings);
    script.unready_after = duration(UNREADY_AFTER, &mut warnings);
    script.recover_after = duration(RECOVER_AFTER, &mut warnings);

    if let Some(value) = annotations.get(NEVER_READY) {
        match parse_bool(value) {
            Some(flag) => script.never_ready = flag,
            None => warnings.push(format!(
                "annotation {NEVER_READY}: invalid value {value:?}: expected \"true\" or \"false\"; using the default"
            )),
        }
    }
    if let Some(value) = annotations.get(FAIL_START) {
        let value = value.trim();
        script.fail_start = match parse_bool(value) {
            Some(true) => Some(DEFAULT_FAIL_START_REASON.to_owned()),
            Some(false) => None,
            None if is_reason(value) => Some(value.to_owned()),
            None => {
                warnings.push(format!(
                    "annotation {FAIL_START}: invalid value {value:?}: expected \"true\" or a reason such as ImagePullBackOff; using the default"
                ));
                None
            }
        };
    }
    for (key, slot) in [
        (CPU_USAGE, &mut script.cpu),
        (MEMORY_USAGE, &mut script.memory),
    ] {
        if let Some(value) = annotations.get(key) {
            match parse_usage(value) {
                Ok(usage) => *slot = Some(usage),
                Err(error) => warnings.push(format!("annotation {key}: {error}; not reported")),
            }
        }
    }
    const KNOWN: [&str; 12] = [
        READY_AFTER,
        NEVER_READY,
        START_AFTER,
        FAIL_START,
        CRASH_AFTER,
        OOM_AFTER,
        UNREADY_AFTER,
        RECOVER_AFTER,
        STOP_AFTER,
        CPU_USAGE,
        MEMORY_USAGE,
        USAGE_RAMP,
    ];
    for key in annotations.keys() {
        if key.starts_with(PREFIX) && !KNOWN.contains(&key.as_str()) {
            warnings.push(format!(
                "annotation {key}: unknown simulator annotation; ignored"
            ));
        }
    }
    (script, warnings)
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "true" | "True" | "TRUE" | "yes" | "1" => Some(true),
        "false" | "False" | "FALSE" | "no" | "0" | "" => Some(false),
        _ => None,
    }
}

/// A Kubernetes-style reason: CamelCase letters and digits.
fn is_reason(value: &str) -> bool {
    value.starts_with(|c: char| c.is_ascii_uppercase())
        && value.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn no_annotations_gives_the_defaults() {
        let (script, warnings) = parse_script(&BTreeMap::new(), None);
        assert_eq!(script, PodScript::default());
        assert_eq!(script.ready_after, Duration::from_secs(1));
        assert!(warnings.is_empty());
    }

    #[test]
    fn reads_every_annotation() {
        let (script, warnings) = parse_script(
            &annotations(&[
                (READY_AFTER, "5s"),
                (CRASH_AFTER, "1m30s"),
                (OOM_AFTER, "2m"),
                (UNREADY_AFTER, "500ms"),
                (RECOVER_AFTER, "1h"),
                (STOP_AFTER, "3s"),
                (START_AFTER, "2s"),
                (NEVER_READY, "true"),
                (FAIL_START, "ImagePullBackOff"),
                (CPU_USAGE, "100m..2"),
                (MEMORY_USAGE, "256Mi"),
                (USAGE_RAMP, "30s"),
            ]),
            Some(3),
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(script.ready_after, Duration::from_secs(5));
        assert_eq!(script.crash_after, Some(Duration::from_secs(90)));
        assert_eq!(script.oom_after, Some(Duration::from_secs(120)));
        assert_eq!(script.unready_after, Some(Duration::from_millis(500)));
        assert_eq!(script.recover_after, Some(Duration::from_secs(3600)));
        assert_eq!(script.stop_after, Duration::from_secs(3));
        assert_eq!(script.start_after, Duration::from_secs(2));
        assert!(script.never_ready);
        assert_eq!(script.fail_start.as_deref(), Some("ImagePullBackOff"));
        assert!(matches!(script.cpu, Some(Usage::Ramp { .. })));
        assert_eq!(script.memory, Some(Usage::Constant("256Mi".into())));
        assert_eq!(script.usage_ramp, Duration::from_secs(30));
        assert_eq!(script.probe_period, Duration::from_secs(3));
        assert_eq!(
            script.failure(),
            Some((Duration::from_secs(90), FailureKind::Crash))
        );
    }

    #[test]
    fn bad_values_fall_back_to_defaults_with_a_warning() {
        let (script, warnings) = parse_script(
            &annotations(&[
                (READY_AFTER, "soon"),
                (CRASH_AFTER, "10"),
                (NEVER_READY, "maybe"),
                (FAIL_START, "not a reason"),
                (CPU_USAGE, "lots"),
                ("sim.pmp.dev/crash-afterr", "1s"),
            ]),
            None,
        );
        assert_eq!(script.ready_after, DEFAULT_READY_AFTER);
        assert_eq!(script.crash_after, None);
        assert!(!script.never_ready);
        assert_eq!(script.fail_start, None);
        assert_eq!(script.cpu, None);
        assert_eq!(warnings.len(), 6, "{warnings:?}");
        assert!(warnings[0].contains(READY_AFTER) || warnings.iter().any(|w| w.contains("soon")));
        assert!(warnings.iter().any(|w| w.contains("crash-afterr")));
    }

    #[test]
    fn fail_start_true_uses_the_default_reason_and_oom_wins_when_earlier() {
        let (script, _) = parse_script(
            &annotations(&[
                (FAIL_START, "true"),
                (CRASH_AFTER, "10s"),
                (OOM_AFTER, "5s"),
            ]),
            None,
        );
        assert_eq!(
            script.fail_start.as_deref(),
            Some(DEFAULT_FAIL_START_REASON)
        );
        assert_eq!(
            script.failure(),
            Some((Duration::from_secs(5), FailureKind::OomKilled))
        );
    }
}
