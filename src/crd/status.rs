//! What the operator reports about a Platform.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How many control actions `status.history` keeps (oldest dropped first).
pub const HISTORY_LIMIT: usize = 20;

/// Condition types a Platform reports.
pub mod condition {
    /// True when the platform runs with all replicas ready (kstatus-compatible).
    pub const READY: &str = "Ready";
    /// True when every dependency is Ready.
    pub const DEPENDENCIES_READY: &str = "DependenciesReady";
    /// True while the platform is starting, stopping or rolling its pods.
    pub const PROGRESSING: &str = "Progressing";
    /// True when the platform runs with fewer ready replicas than desired.
    pub const DEGRADED: &str = "Degraded";
    /// True when the operator cannot make progress without a change (phase `Failed` or
    /// `Blocked`): what kstatus, and so Flux, reads as Failed rather than still in progress.
    pub const STALLED: &str = "Stalled";
}

/// Observed state of a Platform.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformStatus {
    /// Where the platform is in its life cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Standard conditions: `Ready`, `DependenciesReady`, `Progressing`, `Degraded`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of the platform that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Ready pods over desired pods, e.g. `1/1` (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Ready dependencies over all dependencies, e.g. `2/3` (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<String>,
    /// Names of the dependencies that are not Ready (what this platform waits for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
    /// Restarts performed by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// When the operator last restarted the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart_time: Option<Time>,
    /// The restart request (`pmp.dev/restartedAt` annotation value) last carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_restart: Option<String>,
    /// When the platform last became Running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the platform last became Stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Time>,
    /// Why the platform is stopped or stopping when its own spec says `Running` (for example a
    /// dependency being stopped, or its group), in the form `Kind/name: reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// When the current ordered stop began (for `shutdown.timeoutSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_since: Option<Time>,
    /// Startup wave: 0 for platforms without dependencies, else one more than the latest wave of
    /// its dependencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_wave: Option<i32>,
    /// A human-readable summary of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last control actions (newest last), bounded to 20 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub history: Vec<HistoryEntry>,
    /// Whether resource usage is known: `false` when the metrics API (`metrics.k8s.io`) does
    /// not answer, so usage-based reactions cannot fire. The figures themselves are served by
    /// the REST API (they change too often for the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_known: Option<bool>,
    /// What runtime supervision remembers (restarts in the window, back-off, the circuit), kept
    /// here rather than in the operator's memory so that it survives operator restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervision: Option<SupervisionStatus>,
}

/// The state of a platform's circuit breaker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum CircuitState {
    /// Failures are answered with restarts (within the restart policy's budget).
    #[default]
    Closed,
    /// Too many restarts in the window: the platform is stopped (phase Failed) until the
    /// cooldown ends, its spec changes, or a user resets it (a restart request).
    Open,
    /// The cooldown ended: one trial start; Running closes the circuit, a failure opens it
    /// again with a longer cooldown.
    HalfOpen,
}

/// Runtime supervision's memory of one platform.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupervisionStatus {
    /// The circuit breaker.
    #[serde(default)]
    pub circuit: CircuitState,
    /// The operator's restarts within the restart policy's window, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 101))]
    pub restarts: Vec<Time>,
    /// No restart before this time (back-off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_after: Option<Time>,
    /// The operator's last restart, as its pods' template carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_token: Option<String>,
    /// When the circuit opened last, and how long it stays open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_seconds: Option<u32>,
    /// When the current half-open trial started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_started_at: Option<Time>,
    /// Why the operator stopped the platform itself (`ResourceExceeded: ...`), until its spec
    /// changes or a user resets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_for: Option<String>,
    /// The spec generation the platform failed at (circuit open or stopped): a newer spec
    /// resets supervision, as the fix is expected to be in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_generation: Option<i64>,
    /// The user restart request that last reset the circuit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_by: Option<String>,
    /// The last failure observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<FailureRecord>,
    /// The end of the last OOM kill acted on, so that one kill is handled once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_oom_at: Option<Time>,
    /// It failed, or was stopped because a dependency failed, and is not Running again yet
    /// (a `Recovered` alert is due when it is).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_recovery: bool,
}

/// A failure as supervision observed it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecord {
    /// `HealthCheckFailed`, `ResourceExceeded`, `Error`, `DependencyFailed`.
    pub kind: String,
    /// What in particular (`CrashLoopBackOff`, `OOMKilled`, `NotReady`, `StartupTimeout`, ...).
    pub reason: String,
    /// What was observed, one line per fact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub evidence: Vec<String>,
    /// When it was first observed.
    pub since: Time,
}

/// Life-cycle phase of a Platform.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    JsonSchema,
)]
pub enum Phase {
    /// Seen, not yet acted on.
    #[default]
    Pending,
    /// Desired Running, waiting for dependencies to become Ready.
    WaitingForDependencies,
    /// Scaled up, pods not all ready yet.
    Starting,
    /// All replicas ready.
    Running,
    /// Was running; fewer replicas ready than desired.
    Degraded,
    /// Scaling to zero (after its dependents stopped).
    Stopping,
    /// Scaled to zero, no pods left.
    Stopped,
    /// Could not be started or kept running (for example too many restarts).
    Failed,
    /// The dependency graph is invalid for this platform (cycle, missing dependency).
    Blocked,
}

impl Phase {
    /// The phase's name as it appears in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::WaitingForDependencies => "WaitingForDependencies",
            Phase::Starting => "Starting",
            Phase::Running => "Running",
            Phase::Degraded => "Degraded",
            Phase::Stopping => "Stopping",
            Phase::Stopped => "Stopped",
            Phase::Failed => "Failed",
            Phase::Blocked => "Blocked",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One control action, as recorded in `status.history`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// What was done: `Start`, `Stop`, `CascadeStop`, `Restart`, `Scale`, `Blocked`, ...
    pub action: String,
    /// Who did it: `operator`, `user:<name>`, `group:<name>`, `api:<caller>`.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When.
    pub time: Time,
}
