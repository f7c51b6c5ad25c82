//! The custom resource types (API group `pmp.dev`, version `v1alpha1`): types, defaults and
//! schema validation rules only, no behaviour.

mod alerts;
mod group;
mod platform;
mod settings;
mod status;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use alerts::{AlertChannel, AlertChannelType, AlertEvent, Alerts, SecretKeyRef};
pub use group::{
    GroupDefaults, OrderingRule, PlatformGroup, PlatformGroupSpec, PlatformGroupStatus,
    StartupSettings, group_condition,
};
pub use platform::{
    DependencyRef, DesiredState, MAX_DEPENDENCIES, Platform, PlatformSpec, PortSpec,
};
pub use settings::{
    Backoff, CpuMemory, DependencyReaction, ExecProbe, HealthCheckReaction, HealthCheckSettings,
    HttpProbe, Probe, Reactions, ResourceReaction, ResourceSettings, RestartPolicySettings,
    ShutdownSettings, TcpProbe,
};
pub use status::{HISTORY_LIMIT, HistoryEntry, Phase, PlatformStatus, condition};

/// The API group of every custom resource here.
pub const GROUP: &str = "pmp.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Both CustomResourceDefinitions, in a stable order (Platform first).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![Platform::crd(), PlatformGroup::crd()]
}

/// The CRDs as one multi-document YAML stream, as committed under `crds/`.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}
