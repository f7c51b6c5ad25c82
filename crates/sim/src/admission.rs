//! Admission of custom resources against their CRD's `openAPIV3Schema`, in the order the real
//! server runs it: unknown fields (rejected under `fieldValidation=Strict`, else pruned), then
//! defaulting, then structural and CEL validation.
//!
//! The simulator does not evaluate schemas itself: whoever starts it plugs the checks in with a
//! [`CrdAdmission`] ([`SimConfig::with_admission`](crate::SimConfig::with_admission)), so that
//! the simulated server can run exactly the checks a project already has (the operator's own
//! validation, shared with its offline `plan`). Without one, custom resources are stored as
//! sent, as if every schema preserved unknown fields and declared no defaults or rules.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use super::error::{ApiError, StatusCause};
use super::resources::ResourceDef;

/// Prepares the schema checks of custom resources, once per served CRD version.
pub trait CrdAdmission: Send + Sync + fmt::Debug + 'static {
    /// The checks for `version` of `crd`, or `None` when that version is not checked (it has
    /// no schema). Called once per served version when the simulator builds its resource table,
    /// so expensive preparation (compiling CEL rules) happens once, not per request.
    fn prepare(&self, crd: &CustomResourceDefinition, version: &str)
    -> Option<Arc<dyn SchemaHook>>;
}

/// The checks of one CRD version's schema, which the simulator runs on every create, update and
/// patch of a custom resource (including its status), in this order.
pub trait SchemaHook: Send + Sync + fmt::Debug + 'static {
    /// Paths (`spec.foo`) of the fields the schema does not declare; under strict field
    /// validation any of them rejects the request with `400 BadRequest`.
    fn unknown_fields(&self, object: &Value) -> Vec<String>;
    /// Removes the fields the schema does not declare (`metadata` is the server's own).
    fn prune(&self, object: &mut Value);
    /// Fills in the schema's defaults.
    fn apply_defaults(&self, object: &mut Value);
    /// Every problem with the pruned, defaulted `object`, as `Status` causes (a non-empty list
    /// rejects the request with `422 Invalid`); `old` is the stored object on updates, for
    /// transition rules.
    fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<StatusCause>;
}

/// The prepared checks of one custom kind, by version.
#[derive(Clone, Default)]
pub struct VersionHooks(BTreeMap<String, Arc<dyn SchemaHook>>);

impl VersionHooks {
    /// Prepares every served version of `crd` with `admission` (nothing without one).
    pub fn prepare(admission: Option<&dyn CrdAdmission>, crd: &CustomResourceDefinition) -> Self {
        let Some(admission) = admission else {
            return Self::default();
        };
        Self(
            crd.spec
                .versions
                .iter()
                .filter(|v| v.served)
                .filter_map(|v| Some((v.name.clone(), admission.prepare(crd, &v.name)?)))
                .collect(),
        )
    }

    pub fn get(&self, version: &str) -> Option<&dyn SchemaHook> {
        self.0.get(version).map(|hook| hook.as_ref())
    }
}

impl fmt::Debug for VersionHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// Prunes and defaults `obj` in place; returns the validation failures as `Status` causes, or a
/// `400` for unknown fields under strict field validation.
pub fn admit_custom(
    def: &ResourceDef,
    version: &str,
    obj: &mut Value,
    old: Option<&Value>,
    strict: bool,
) -> Result<Vec<StatusCause>, ApiError> {
    let Some(hook) = def.admission.get(version) else {
        return Ok(Vec::new());
    };
    if strict {
        let unknown = hook.unknown_fields(obj);
        if !unknown.is_empty() {
            let listed: Vec<String> = unknown
                .iter()
                .map(|field| format!("unknown field \"{field}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                listed.join(", ")
            )));
        }
    }
    hook.prune(obj);
    hook.apply_defaults(obj);
    Ok(hook.validate(obj, old))
}
