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
    DependencyRef, DesiredState, MAX_DEPENDENCIES, Platform, PlatformSpec, PodTemplate, PortSpec,
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

/// The CRDs as one multi-document YAML stream (what `platform-operator crds` prints).
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    Ok(crd_files()?.into_iter().map(|(_, yaml)| yaml).collect())
}

/// One YAML document per CRD with the file name it is committed under in `crds/`
/// (`<plural>.<group>.yaml`).
pub fn crd_files() -> Result<Vec<(String, String)>, serde_saphyr::ser::Error> {
    all_crds()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"));
            Ok((name, format!("---\n{}", serde_saphyr::to_string(&crd)?)))
        })
        .collect()
}
