use serde_json::json;

use super::*;

fn schema() -> Value {
    json!({
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                    "count": {"type": "integer", "minimum": 0, "maximum": 10},
                    "mode": {"type": "string", "enum": ["A", "B"]},
                    "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                    "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
                    "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "qty": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "limit": {"type": "integer", "default": 7}
                },
                "x-kubernetes-validations": [{"rule": "!has(self.count) || self.count != 3", "message": "three is not allowed"}]
            }
        }
    })
}

fn problems(object: Value) -> Vec<(String, FieldErrorReason)> {
    validate(&schema(), &object, None)
        .into_iter()
        .map(|e| (e.field, e.reason))
        .collect()
}

#[test]
fn a_valid_object_has_no_problems() {
    assert!(
        problems(
            json!({"spec": {"name": "abc", "count": 10, "mode": "B", "tags": ["x"], "qty": "2Gi"}})
        )
        .is_empty()
    );
}

#[test]
fn each_structural_rule_reports_its_field() {
    use FieldErrorReason::*;
    let cases = [
        (json!({}), "spec", FieldValueRequired),
        (json!({"spec": {}}), "spec.name", FieldValueRequired),
        (
            json!({"spec": {"name": "abcdef"}}),
            "spec.name",
            FieldValueTooLong,
        ),
        (
            json!({"spec": {"name": "ABC"}}),
            "spec.name",
            FieldValueInvalid,
        ),
        (json!({"spec": {"name": 5}}), "spec.name", FieldValueInvalid),
        (
            json!({"spec": {"name": "a", "count": 11}}),
            "spec.count",
            FieldValueInvalid,
        ),
        (
            json!({"spec": {"name": "a", "count": -1}}),
            "spec.count",
            FieldValueInvalid,
        ),
        (
            json!({"spec": {"name": "a", "count": 1.5}}),
            "spec.count",
            FieldValueInvalid,
        ),
        (
            json!({"spec": {"name": "a", "mode": "C"}}),
            "spec.mode",
            FieldValueNotSupported,
        ),
        (
            json!({"spec": {"name": "a", "tags": ["x", "y", "z"]}}),
            "spec.tags",
            FieldValueTooMany,
        ),
        (
            json!({"spec": {"name": "a", "tags": [1]}}),
            "spec.tags[0]",
            FieldValueInvalid,
        ),
        (
            json!({"spec": {"name": "a", "labels": {"a": "1", "b": "2"}}}),
            "spec.labels",
            FieldValueTooMany,
        ),
        (
            json!({"spec": {"name": "a", "qty": true}}),
            "spec.qty",
            FieldValueInvalid,
        ),
    ];
    for (object, field, reason) in cases {
        let found = problems(object.clone());
        assert!(
            found.contains(&(field.to_string(), reason)),
            "{object} should report {field} {reason:?}, got {found:?}"
        );
    }
}

#[test]
fn cel_rules_run_after_structural_checks() {
    let found = validate(&schema(), &json!({"spec": {"name": "a", "count": 3}}), None);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "spec");
    assert_eq!(found[0].message, "three is not allowed");
}

#[test]
fn unknown_fields_are_found_and_pruned_outside_open_objects() {
    let mut object = json!({
        "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "whatever": 1},
        "spec": {"name": "a", "bogus": 1, "open": {"anything": {"goes": true}}},
        "extra": "x"
    });
    let unknown: Vec<String> = unknown_fields(&schema(), &object)
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(unknown, vec!["extra", "metadata.whatever", "spec.bogus"]);
    prune_unknown(&schema(), &mut object);
    assert_eq!(object["spec"].get("bogus"), None);
    assert_eq!(object.get("extra"), None);
    assert_eq!(object["spec"]["open"]["anything"]["goes"], json!(true));
    assert_eq!(object["metadata"], json!({"name": "n"}));
}

#[test]
fn every_object_meta_field_is_known() {
    let metadata: serde_json::Map<String, Value> = OBJECT_META_FIELDS
        .iter()
        .map(|name| (name.to_string(), json!(null)))
        .collect();
    let object = json!({"metadata": metadata, "spec": {"name": "a"}});
    assert!(unknown_fields(&schema(), &object).is_empty());
}

#[test]
fn whole_number_floats_are_integers() {
    assert!(problems(json!({"spec": {"name": "a", "count": 3.0}})).is_empty());
    assert!(problems(json!({"spec": {"name": "a", "qty": 3.0}})).is_empty());
    assert!(!problems(json!({"spec": {"name": "a", "qty": 3.5}})).is_empty());
}

#[test]
fn int_or_string_applies_string_validations_to_strings_only() {
    let schema = json!({"type": "object", "properties": {"qty": {
        "x-kubernetes-int-or-string": true,
        "pattern": "^[0-9]+m?$",
        "maxLength": 4
    }}});
    let check = |qty: Value| validate(&schema, &json!({ "qty": qty }), None);
    assert!(check(json!(123_456)).is_empty());
    assert!(check(json!("500m")).is_empty());
    assert!(!check(json!("four")).is_empty());
    assert!(!check(json!("50000")).is_empty());
}

#[test]
fn labels_and_annotations_are_validated_with_the_object() {
    let found = validate(
        &schema(),
        &json!({"metadata": {"labels": {"bad key!": "x"}}, "spec": {"name": "a", "count": 3}}),
        None,
    );
    // As on the API server, an invalid object does not get its CEL rules evaluated.
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "metadata.labels");
}

#[test]
fn defaulting_drops_nulls_and_makes_whole_floats_integers() {
    let defaulted = apply_defaults(
        &schema(),
        &json!({"spec": {"name": "a", "limit": null, "count": 4.0, "mode": null}}),
    );
    assert_eq!(
        defaulted,
        json!({"spec": {"name": "a", "limit": 7, "count": 4}})
    );
    assert!(defaulted["spec"]["count"].is_i64());
}

#[test]
fn defaults_fill_unset_fields_only() {
    let defaulted = apply_defaults(&schema(), &json!({"spec": {"name": "a"}}));
    assert_eq!(defaulted["spec"]["limit"], json!(7));
    let kept = apply_defaults(&schema(), &json!({"spec": {"name": "a", "limit": 2}}));
    assert_eq!(kept["spec"]["limit"], json!(2));
}
