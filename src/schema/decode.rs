//! What the API server does to a custom resource between reading the request and defaulting it:
//! nulls of fields that are not nullable are dropped (so that a default applies, or the field is
//! simply unset), and numbers come out of Go's JSON round trip without a fractional part when
//! they have none (`3.0` is stored, and validated, as `3`).

use serde_json::{Number, Value};

/// Drops the nulls the schema does not allow and writes whole-number floats as integers.
pub fn normalize(schema: &Value, value: &mut Value) {
    drop_non_nullable_nulls(schema, value);
    integral_floats_to_integers(value);
}

/// Removes each object field whose value is null and whose schema is not `nullable`
/// (`PruneNonNullableNullsWithoutDefaults` followed by defaulting, in the API server: a null
/// with a default becomes the default, a null without one disappears). Nulls in lists stay, and
/// fail validation, as on the server.
pub fn drop_non_nullable_nulls(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(object) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            object.retain(|name, child| {
                let Some(child_schema) = properties.and_then(|p| p.get(name)).or(additional) else {
                    return true;
                };
                if child.is_null() {
                    return child_schema
                        .get("nullable")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                }
                drop_non_nullable_nulls(child_schema, child);
                true
            });
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    drop_non_nullable_nulls(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Rewrites every float without a fractional part (within the range of `i64`) as an integer, as
/// encoding a Go `float64` does.
pub fn integral_floats_to_integers(value: &mut Value) {
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&float)
            {
                *number = Number::from(float as i64);
            }
        }
        Value::Object(object) => object.values_mut().for_each(integral_floats_to_integers),
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nulls_of_non_nullable_fields_are_dropped_and_nullable_ones_kept() {
        let schema = json!({"type": "object", "properties": {
            "replicas": {"type": "integer", "default": 1},
            "image": {"type": "string"},
            "note": {"type": "string", "nullable": true},
            "nested": {"type": "object", "properties": {"a": {"type": "string"}}},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "list": {"type": "array", "items": {"type": "string"}}
        }});
        let mut value = json!({
            "replicas": null, "image": null, "note": null, "unknown": null,
            "nested": {"a": null}, "map": {"k": null}, "list": [null]
        });
        drop_non_nullable_nulls(&schema, &mut value);
        assert_eq!(
            value,
            json!({"note": null, "unknown": null, "nested": {}, "map": {}, "list": [null]})
        );
    }

    #[test]
    fn whole_floats_become_integers_everywhere() {
        let mut value = json!({"a": 3.0, "b": [1.5, -2.0], "c": {"d": 1e300, "e": 7}});
        integral_floats_to_integers(&mut value);
        assert_eq!(
            value,
            json!({"a": 3, "b": [1.5, -2], "c": {"d": 1e300, "e": 7}})
        );
        assert!(value["a"].is_i64());
    }
}
