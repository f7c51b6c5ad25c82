//! What a decision about one Platform is made from, and what it produces. Plain data: the
//! observe step fills [`Observed`] from the caches, the pure [`super::decide`] turns it into a
//! [`Decision`], and the apply step carries the decision out.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::crd::{AlertEvent, Phase, Platform, SupervisionStatus};
use crate::graph::NodeKey;
use crate::stack::EffectiveSettings;

/// Annotation on a Platform asking for a rolling restart; any new value is a new request.
pub const RESTART_ANNOTATION: &str = "pmp.dev/restartedAt";
/// Annotation on a Platform: `"true"` makes a restart request roll its dependents too, in
/// order, once this platform is Ready again.
pub const RESTART_DEPENDENTS_ANNOTATION: &str = "pmp.dev/restartDependents";
/// Annotation naming the caller of the last control request accepted by the REST API
/// (`api:<user>`); the actions that request leads to are recorded with it as their actor.
pub const REQUESTED_BY_ANNOTATION: &str = "pmp.dev/requestedBy";
/// Annotation with the time of that request (RFC 3339, whole seconds).
pub const REQUESTED_AT_ANNOTATION: &str = "pmp.dev/requestedAt";
/// Finalizer that makes deletion follow the shutdown order.
pub const FINALIZER: &str = "pmp.dev/ordered-shutdown";

/// The observed state of a platform's Deployment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentState {
    /// `spec.replicas`.
    pub replicas: i32,
    pub ready_replicas: i32,
    pub updated_replicas: i32,
    /// Pods the Deployment still has (`status.replicas`).
    pub status_replicas: i32,
    /// The deployment controller has seen the latest spec.
    pub observed_current: bool,
    /// `Progressing=False` with reason `ProgressDeadlineExceeded`.
    pub progress_deadline_exceeded: bool,
    /// The hash of the desired object it was last applied from.
    pub applied_hash: Option<String>,
    /// The restart request its pod template carries.
    pub restarted_at: Option<String>,
}

impl DeploymentState {
    /// Every desired replica runs the latest template and is ready, and no pod of an older
    /// template is left (as `kubectl rollout status` judges it): while a rollout surges, the
    /// old pod still counts as ready and the new one as updated before it is ready.
    pub fn rolled_out(&self) -> bool {
        self.observed_current
            && self.updated_replicas >= self.replicas
            && self.status_replicas <= self.updated_replicas
            && self.ready_replicas >= self.replicas
    }
}

/// A dependency as the dependent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DependencyState {
    pub key: NodeKey,
    /// Its `Ready` condition is True and its Deployment has all desired replicas ready.
    pub ready: bool,
}

/// What supervision reads of one pod of the platform.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodHealth {
    pub name: String,
    pub ready: bool,
    /// When its `Ready` condition last changed (so: since when it is (not) ready).
    pub ready_changed_at: Option<Timestamp>,
    /// Container restarts (by the kubelet) summed over its containers.
    pub restarts: i32,
    /// A container waiting with this reason (`CrashLoopBackOff`, `ImagePullBackOff`, ...),
    /// and its message.
    pub waiting: Option<(String, String)>,
    /// The last termination of a container: its reason (`OOMKilled`, `Error`) and end.
    pub last_terminated: Option<(String, Option<Timestamp>)>,
    /// `PodScheduled=False` with reason `Unschedulable`: its message.
    pub unschedulable: Option<String>,
}

/// A dependent as its dependency sees it when stopping.
#[derive(Debug, Clone, PartialEq)]
pub struct DependentState {
    pub key: NodeKey,
    /// It must stop too (so this platform waits for it when stopping).
    pub stopping: bool,
    /// No pods left and none desired.
    pub stopped: bool,
    /// Its current restart request (annotation), for cascading restarts.
    pub restart_request: Option<String>,
}

/// Why a platform must stop although its own spec may say `Running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopCause {
    /// Its own `spec.desiredState` is `Stopped`.
    Spec,
    /// Its group's `spec.desiredState` is `Stopped`.
    Group(NodeKey),
    /// It is being deleted.
    Deletion,
    /// Supervision stopped it (circuit open, or resources exceeded), for this reason.
    Failed(String),
    /// Something it depends on (transitively) must stop for `cause`.
    Dependency {
        dependency: NodeKey,
        cause: Box<StopCause>,
    },
}

impl StopCause {
    /// `Kind/name: reason`, as shown in `status.stoppedBy`.
    pub fn describe(&self, own: &NodeKey) -> String {
        match self {
            StopCause::Spec => format!("Platform/{}: spec.desiredState is Stopped", own.name),
            StopCause::Group(group) => {
                format!("PlatformGroup/{}: spec.desiredState is Stopped", group.name)
            }
            StopCause::Deletion => format!("Platform/{}: being deleted", own.name),
            StopCause::Failed(reason) => format!("Platform/{}: failed ({reason})", own.name),
            StopCause::Dependency { dependency, cause } => {
                let root = match cause.as_ref() {
                    StopCause::Spec => "stopped",
                    StopCause::Group(_) => "stopped by its group",
                    StopCause::Deletion => "being deleted",
                    StopCause::Failed(_) => "failed",
                    StopCause::Dependency { .. } => "stopping",
                };
                format!("Platform/{}: dependency {root}", dependency.name)
            }
        }
    }

    /// Whether the user asked for this very platform to stop (not a cascade).
    pub fn is_own(&self) -> bool {
        !matches!(self, StopCause::Dependency { .. })
    }

    /// Whether the stop goes back to a failed platform (its own, or a dependency's).
    pub fn is_failure(&self) -> bool {
        match self {
            StopCause::Failed(_) => true,
            StopCause::Dependency { cause, .. } => cause.is_failure(),
            _ => false,
        }
    }
}

/// Group-related facts for one member.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupFacts {
    pub key: NodeKey,
    /// 0 means unlimited.
    pub max_concurrent_starts: u32,
    /// Other members starting right now.
    pub starting_members: BTreeSet<NodeKey>,
}

/// Everything one reconcile decides from: one immutable snapshot of the caches (the operator's
/// own writes the caches do not show yet included), built by the observe step.
#[derive(Debug, Clone)]
pub struct Observed {
    pub now: Timestamp,
    pub key: NodeKey,
    pub platform: Platform,
    pub settings: EffectiveSettings,
    pub deployment: Option<DeploymentState>,
    /// The hash the live ConfigMap was applied from, if it exists.
    pub config_map_hash: Option<String>,
    /// Pods of the platform that exist (terminating ones included).
    pub pods: i32,
    /// Why the dependency graph blocks this platform (with the root cause), if it does.
    pub block: Option<String>,
    pub wave: Option<usize>,
    pub dependencies: Vec<DependencyState>,
    pub dependents: Vec<DependentState>,
    pub stop_cause: Option<StopCause>,
    pub group: Option<GroupFacts>,
    /// Groups that claim this platform together (the platform then ignores them).
    pub group_conflict: Vec<NodeKey>,
    /// Its pods' health, for supervision.
    pub pod_health: Vec<PodHealth>,
    /// Its busiest pod's usage against the limits, from the last poll of the metrics API.
    pub usage: Option<super::usage::UsageSample>,
    /// Whether the metrics API answers (`None` before the first poll).
    pub usage_known: Option<bool>,
    /// The fraction of a limit that counts as exceeded.
    pub usage_threshold: f64,
    /// Recent Warning Events on its pods (evidence of what supervision finds).
    pub warnings: Vec<super::warnings::PodWarning>,
    /// Since when its status has kept showing blockers that became ready (see
    /// `plan::BLOCKERS_GRACE`), if it does.
    pub blockers_held_since: Option<Timestamp>,
}

#[cfg(test)]
impl Observed {
    /// `platform` observed at `now` with nothing around it (no Deployment, pods, dependencies,
    /// dependents or group), in wave `wave`: the starting point of the decision tables.
    pub(crate) fn alone(platform: Platform, now: Timestamp, wave: usize) -> Self {
        Observed {
            now,
            key: crate::stack::key_of(&platform),
            settings: crate::stack::effective_settings(&platform, None),
            platform,
            deployment: None,
            config_map_hash: None,
            pods: 0,
            block: None,
            wave: Some(wave),
            dependencies: Vec::new(),
            dependents: Vec::new(),
            stop_cause: None,
            group: None,
            group_conflict: Vec::new(),
            pod_health: Vec::new(),
            usage: None,
            usage_known: None,
            usage_threshold: super::usage::DEFAULT_USAGE_THRESHOLD,
            warnings: Vec::new(),
            blockers_held_since: None,
        }
    }
}

/// Kinds of control action, each audited (event, log line, history entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Start,
    Stop,
    CascadeStop,
    Restart,
    RestartDependents,
    Scale,
    Blocked,
    ShutdownTimeout,
    Failed,
    CircuitOpen,
    CircuitHalfOpen,
    CircuitClosed,
    CircuitReset,
    ResourceExceeded,
}

impl ActionKind {
    /// The name in `status.history` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Start => "Start",
            ActionKind::Stop => "Stop",
            ActionKind::CascadeStop => "CascadeStop",
            ActionKind::Restart => "Restart",
            ActionKind::RestartDependents => "RestartDependents",
            ActionKind::Scale => "Scale",
            ActionKind::Blocked => "Blocked",
            ActionKind::ShutdownTimeout => "ShutdownTimeout",
            ActionKind::Failed => "Failed",
            ActionKind::CircuitOpen => "CircuitOpen",
            ActionKind::CircuitHalfOpen => "CircuitHalfOpen",
            ActionKind::CircuitClosed => "CircuitClosed",
            ActionKind::CircuitReset => "CircuitReset",
            ActionKind::ResourceExceeded => "ResourceExceeded",
        }
    }

    /// The Kubernetes Event reason.
    pub fn event_reason(self) -> &'static str {
        match self {
            ActionKind::Start => "Started",
            ActionKind::Stop => "Stopped",
            ActionKind::CascadeStop => "CascadeStopped",
            ActionKind::Restart => "Restarted",
            ActionKind::RestartDependents => "RestartingDependents",
            ActionKind::Scale => "Scaled",
            ActionKind::Blocked => "Blocked",
            ActionKind::ShutdownTimeout => "ShutdownTimeout",
            ActionKind::Failed => "Failed",
            ActionKind::CircuitOpen => "CircuitOpened",
            ActionKind::CircuitHalfOpen => "CircuitHalfOpened",
            ActionKind::CircuitClosed => "CircuitClosed",
            ActionKind::CircuitReset => "CircuitReset",
            ActionKind::ResourceExceeded => "ResourceExceeded",
        }
    }

    /// Actions a person asks for (the others are the operator's own reactions).
    pub fn is_requested(self) -> bool {
        matches!(
            self,
            ActionKind::Start
                | ActionKind::Stop
                | ActionKind::Restart
                | ActionKind::Scale
                | ActionKind::CircuitReset
        )
    }

    /// Warnings are for what a person should look at.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            ActionKind::Blocked
                | ActionKind::ShutdownTimeout
                | ActionKind::Failed
                | ActionKind::CircuitOpen
                | ActionKind::ResourceExceeded
        )
    }
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub reason: String,
}

/// What to do with the finalizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizerChange {
    Add,
    Remove,
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Replicas the Deployment should have; `None` leaves it absent (never started).
    pub replicas: Option<i32>,
    /// This decision starts the platform (takes a group start slot).
    pub starts: bool,
    pub finalizer: Option<FinalizerChange>,
    pub phase: Phase,
    pub actions: Vec<Action>,
    /// Dependents to send the restart request to (cascading restart).
    pub restart_dependents: Vec<NodeKey>,
    /// The restart request this decision carries out, if any.
    pub handled_restart: Option<String>,
    /// Something time-based is pending.
    pub requeue_after: Option<Duration>,
    /// A one-line summary for `status.message`.
    pub message: String,
    /// The `Ready` condition's reason when it is not the phase (e.g. `InvalidSpec`).
    pub ready_reason: Option<&'static str>,
    /// The `Degraded` condition's reason when it is not the phase (`CircuitOpen`,
    /// `ResourceExceeded`).
    pub degraded_reason: Option<&'static str>,
    /// Supervision's state after this decision (`None`: nothing to remember).
    pub supervision: Option<SupervisionStatus>,
    /// The operator's own restart this decision carries out (a new pod template token).
    pub supervisor_restart: Option<String>,
    /// Alerts to send.
    pub alerts: Vec<AlertNote>,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertLevel {
    Critical,
    Warning,
    Info,
}

/// An alert a decision raises (routed to the platform's channels when it is carried out).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertNote {
    pub event: AlertEvent,
    pub level: AlertLevel,
    pub summary: String,
    pub evidence: Vec<String>,
}
