//! The `PlatformGroup` custom resource: a stack of platforms managed together.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::alerts::Alerts;
use super::platform::DesiredState;
use super::settings::{
    HealthCheckSettings, Reactions, ResourceSettings, RestartPolicySettings, ShutdownSettings,
};

/// Condition types a PlatformGroup reports.
pub mod group_condition {
    /// True when every member is Ready (or every member is Stopped when the group is Stopped).
    pub const READY: &str = "Ready";
    /// True when the members' dependency graph has no errors.
    pub const GRAPH_VALID: &str = "GraphValid";
    /// True when the group is Blocked (a graph error only a change can fix): kstatus reads it
    /// as Failed.
    pub const STALLED: &str = "Stalled";
}

/// A stack of platforms started in dependency order and stopped in reverse order.
// The printer columns repeat `type_`/`json_path` keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "pmp.dev",
    version = "v1alpha1",
    kind = "PlatformGroup",
    namespaced,
    status = "PlatformGroupStatus",
    shortname = "pgroup",
    category = "pmp",
    derive = "PartialEq",
    derive = "Default",
    doc = "A stack of Platforms managed together by platform-operator.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PlatformGroupSpec {
    /// Chooses the member Platforms, in the group's namespace. A Platform chosen by two groups
    /// is an error reported on both.
    pub selector: LabelSelector,
    /// `Running` starts the members in dependency order; `Stopped` stops them in reverse order.
    /// A member's own `Stopped` still wins over a `Running` group. Default `Running`.
    #[serde(default)]
    pub desired_state: DesiredState,
    /// Settings members inherit unless they set their own (environment-wide values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<GroupDefaults>,
    /// Startup sequencing beyond each member's `dependsOn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<StartupSettings>,
}

/// Settings shared by the members of a group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupDefaults {
    /// Default health check (merged field by field under the member's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSettings>,
    /// Default restart policy (merged field by field under the member's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicySettings>,
    /// Default resources (merged field by field under the member's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSettings>,
    /// Default shutdown settings (merged field by field under the member's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<ShutdownSettings>,
    /// Default reactions (merged field by field under the member's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactions: Option<Reactions>,
    /// Default alert routing for members that set no `alerts` of their own (a member's own
    /// `alerts` replaces these as a whole, it is not merged). The channels' Secrets are read
    /// in the group's namespace, which is also its members'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Alerts>,
}

/// How the members start.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartupSettings {
    /// How many members may be starting at once; 0 means no limit.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub max_concurrent_starts: u32,
    /// Extra ordering: each `after` starts only once its `before` is Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub ordering: Vec<OrderingRule>,
}

/// One extra ordering edge between two members.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    cel,
    validation = Rule::new("self.before != self.after").message("before and after must differ")
)]
pub struct OrderingRule {
    /// The member that must be Ready first.
    #[schemars(length(min = 1, max = 63))]
    pub before: String,
    /// The member that waits for it.
    #[schemars(length(min = 1, max = 63))]
    pub after: String,
}

/// Observed state of a PlatformGroup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformGroupStatus {
    /// Summary: `Running`, `Starting`, `Stopping`, `Stopped`, `Degraded` or `Blocked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Startup waves: each inner list starts in parallel after the previous one is Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_order: Vec<Vec<String>>,
    /// Number of members in each phase.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phase_counts: BTreeMap<String, u32>,
    /// Members whose `Ready` condition is True.
    #[serde(default)]
    pub ready_members: u32,
    /// All members.
    #[serde(default)]
    pub total_members: u32,
    /// `readyMembers/totalMembers` (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Standard conditions: `Ready`, `GraphValid`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Problems in the members' dependency graph (cycles with their path, missing platforms,
    /// members claimed by another group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub graph_errors: Vec<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
