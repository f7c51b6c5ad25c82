//! Effective settings: each field from the Platform if it sets it, else from its group's
//! defaults, else the built-in default documented on the CRD field.

use crate::crd::{
    CpuMemory, DependencyReaction, GroupDefaults, HealthCheckReaction, HealthCheckSettings,
    Platform, Probe, Reactions, ResourceReaction, ResourceSettings, RestartPolicySettings,
    ShutdownSettings,
};

/// Every setting the operator acts on, with a concrete value.
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
    pub restart: RestartBudget,
    pub reactions: EffectiveReactions,
}

/// How often the supervisor may restart a platform, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBudget {
    /// Restarts allowed in the window; one more opens the circuit.
    pub max_attempts: u32,
    pub window_seconds: u32,
    /// Back-off between restarts: `initial`, doubling up to `max`.
    pub backoff_initial_seconds: u32,
    pub backoff_max_seconds: u32,
}

/// What the supervisor does about failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveReactions {
    pub on_health_check_failed: HealthCheckReaction,
    pub on_resource_exceeded: ResourceReaction,
    pub on_dependency_failed: DependencyReaction,
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
        restart: restart_budget(&layer(&spec.restart_policy, &group.restart_policy)),
        reactions: reactions(&layer(&spec.reactions, &group.reactions)),
    }
}

fn restart_budget(layers: &[RestartPolicySettings]) -> RestartBudget {
    let field = |f: fn(&RestartPolicySettings) -> Option<u32>| pick(layers.iter().map(f));
    let backoff = |f: fn(&crate::crd::Backoff) -> Option<u32>| {
        pick(layers.iter().map(|l| l.backoff.as_ref().and_then(f)))
    };
    RestartBudget {
        max_attempts: field(|p| p.max_restart_attempts).unwrap_or(3),
        window_seconds: field(|p| p.window_seconds).unwrap_or(600),
        backoff_initial_seconds: backoff(|b| b.initial_seconds).unwrap_or(10),
        backoff_max_seconds: backoff(|b| b.max_seconds).unwrap_or(300),
    }
}

fn reactions(layers: &[Reactions]) -> EffectiveReactions {
    EffectiveReactions {
        on_health_check_failed: layers
            .iter()
            .find_map(|r| r.on_health_check_failed)
            .unwrap_or_default(),
        on_resource_exceeded: layers
            .iter()
            .find_map(|r| r.on_resource_exceeded)
            .unwrap_or_default(),
        on_dependency_failed: layers
            .iter()
            .find_map(|r| r.on_dependency_failed)
            .unwrap_or_default(),
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
