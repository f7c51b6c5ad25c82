//! Validation of objects against a CRD's `openAPIV3Schema`, the way the API server's admission
//! does it: the metadata every object has (its fields, labels and annotations), structural
//! checks (types, required fields, enums, ranges, lengths, patterns), unknown fields, nulls and
//! defaults, and the CEL rules (`x-kubernetes-validations`, evaluated by kube's CEL support).
//!
//! The same code serves `platform-operator plan` (offline checks of manifests) and the simulated
//! API server's admission, so that what `plan` accepts is what the cluster accepts.

mod decode;
mod metadata;
mod prune;
mod structural;

use std::sync::Arc;

use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use serde_json::Value;

pub use decode::normalize;
pub use metadata::{
    ANNOTATIONS_MAX_BYTES, OBJECT_META_FIELDS, is_dns_subdomain, label_value_errors,
    qualified_name_errors, validate_metadata,
};
pub use prune::{prune_unknown, unknown_fields};

/// One problem with one field, in the shape of a Kubernetes `StatusCause`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.dependsOn[1].name` (empty for the whole object).
    pub field: String,
    /// The Kubernetes cause type.
    pub reason: FieldErrorReason,
    /// What is wrong, for people.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Kubernetes field error types (`metav1.CauseType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FieldErrorReason {
    /// The value is not valid (type, range, pattern, CEL rule).
    FieldValueInvalid,
    /// A required field is missing.
    FieldValueRequired,
    /// The value is not one of the allowed values.
    FieldValueNotSupported,
    /// A string is too long.
    FieldValueTooLong,
    /// A list or map has too many items.
    FieldValueTooMany,
    /// A list holds the same value twice.
    FieldValueDuplicate,
    /// The field may not be set.
    FieldValueForbidden,
    /// The field is not declared in the schema.
    FieldValueUnknown,
}

impl FieldErrorReason {
    /// The cause type string the API server sends.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FieldValueInvalid => "FieldValueInvalid",
            Self::FieldValueRequired => "FieldValueRequired",
            Self::FieldValueNotSupported => "FieldValueNotSupported",
            Self::FieldValueTooLong => "FieldValueTooLong",
            Self::FieldValueTooMany => "FieldValueTooMany",
            Self::FieldValueDuplicate => "FieldValueDuplicate",
            Self::FieldValueForbidden => "FieldValueForbidden",
            Self::FieldValueUnknown => "FieldValueInvalid",
        }
    }
}

/// A schema prepared once (CEL rules compiled) for validating many objects.
#[derive(Clone)]
pub struct SchemaValidator {
    schema: Arc<Value>,
    compiled: Arc<CompiledSchema>,
    cel: Arc<Validator>,
}

impl std::fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaValidator").finish_non_exhaustive()
    }
}

impl SchemaValidator {
    /// Prepares `schema` (an `openAPIV3Schema` as JSON).
    pub fn new(schema: Value) -> Self {
        let compiled = compile_schema(&schema);
        Self {
            schema: Arc::new(schema),
            compiled: Arc::new(compiled),
            cel: Arc::new(Validator::new()),
        }
    }

    /// The schema this validator checks against.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Every problem with `object` (already defaulted and pruned, as the API server validates
    /// it); `old` is the stored object on updates, for CEL transition rules. Metadata errors
    /// (labels, annotations) come first, then structural errors; CEL rules run only on an
    /// object without either, as in the API server.
    pub fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = object
            .get("metadata")
            .map(|meta| validate_metadata(meta, "metadata"))
            .unwrap_or_default();
        structural::check(&self.schema, object, "", &mut errors);
        if !errors.is_empty() {
            return errors;
        }
        if let Err(failures) = self.cel.validate_compiled(&self.compiled, object, old) {
            errors.extend(failures.into_vec().into_iter().map(|failure| FieldError {
                field: failure.field_path.trim_start_matches('.').to_string(),
                reason: FieldErrorReason::FieldValueInvalid,
                message: failure.message,
            }));
        }
        errors
    }

    /// `object` as the API server decodes and defaults it (see [`apply_defaults`]).
    pub fn apply_defaults(&self, object: &Value) -> Value {
        apply_defaults(&self.schema, object)
    }
}

/// Validates `object` against `schema` in one call (compiles the CEL rules each time).
pub fn validate(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    SchemaValidator::new(schema.clone()).validate(object, old)
}

/// `object` as the API server decodes and defaults it: nulls of non-nullable fields dropped and
/// whole-number floats made integers ([`normalize`]), then the schema's defaults filled in.
pub fn apply_defaults(schema: &Value, object: &Value) -> Value {
    let mut object = object.clone();
    normalize(schema, &mut object);
    kube::core::cel::apply_defaults(schema, &object)
}

/// The `openAPIV3Schema` of the served version of a CRD, as JSON.
pub fn crd_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    version: &str,
) -> Option<Value> {
    crd.spec
        .versions
        .iter()
        .find(|v| v.name == version)
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|schema| serde_json::to_value(schema).ok())
}

/// Appends `.name` (or `[index]`) to a field path.
pub(crate) fn child_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests;
