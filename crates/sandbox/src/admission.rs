//! The simulator's admission hook, implemented with the operator's own schema checks
//! (`platform_operator::schema`, shared with `plan`), so that what `plan` accepts is what the
//! simulated cluster accepts.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use platform_operator::schema::{self, SchemaValidator};
use pmp_sim::{CrdAdmission, SchemaHook, StatusCause};
use serde_json::Value;

/// Admits custom resources with [`platform_operator::schema`]: unknown fields, defaults,
/// structural and CEL validation against each CRD version's `openAPIV3Schema`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchemaAdmission;

impl CrdAdmission for SchemaAdmission {
    fn prepare(
        &self,
        crd: &CustomResourceDefinition,
        version: &str,
    ) -> Option<Arc<dyn SchemaHook>> {
        let schema = schema::crd_schema(crd, version)?;
        Some(Arc::new(VersionSchema(SchemaValidator::new(schema))))
    }
}

/// One CRD version's schema, with its CEL rules compiled once.
#[derive(Debug)]
struct VersionSchema(SchemaValidator);

impl SchemaHook for VersionSchema {
    fn unknown_fields(&self, object: &Value) -> Vec<String> {
        schema::unknown_fields(self.0.schema(), object)
            .into_iter()
            .map(|unknown| unknown.field)
            .collect()
    }

    fn prune(&self, object: &mut Value) {
        schema::prune_unknown(self.0.schema(), object);
    }

    fn apply_defaults(&self, object: &mut Value) {
        *object = self.0.apply_defaults(object);
    }

    fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<StatusCause> {
        self.0
            .validate(object, old)
            .into_iter()
            .map(|error| StatusCause {
                reason: error.reason.as_str().to_string(),
                message: error.message,
                field: error.field,
            })
            .collect()
    }
}
