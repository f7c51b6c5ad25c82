//! Structural checks of a value against an OpenAPI v3 (structural) schema: the part of CRD
//! validation the API server does before CEL.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

use super::{FieldError, FieldErrorReason, child_path, index_path};

pub(super) fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if value.is_null() {
        // Nulls of object fields were dropped before validation (see `decode`); the ones left
        // (list items, the root) are values of the wrong type.
        if !flag(schema, "nullable")
            && let Some(expected) = schema.get("type").and_then(Value::as_str)
        {
            type_error(errors, path, value, expected);
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        // String validations (a quantity's `pattern`) apply to the string form only, as in
        // the API server, where a validation does not apply to values of another type.
        if value.is_string() {
            check_string(schema, value, path, errors);
        } else if !is_integer(value) {
            invalid(errors, path, value, "must be an integer or a string");
        }
        return;
    }
    if let Some(any_of) = schema.get("anyOf").and_then(Value::as_array)
        && !any_of.is_empty()
        && !any_of.iter().any(|alternative| {
            let mut scratch = Vec::new();
            check(alternative, value, path, &mut scratch);
            scratch.is_empty()
        })
    {
        invalid(errors, path, value, "does not match any allowed form");
        return;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => check_object(schema, value, path, errors),
        Some("array") => check_array(schema, value, path, errors),
        Some("string") => check_string(schema, value, path, errors),
        Some("integer") => check_number(schema, value, path, errors, true),
        Some("number") => check_number(schema, value, path, errors, false),
        Some("boolean") if !value.is_boolean() => type_error(errors, path, value, "boolean"),
        _ => {}
    }
    check_enum(schema, value, path, errors);
}

fn check_object(
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(object) = value.as_object() else {
        type_error(errors, path, value, "object");
        return;
    };
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if object.get(name).is_none_or(Value::is_null) {
                push(
                    errors,
                    &child_path(path, name),
                    FieldErrorReason::FieldValueRequired,
                    "Required value",
                );
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (name, child) in object {
        // A null is "unset" to the API server's decoder; required ones were reported above.
        if child.is_null() {
            continue;
        }
        if let Some(child_schema) = properties.and_then(|p| p.get(name)).or(additional) {
            check(child_schema, child, &child_path(path, name), errors);
        }
    }
    check_count(
        schema,
        object.len(),
        "minProperties",
        "maxProperties",
        path,
        errors,
    );
}

fn check_array(
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(items) = value.as_array() else {
        type_error(errors, path, value, "array");
        return;
    };
    check_count(schema, items.len(), "minItems", "maxItems", path, errors);
    if let Some(item_schema) = schema.get("items") {
        for (index, item) in items.iter().enumerate() {
            check(item_schema, item, &index_path(path, index), errors);
        }
    }
    let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
    if list_type == Some("set") {
        let mut seen = HashSet::new();
        for (index, item) in items.iter().enumerate() {
            if !seen.insert(item.to_string()) {
                push(
                    errors,
                    &index_path(path, index),
                    FieldErrorReason::FieldValueDuplicate,
                    &format!("Duplicate value: {item}"),
                );
            }
        }
    }
    if list_type == Some("map")
        && let Some(keys) = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
    {
        let mut seen = HashSet::new();
        for (index, item) in items.iter().enumerate() {
            let key: Vec<String> = keys
                .iter()
                .filter_map(Value::as_str)
                .map(|k| item.get(k).map(Value::to_string).unwrap_or_default())
                .collect();
            if !seen.insert(key.clone()) {
                push(
                    errors,
                    &index_path(path, index),
                    FieldErrorReason::FieldValueDuplicate,
                    &format!("Duplicate value: {}", key.join(",")),
                );
            }
        }
    }
}

fn check_string(
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(text) = value.as_str() else {
        type_error(errors, path, value, "string");
        return;
    };
    let length = text.chars().count();
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && length as u64 > max
    {
        push(
            errors,
            path,
            FieldErrorReason::FieldValueTooLong,
            &format!("Too long: may not be more than {max} bytes"),
        );
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && (length as u64) < min
    {
        invalid(
            errors,
            path,
            value,
            &format!("should be at least {min} chars long"),
        );
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && let Some(regex) = cached_regex(pattern)
        && !regex.is_match(text)
    {
        invalid(errors, path, value, &format!("should match '{pattern}'"));
    }
}

fn check_number(
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
    integer: bool,
) {
    let Some(number) = value.as_f64() else {
        type_error(
            errors,
            path,
            value,
            if integer { "integer" } else { "number" },
        );
        return;
    };
    if integer && !is_integer(value) {
        type_error(errors, path, value, "integer");
        return;
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMinimum");
        if number < min || (exclusive && number == min) {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            invalid(
                errors,
                path,
                value,
                &format!("should be {op} {}", render_number(min)),
            );
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMaximum");
        if number > max || (exclusive && number == max) {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            invalid(
                errors,
                path,
                value,
                &format!("should be {op} {}", render_number(max)),
            );
        }
    }
}

fn check_enum(
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(allowed) = schema.get("enum").and_then(Value::as_array) else {
        return;
    };
    if !allowed.contains(value) {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        push(
            errors,
            path,
            FieldErrorReason::FieldValueNotSupported,
            &format!(
                "Unsupported value: {value}: supported values: {}",
                list.join(", ")
            ),
        );
    }
}

fn check_count(
    schema: &Map<String, Value>,
    count: usize,
    min_key: &str,
    max_key: &str,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some(max) = schema.get(max_key).and_then(Value::as_u64)
        && count as u64 > max
    {
        push(
            errors,
            path,
            FieldErrorReason::FieldValueTooMany,
            &format!("Too many: {count}: must have at most {max} items"),
        );
    }
    if let Some(min) = schema.get(min_key).and_then(Value::as_u64)
        && (count as u64) < min
    {
        push(
            errors,
            path,
            FieldErrorReason::FieldValueInvalid,
            &format!("Invalid value: {count}: must have at least {min} items"),
        );
    }
}

/// An integer as JSON Schema (and the API server) counts them: a number without a fractional
/// part, `3.0` included.
fn is_integer(value: &Value) -> bool {
    value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|n| n.fract() == 0.0)
}

fn flag(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn render_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn type_error(errors: &mut Vec<FieldError>, path: &str, value: &Value, expected: &str) {
    let got = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    invalid(
        errors,
        path,
        value,
        &format!("must be of type {expected}, not {got}"),
    );
}

fn invalid(errors: &mut Vec<FieldError>, path: &str, value: &Value, detail: &str) {
    let shown = match value {
        Value::Object(_) => "object".to_string(),
        Value::Array(_) => "array".to_string(),
        other => other.to_string(),
    };
    push(
        errors,
        path,
        FieldErrorReason::FieldValueInvalid,
        &format!("Invalid value: {shown}: {detail}"),
    );
}

fn push(errors: &mut Vec<FieldError>, path: &str, reason: FieldErrorReason, message: &str) {
    errors.push(FieldError {
        field: path.to_string(),
        reason,
        message: message.to_string(),
    });
}

/// Patterns come from a handful of CRDs, so compiled regexes are cached forever; a pattern that
/// does not compile is skipped (the API server would have refused the CRD itself).
fn cached_regex(pattern: &str) -> Option<Regex> {
    static CACHE: OnceLock<Mutex<std::collections::HashMap<String, Option<Regex>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok())
        .clone()
}
