//! Unknown fields: the API server drops fields a structural schema does not declare (pruning), or
//! rejects them under strict field validation (what `kubectl apply` asks for by default).

use serde_json::Value;

use super::metadata::OBJECT_META_FIELDS;
use super::{FieldError, FieldErrorReason, child_path, index_path};

/// Removes every field the schema does not declare (except under
/// `x-kubernetes-preserve-unknown-fields`), and every field of `metadata` that `ObjectMeta` does
/// not declare.
pub fn prune_unknown(schema: &Value, value: &mut Value) {
    walk_unknown(schema, value, "", &mut |_, _| {}, true);
}

/// Paths of every field the schema does not declare, as strict field validation reports them.
pub fn unknown_fields(schema: &Value, value: &Value) -> Vec<FieldError> {
    let mut found = Vec::new();
    let mut copy = value.clone();
    walk_unknown(
        schema,
        &mut copy,
        "",
        &mut |path, _| {
            found.push(FieldError {
                field: path.to_string(),
                reason: FieldErrorReason::FieldValueUnknown,
                message: format!("unknown field \"{path}\""),
            })
        },
        false,
    );
    found
}

fn walk_unknown(
    schema: &Value,
    value: &mut Value,
    path: &str,
    on_unknown: &mut dyn FnMut(&str, &Value),
    remove: bool,
) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match value {
        Value::Object(object) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let mut unknown = Vec::new();
            for (name, child) in object.iter_mut() {
                let child_path = child_path(path, name);
                // The API server owns apiVersion, kind and metadata at the root of every object:
                // metadata holds exactly the fields of `ObjectMeta`, whatever the schema says.
                if path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if path.is_empty() && name == "metadata" {
                    walk_metadata(child, on_unknown, remove);
                    continue;
                }
                match properties.and_then(|p| p.get(name)).or(additional) {
                    Some(child_schema) => {
                        walk_unknown(child_schema, child, &child_path, on_unknown, remove)
                    }
                    None if preserve
                        || properties.is_none()
                            && additional.is_none()
                            && schema.get("type").is_none() => {}
                    None => {
                        on_unknown(&child_path, child);
                        unknown.push(name.clone());
                    }
                }
            }
            if remove {
                for name in unknown {
                    object.remove(&name);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    walk_unknown(
                        item_schema,
                        item,
                        &index_path(path, index),
                        on_unknown,
                        remove,
                    );
                }
            }
        }
        _ => {}
    }
}

fn walk_metadata(metadata: &mut Value, on_unknown: &mut dyn FnMut(&str, &Value), remove: bool) {
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    let unknown: Vec<String> = metadata
        .iter()
        .filter(|(name, _)| !OBJECT_META_FIELDS.contains(&name.as_str()))
        .map(|(name, value)| {
            on_unknown(&child_path("metadata", name), value);
            name.clone()
        })
        .collect();
    if remove {
        for name in unknown {
            metadata.remove(&name);
        }
    }
}
