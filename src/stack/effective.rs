//! Effective settings: each field from the Platform if it sets it, else from its group's
//! defaults, else the built-in default documented on the CRD field.

use crate::crd::{
    CpuMemory, GroupDefaults, HealthCheckSettings, Platform, Probe, ResourceSettings,
    ShutdownSettings,
};

/// Every setting the operator acts on today, with a concrete value. (Restart policy and
/// reactions are resolved here once runtime supervision reads them.)
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveSettings {
    pub probe: Option<Probe>,
    pub health_interval_seconds: u32,
    pub health_timeout_seconds: u32,
    pub failure_threshold: u32,
    pub startup_timeout_seconds: u32,
    pub grace_period_seconds: u32,
    pub shutdown_timeout_seconds: u32,
    /// Requests and limits; limits default to the requests.
    pub resources: ResourceSettings,
}

/// Resolves `platform`'s settings over its group's `defaults` (if it has a group).
pub fn effective_settings(
    platform: &Platform,
    defaults: Option<&GroupDefaults>,
) -> EffectiveSettings {
    let spec = &platform.spec;
    let group = defaults.cloned().unwrap_or_default();

    let health = layer(&spec.health_check, &group.health_check);
    let shutdown = layer(&spec.shutdown, &group.shutdown);

    let health_field =
        |field: fn(&HealthCheckSettings) -> Option<u32>| pick(health.iter().map(field));
    let shutdown_field =
        |field: fn(&ShutdownSettings) -> Option<u32>| pick(shutdown.iter().map(field));

    EffectiveSettings {
        probe: health.iter().find_map(|h| h.probe.clone()),
        health_interval_seconds: health_field(|h| h.interval_seconds).unwrap_or(30),
        health_timeout_seconds: health_field(|h| h.timeout_seconds).unwrap_or(5),
        failure_threshold: health_field(|h| h.failure_threshold).unwrap_or(3),
        startup_timeout_seconds: health_field(|h| h.startup_timeout_seconds).unwrap_or(60),
        grace_period_seconds: shutdown_field(|s| s.grace_period_seconds).unwrap_or(30),
        shutdown_timeout_seconds: shutdown_field(|s| s.timeout_seconds).unwrap_or(180),
        resources: resolve_resources(&layer(&spec.resources, &group.resources)),
    }
}

/// The platform's own section first, then the group's.
fn layer<T: Clone>(own: &Option<T>, group: &Option<T>) -> Vec<T> {
    own.iter().chain(group.iter()).cloned().collect()
}

fn pick(values: impl Iterator<Item = Option<u32>>) -> Option<u32> {
    values.flatten().next()
}

fn resolve_resources(layers: &[ResourceSettings]) -> ResourceSettings {
    let merge = |pick_side: fn(&ResourceSettings) -> Option<&CpuMemory>| {
        let sides: Vec<&CpuMemory> = layers.iter().filter_map(pick_side).collect();
        let cpu = sides.iter().find_map(|s| s.cpu.clone());
        let memory = sides.iter().find_map(|s| s.memory.clone());
        (cpu.is_some() || memory.is_some()).then_some(CpuMemory { cpu, memory })
    };
    let requests = merge(|r| r.requests.as_ref());
    let limits = merge(|r| r.limits.as_ref());
    let limits = match (limits, &requests) {
        (Some(limits), Some(requests)) => Some(CpuMemory {
            cpu: limits.cpu.or_else(|| requests.cpu.clone()),
            memory: limits.memory.or_else(|| requests.memory.clone()),
        }),
        (limits, requests) => limits.or_else(|| requests.clone()),
    };
    ResourceSettings { requests, limits }
}
