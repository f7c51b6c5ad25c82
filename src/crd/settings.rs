//! Operational settings a Platform declares and a PlatformGroup can provide as defaults: health
//! check, restart policy, resources and reactions.
//!
//! Every field is optional on purpose: a member inherits each field it does not set from its
//! group's `spec.defaults`, and the built-in default applies last. The documented defaults are
//! therefore resolved by the operator, not written by the API server, so that "unset" stays
//! distinguishable from "set to the default value".

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CPU and memory for each pod of the platform. The seed configuration's `cpu_cores: 4` becomes
/// `cpu: "4"` and `memory_mb: 8192` becomes `memory: "8192Mi"`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSettings {
    /// What the scheduler reserves for each pod (`cpu` in cores or millicores, `memory` in bytes
    /// with a unit such as `Mi` or `Gi`). The seed's `required_resources` map here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<CpuMemory>,
    /// The most each pod may use; a container over its memory limit is OOM-killed by Kubernetes.
    /// When unset, the limits equal the requests (the seed treated its values as hard limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CpuMemory>,
}

/// A CPU and a memory amount, as Kubernetes quantities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CpuMemory {
    /// CPU in cores (`"4"`, `"0.5"`) or millicores (`"500m"`). Seed: `cpu_cores`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_schema")]
    pub cpu: Option<Quantity>,
    /// Memory with a binary unit (`"8192Mi"`, `"16Gi"`). Seed: `memory_mb: 8192` is `"8192Mi"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_schema")]
    pub memory: Option<Quantity>,
}

/// The syntax of a Kubernetes `resource.Quantity` in its string form.
const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// An optional quantity: an integer, or a string of quantity syntax. Without the pattern,
/// `cpu: four` would be stored, and every Deployment built from it refused. The API server
/// applies a `pattern` to strings only, so `cpu: 4` stays valid. (No `anyOf` of integer and
/// string as `controller-gen` writes: kube's schema rewriter would strip the types out of it.)
fn quantity_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "nullable": true,
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": true,
    })
}

/// How the operator decides a platform is healthy. It becomes the pods' readiness probe (and a
/// startup probe bounded by `startupTimeoutSeconds`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.timeoutSeconds) || !has(self.intervalSeconds) || self.timeoutSeconds <= self.intervalSeconds")
        .message("timeoutSeconds must not exceed intervalSeconds")
        .field_path(".timeoutSeconds")
)]
pub struct HealthCheckSettings {
    /// What to probe. Without a probe, a pod is healthy once its containers run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    /// Seconds between two checks. Default 30 (seed: `health_check_interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: Option<u32>,
    /// Seconds after which one check counts as failed. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<u32>,
    /// Consecutive failed checks before the platform counts as unhealthy. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: Option<u32>,
    /// Seconds a new pod may take to become ready before the start counts as failed. Default 60
    /// (seed: `startup_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub startup_timeout_seconds: Option<u32>,
}

/// Exactly one way of probing a platform's pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    cel,
    validation = Rule::new("(has(self.http) ? 1 : 0) + (has(self.tcp) ? 1 : 0) + (has(self.exec) ? 1 : 0) == 1")
        .message("exactly one of http, tcp or exec must be set")
)]
pub struct Probe {
    /// An HTTP GET that must answer 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// A TCP connection that must open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    /// A command run in the container that must exit 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecProbe>,
}

/// An HTTP health endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// Request path, starting with `/`, e.g. `/healthz`.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("path must start with '/'"))]
    pub path: String,
    /// Container port to call.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

/// A TCP health check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpProbe {
    /// Container port that must accept connections.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

/// A command health check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecProbe {
    /// The command and its arguments (no shell unless you call one).
    #[schemars(length(min = 1, max = 32))]
    pub command: Vec<String>,
}

/// How often a failing platform is restarted before its circuit opens.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartPolicySettings {
    /// Restarts allowed within `windowSeconds`; one more opens the circuit (phase Failed).
    /// Default 3 (seed: `max_restart_attempts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_restart_attempts: Option<u32>,
    /// The sliding window, in seconds, in which restarts are counted. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub window_seconds: Option<u32>,
    /// Delay between consecutive restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// Exponential back-off between restarts: the delay doubles from `initialSeconds` up to
/// `maxSeconds`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.initialSeconds) || !has(self.maxSeconds) || self.initialSeconds <= self.maxSeconds")
        .message("initialSeconds must not exceed maxSeconds")
        .field_path(".initialSeconds")
)]
pub struct Backoff {
    /// First delay. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub initial_seconds: Option<u32>,
    /// Largest delay. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub max_seconds: Option<u32>,
}

/// How a platform stops.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownSettings {
    /// Seconds each pod gets between SIGTERM and SIGKILL. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub grace_period_seconds: Option<u32>,
    /// Seconds an ordered stop (dependents first) may take before the operator proceeds anyway
    /// and records a Warning event. Default 180 (seed: `shutdown_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<u32>,
}

/// What the operator does when something goes wrong with this platform.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reactions {
    /// When the health check fails past its threshold. Default `Restart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_health_check_failed: Option<HealthCheckReaction>,
    /// When a pod is OOM-killed or uses more than its limits allow. Default `Stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_resource_exceeded: Option<ResourceReaction>,
    /// When this platform fails, what happens to the platforms that depend on it.
    /// Default `StopDependents`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_dependency_failed: Option<DependencyReaction>,
}

/// Reaction to a failed health check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HealthCheckReaction {
    /// Restart the platform's pods (with back-off).
    #[default]
    Restart,
    /// Record it and do nothing.
    Ignore,
}

/// Reaction to exceeded resources.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ResourceReaction {
    /// Stop the platform (and, first, its dependents).
    #[default]
    Stop,
    /// Restart the platform's pods.
    Restart,
    /// Record it and do nothing.
    Ignore,
}

/// Reaction of the dependents when this platform fails.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DependencyReaction {
    /// Stop every platform that depends on this one, in reverse order.
    #[default]
    StopDependents,
    /// Leave the dependents running.
    Ignore,
}
