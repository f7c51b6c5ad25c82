//! Admission of custom resources against their CRD's `openAPIV3Schema`: pruning of unknown
//! fields, defaulting, then structural and CEL validation, in the order the real server runs
//! them.

use serde_json::Value;

use super::error::StatusCause;
use super::resources::ResourceDef;

/// Prunes and defaults `obj` in place and returns the validation failures.
pub fn admit_custom(
    def: &ResourceDef,
    version: &str,
    obj: &mut Value,
    old: Option<&Value>,
) -> Vec<StatusCause> {
    let Some(schema) = def.schema(version) else {
        return Vec::new();
    };
    validate_with_schema(schema, obj, old)
}

fn validate_with_schema(
    _schema: &Value,
    _obj: &mut Value,
    _old: Option<&Value>,
) -> Vec<StatusCause> {
    // The schema engine lives in `crate::schema` (main branch); wired in once it lands.
    Vec::new()
}
