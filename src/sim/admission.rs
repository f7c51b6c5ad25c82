//! Admission of custom resources against their CRD's `openAPIV3Schema`, in the order the real
//! server runs it: unknown fields (rejected under `fieldValidation=Strict`, else pruned), then
//! defaulting, then structural and CEL validation (`crate::schema`, shared with `plan`).

use serde_json::Value;

use super::error::{ApiError, StatusCause};
use super::resources::ResourceDef;

/// Prunes and defaults `obj` in place; returns the validation failures as `Status` causes, or a
/// `400` for unknown fields under strict field validation.
pub fn admit_custom(
    def: &ResourceDef,
    version: &str,
    obj: &mut Value,
    old: Option<&Value>,
    strict: bool,
) -> Result<Vec<StatusCause>, ApiError> {
    let Some(validator) = def.validators.get(version) else {
        return Ok(Vec::new());
    };
    let schema = validator.schema();
    if strict {
        let unknown = crate::schema::unknown_fields(schema, obj);
        if !unknown.is_empty() {
            let listed: Vec<String> = unknown
                .iter()
                .map(|u| format!("unknown field \"{}\"", u.field))
                .collect();
            return Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                listed.join(", ")
            )));
        }
    }
    crate::schema::prune_unknown(schema, obj);
    *obj = validator.apply_defaults(obj);
    Ok(validator
        .validate(obj, old)
        .into_iter()
        .map(|e| StatusCause {
            reason: e.reason.as_str().to_string(),
            message: e.message,
            field: e.field,
        })
        .collect())
}
