//! The `Platform` custom resource: one long-running service, realised as one Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::alerts::Alerts;
use super::settings::{
    HealthCheckSettings, Reactions, ResourceSettings, RestartPolicySettings, ShutdownSettings,
};
use super::status::PlatformStatus;

/// Maximum number of dependencies one platform may declare.
pub const MAX_DEPENDENCIES: usize = 64;

/// A long-running service that starts only after everything it depends on is ready and stops
/// only after everything that depends on it has stopped.
// The printer columns repeat `type_`/`json_path` keys, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "pmp.dev",
    version = "v1alpha1",
    kind = "Platform",
    namespaced,
    status = "PlatformStatus",
    shortname = "plat",
    category = "pmp",
    derive = "PartialEq",
    derive = "Default",
    cel,
    doc = "A long-running service run in dependency order by platform-operator.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready"),
    printcolumn(name = "Deps", type_ = "string", json_path = ".status.dependencies"),
    printcolumn(name = "Restarts", type_ = "integer", json_path = ".status.restartCount"),
    printcolumn(name = "Wave", type_ = "integer", json_path = ".status.startupWave"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("!has(self.spec.dependsOn) || self.spec.dependsOn.all(d, has(d.__namespace__) || d.name != self.metadata.name)")
        .message("a platform cannot depend on itself")
        .field_path(".spec.dependsOn")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.dependsOn) || self.dependsOn.all(d, self.dependsOn.exists_one(e, e.name == d.name && (has(e.__namespace__) ? e.__namespace__ : '') == (has(d.__namespace__) ? d.__namespace__ : '')))")
        .message("dependsOn entries must be unique")
        .field_path(".dependsOn"),
    validation = Rule::new("has(self.image) || has(self.template)")
        .message("a workload is required: set spec.image or spec.template")
        .field_path(".image")
)]
pub struct PlatformSpec {
    /// Whether the platform should run. `Stopped` scales it to zero after its dependents have
    /// stopped. Default `Running`.
    #[serde(default)]
    pub desired_state: DesiredState,

    /// The identifier legacy REST callers use for this platform, e.g. `market_data_service`
    /// (`POST /api/v1/platform/{platformId}/control`). Unique per namespace by convention; an id
    /// that matches several platforms is answered with the candidates, and `?namespace=`
    /// chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    )]
    pub platform_id: Option<String>,

    /// Platforms that must be Ready before this one starts, and that are stopped only after this
    /// one has stopped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub depends_on: Vec<DependencyRef>,

    /// Container image, for the common case of one container. Required unless `template` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,

    /// Entrypoint override (the image's ENTRYPOINT when unset).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub command: Vec<String>,

    /// Arguments to the entrypoint (the image's CMD when unset).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub args: Vec<String>,

    /// Environment variables of the container (Kubernetes `EnvVar`s, so `valueFrom` works).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub env: Vec<EnvVar>,

    /// Ports the container listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub ports: Vec<PortSpec>,

    /// Extra annotations on every pod (for example the simulator's `sim.pmp.dev/*` scripts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub pod_annotations: BTreeMap<String, String>,

    /// Extra labels on every pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub pod_labels: BTreeMap<String, String>,

    /// A full Kubernetes pod template, for workloads the common fields cannot describe
    /// (sidecars, volumes, security contexts). When set it takes precedence over `image`,
    /// `command`, `args`, `env` and `ports`; the operator still adds its labels, the config
    /// volume, the health probes and the resources. Its schema is deliberately left open
    /// (`x-kubernetes-preserve-unknown-fields`): embedding the whole PodTemplateSpec schema would
    /// multiply the CRD's size. The operator parses it as a typed PodTemplateSpec and reports a
    /// malformed template in the Platform's status, and the API server validates the resulting
    /// Deployment like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "open_object_schema")]
    pub template: Option<PodTemplate>,

    /// Number of pods. Default 1.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// CPU and memory per pod. Inherited from the group's defaults when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceSettings>,

    /// How health is checked. Inherited field by field from the group's defaults when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSettings>,

    /// How often a failing platform is restarted. Inherited from the group's defaults when unset.
    /// The operator restarts a platform whose health check fails (a crash loop, pods not Ready
    /// for `failureThreshold × intervalSeconds`, no readiness within `startupTimeoutSeconds`),
    /// backing off between restarts; one restart more than `maxRestartAttempts` within
    /// `windowSeconds` opens its circuit: it is stopped (phase Failed, its dependents first)
    /// until a cooldown ends (one trial start), its spec changes, or a user restarts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicySettings>,

    /// How the platform stops. Inherited from the group's defaults when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<ShutdownSettings>,

    /// What the operator does on failed health checks, exceeded resources and failed
    /// dependencies. Inherited field by field from the group's defaults when unset. A failure
    /// explained by a dependency that is not Ready is not answered with a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactions: Option<Reactions>,

    /// Platform-specific settings, rendered into a ConfigMap mounted at `/etc/platform/config`
    /// (one file per key). Changing them rolls the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub config: BTreeMap<String, String>,

    /// Where alerts about this platform go, and which events alert. When unset, the group's
    /// `defaults.alerts` apply; when set, it replaces them as a whole. Delivery never holds up
    /// reconciling: a failed or rate-limited alert is logged and counted, not retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Alerts>,
}

fn default_replicas() -> i32 {
    1
}

/// Whether a platform (or a group) should run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DesiredState {
    /// Run, once every dependency is Ready.
    #[default]
    Running,
    /// Scale to zero, after every dependent has stopped.
    Stopped,
}

/// A reference to another Platform.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyRef {
    /// Name of the Platform depended on.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Its namespace; the depending Platform's own namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
}

/// A port the platform's container listens on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// Optional port name (IANA service name), used by probes and Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Option<String>,
    /// Port number in the container.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["TCP", "UDP", "SCTP"]))]
    pub protocol: Option<String>,
}

/// A pod template as the user wrote it. It is kept untyped here and parsed as a
/// `PodTemplateSpec` only when the Deployment is built: the API server accepts any object in
/// this field, and one malformed template must fail its own Platform (reported in its status),
/// not the operator's watch of every Platform.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct PodTemplate(pub serde_json::Value);

impl From<PodTemplateSpec> for PodTemplate {
    fn from(template: PodTemplateSpec) -> Self {
        Self(serde_json::to_value(template).unwrap_or_default())
    }
}

/// An object schema whose content the API server keeps as sent.
fn open_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
