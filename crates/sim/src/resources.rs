//! The table of resource types the simulator serves.
//!
//! Built-in kinds are listed here by hand; custom kinds come from real
//! `CustomResourceDefinition` objects, as a real API server would serve them, so the project's
//! CRDs (and their schemas) are exercised exactly as deployed.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use super::admission::{CrdAdmission, VersionHooks};
use super::error::SimError;
use super::table::PrinterColumn;

/// Names one resource type: group (empty for the core group), version and plural.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceRef {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl ResourceRef {
    pub fn new(group: &str, version: &str, plural: &str) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
        }
    }

    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }
}

pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Where the `/scale` subresource reads and writes, as JSON paths like `.spec.replicas`.
#[derive(Clone, Debug)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// How requests to a resource are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Objects persisted in the store.
    Stored,
    /// `tokenreviews`: create-only, answered from the auth table, never stored.
    TokenReview,
    /// `subjectaccessreviews`: create-only, answered from the auth table, never stored.
    AccessReview,
    /// `selfsubjectreviews`: create-only, the request's own bearer token looked up in the auth
    /// table, never stored.
    SelfReview,
    /// `metrics.k8s.io` pods: read-only, computed from the per-pod usage map.
    PodMetrics,
}

#[derive(Clone, Debug)]
pub struct ResourceDef {
    pub group: String,
    /// Served versions; the first is the preferred one.
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    pub scale: Option<ScalePaths>,
    pub behaviour: Behaviour,
    /// `openAPIV3Schema` per version, for CRD-backed kinds.
    pub schemas: BTreeMap<String, Value>,
    /// Admission checks per version, for CRD-backed kinds (see [`crate::admission`]).
    pub admission: VersionHooks,
    /// `additionalPrinterColumns` per version, for CRD-backed kinds that declare some.
    pub printer_columns: BTreeMap<String, Vec<PrinterColumn>>,
    pub is_crd: bool,
    /// Whether `metadata.generation` is maintained (kinds with a spec; every custom kind).
    pub tracks_generation: bool,
}

impl ResourceDef {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            versions: vec![version.into()],
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            status: false,
            scale: None,
            behaviour: Behaviour::Stored,
            schemas: BTreeMap::new(),
            admission: VersionHooks::default(),
            printer_columns: BTreeMap::new(),
            is_crd: false,
            tracks_generation: false,
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    pub fn resource_ref(&self, version: &str) -> ResourceRef {
        ResourceRef::new(&self.group, version, &self.plural)
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        match self.behaviour {
            Behaviour::Stored => {
                vec![
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                    "watch",
                ]
            }
            Behaviour::TokenReview | Behaviour::AccessReview | Behaviour::SelfReview => {
                vec!["create"]
            }
            Behaviour::PodMetrics => vec!["get", "list"],
        }
    }

    pub fn schema(&self, version: &str) -> Option<&Value> {
        self.schemas.get(version)
    }

    /// The Table columns after `Name`: the CRD version's printer columns, else `Age`.
    pub fn printer_columns(&self, version: &str) -> Vec<PrinterColumn> {
        match self.printer_columns.get(version) {
            Some(columns) => columns.clone(),
            None => vec![PrinterColumn::age()],
        }
    }
}

/// All served resource types.
#[derive(Clone, Debug, Default)]
pub struct ResourceTable {
    defs: Vec<ResourceDef>,
}

impl ResourceTable {
    /// The built-in kinds plus one kind per CRD, whose writes `admission` checks.
    pub fn new(
        crds: &[CustomResourceDefinition],
        admission: Option<&dyn CrdAdmission>,
    ) -> Result<Self, SimError> {
        let mut defs = builtins();
        for crd in crds {
            let def = from_crd(crd, admission)?;
            defs.retain(|d| !(d.group == def.group && d.plural == def.plural));
            defs.push(def);
        }
        Ok(Self { defs })
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.plural == plural && d.serves(version))
    }

    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<(&ResourceDef, String)> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.defs
            .iter()
            .find(|d| d.group == group && d.kind == kind && d.serves(version))
            .map(|d| (d, version.to_string()))
    }

    pub fn all(&self) -> &[ResourceDef] {
        &self.defs
    }

    /// Groups in a stable order (core first, then by first appearance).
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = Vec::new();
        for def in &self.defs {
            if !groups.contains(&def.group) {
                groups.push(def.group.clone());
            }
        }
        groups
    }
}

fn builtins() -> Vec<ResourceDef> {
    let mut deployments = ResourceDef::builtin("apps", "v1", "Deployment", "deployments", true);
    deployments.status = true;
    deployments.tracks_generation = true;
    deployments.short_names = vec!["deploy".into()];
    deployments.categories = vec!["all".into()];
    deployments.scale = Some(ScalePaths {
        spec_replicas: ".spec.replicas".into(),
        status_replicas: ".status.replicas".into(),
        label_selector: None,
    });

    let mut pods = ResourceDef::builtin("", "v1", "Pod", "pods", true);
    pods.status = true;
    pods.short_names = vec!["po".into()];
    pods.categories = vec!["all".into()];

    let mut configmaps = ResourceDef::builtin("", "v1", "ConfigMap", "configmaps", true);
    configmaps.short_names = vec!["cm".into()];
    let secrets = ResourceDef::builtin("", "v1", "Secret", "secrets", true);
    let mut events = ResourceDef::builtin("", "v1", "Event", "events", true);
    events.short_names = vec!["ev".into()];
    let mut new_events = ResourceDef::builtin("events.k8s.io", "v1", "Event", "events", true);
    new_events.short_names = vec!["ev".into()];
    let leases = ResourceDef::builtin("coordination.k8s.io", "v1", "Lease", "leases", true);
    let mut namespaces = ResourceDef::builtin("", "v1", "Namespace", "namespaces", false);
    namespaces.status = true;
    namespaces.short_names = vec!["ns".into()];

    let mut token_reviews = ResourceDef::builtin(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        false,
    );
    token_reviews.behaviour = Behaviour::TokenReview;
    let mut self_reviews = ResourceDef::builtin(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        false,
    );
    self_reviews.behaviour = Behaviour::SelfReview;
    let mut access_reviews = ResourceDef::builtin(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        false,
    );
    access_reviews.behaviour = Behaviour::AccessReview;
    let mut pod_metrics =
        ResourceDef::builtin("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", true);
    pod_metrics.behaviour = Behaviour::PodMetrics;

    vec![
        namespaces,
        pods,
        configmaps,
        secrets,
        events,
        deployments,
        new_events,
        leases,
        token_reviews,
        self_reviews,
        access_reviews,
        pod_metrics,
    ]
}

fn from_crd(
    crd: &CustomResourceDefinition,
    admission: Option<&dyn CrdAdmission>,
) -> Result<ResourceDef, SimError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let invalid = |reason: &str| SimError::InvalidCrd {
        name: name.clone(),
        reason: reason.into(),
    };
    let spec = &crd.spec;
    let served: Vec<_> = spec.versions.iter().filter(|v| v.served).collect();
    if served.is_empty() {
        return Err(invalid("no served version"));
    }
    // The storage version is preferred, as discovery does on a real server.
    let mut versions: Vec<String> = served.iter().map(|v| v.name.clone()).collect();
    if let Some(storage) = served.iter().find(|v| v.storage) {
        versions.retain(|v| v != &storage.name);
        versions.insert(0, storage.name.clone());
    }
    let mut schemas = BTreeMap::new();
    let mut printer_columns = BTreeMap::new();
    let mut status = false;
    let mut scale = None;
    for version in &served {
        if let Some(schema) = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        {
            let value = serde_json::to_value(schema).map_err(|e| invalid(&e.to_string()))?;
            schemas.insert(version.name.clone(), value);
        }
        if let Some(columns) = version
            .additional_printer_columns
            .as_ref()
            .filter(|c| !c.is_empty())
        {
            let columns = columns.iter().map(PrinterColumn::from_crd).collect();
            printer_columns.insert(version.name.clone(), columns);
        }
        if let Some(sub) = &version.subresources {
            status |= sub.status.is_some();
            if let Some(s) = &sub.scale {
                scale = Some(ScalePaths {
                    spec_replicas: s.spec_replicas_path.clone(),
                    status_replicas: s.status_replicas_path.clone(),
                    label_selector: s.label_selector_path.clone(),
                });
            }
        }
    }
    let names = &spec.names;
    Ok(ResourceDef {
        group: spec.group.clone(),
        versions,
        kind: names.kind.clone(),
        plural: names.plural.clone(),
        singular: names
            .singular
            .clone()
            .unwrap_or_else(|| names.kind.to_lowercase()),
        namespaced: spec.scope == "Namespaced",
        short_names: names.short_names.clone().unwrap_or_default(),
        categories: names.categories.clone().unwrap_or_default(),
        status,
        scale,
        behaviour: Behaviour::Stored,
        admission: VersionHooks::prepare(admission, crd),
        printer_columns,
        schemas,
        is_crd: true,
        tracks_generation: true,
    })
}
