//! The object metadata the API server validates for every kind, whatever the CRD's schema says:
//! the fields `ObjectMeta` declares, label keys and values, annotation keys and their total size
//! (`ValidateObjectMeta` in `k8s.io/apimachinery`).

use serde_json::{Map, Value};

use super::{FieldError, FieldErrorReason, child_path};

/// The fields of `ObjectMeta`; any other field under `metadata` is unknown to the server.
pub const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Most bytes all annotations of one object may take together (keys and values).
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const DNS_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_FORMAT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FORMAT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

/// Problems with the labels and annotations of `metadata` (the object's `metadata` value), with
/// the API server's messages. Field paths start at `path` (`metadata` for a whole object).
pub fn validate_metadata(metadata: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(metadata) = metadata.as_object() else {
        return errors;
    };
    if let Some(labels) = metadata.get("labels") {
        validate_labels(labels, &child_path(path, "labels"), &mut errors);
    }
    if let Some(annotations) = metadata.get("annotations") {
        validate_annotations(annotations, &child_path(path, "annotations"), &mut errors);
    }
    errors
}

fn validate_labels(labels: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(labels) = string_map(labels, path, errors) else {
        return;
    };
    for (key, value) in labels {
        for message in qualified_name_errors(key) {
            errors.push(invalid(path, key, &message));
        }
        for message in label_value_errors(value) {
            errors.push(invalid(path, value, &message));
        }
    }
}

fn validate_annotations(annotations: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(annotations) = string_map(annotations, path, errors) else {
        return;
    };
    let mut total = 0;
    for (key, value) in &annotations {
        // The server checks annotation keys lower-cased: `MyCompany.com/x` is a valid key.
        for message in qualified_name_errors(&key.to_lowercase()) {
            errors.push(invalid(path, key, &message));
        }
        total += key.len() + value.len();
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errors.push(FieldError {
            field: path.to_string(),
            reason: FieldErrorReason::FieldValueTooLong,
            message: format!("Too long: may not be more than {ANNOTATIONS_MAX_BYTES} bytes"),
        });
    }
}

/// The entries of a map of strings, or `None` (with an error) when it is something else; a null
/// is an absent map.
fn string_map<'a>(
    value: &'a Value,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<(&'a str, &'a str)>> {
    let map: &Map<String, Value> = match value {
        Value::Null => return None,
        Value::Object(map) => map,
        other => {
            errors.push(type_invalid(path, other, "must be a map of strings"));
            return None;
        }
    };
    let mut entries = Vec::with_capacity(map.len());
    for (key, value) in map {
        match value.as_str() {
            Some(text) => entries.push((key.as_str(), text)),
            None => errors.push(type_invalid(
                &format!("{path}[{key}]"),
                value,
                "must be a string",
            )),
        }
    }
    Some(entries)
}

/// What is wrong with `value` as a qualified name (a label or annotation key): an optional DNS
/// subdomain prefix and `/`, then a name of at most 63 characters.
pub fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else {
                errors.extend(
                    dns_subdomain_errors(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                qualified_name_format_error()
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errors.push(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX} characters"
        ));
    }
    if !is_qualified_token(name) {
        errors.push(format!("name part {}", qualified_name_format_error()));
    }
    errors
}

/// What is wrong with `value` as a label value: at most 63 characters, empty or alphanumeric at
/// both ends with `-`, `_` or `.` between.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errors.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !(value.is_empty() || is_qualified_token(value)) {
        errors.push(format!(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '{LABEL_VALUE_FORMAT}')"
        ));
    }
    errors
}

/// What the API server requires of object names (and of the prefix of qualified names): a
/// lowercase RFC 1123 subdomain of at most 253 characters.
pub fn is_dns_subdomain(name: &str) -> bool {
    dns_subdomain_errors(name).is_empty()
}

fn dns_subdomain_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS_SUBDOMAIN_MAX {
        errors.push(format!(
            "must be no more than {DNS_SUBDOMAIN_MAX} characters"
        ));
    }
    let labels_ok = value.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if !labels_ok {
        errors.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
    }
    errors
}

fn qualified_name_format_error() -> String {
    format!(
        "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{QUALIFIED_NAME_FORMAT}')"
    )
}

/// Matches `QUALIFIED_NAME_FORMAT`: alphanumeric at both ends, `-`, `_` or `.` allowed between.
fn is_qualified_token(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn invalid(path: &str, value: &str, message: &str) -> FieldError {
    FieldError {
        field: path.to_string(),
        reason: FieldErrorReason::FieldValueInvalid,
        message: format!("Invalid value: {value:?}: {message}"),
    }
}

fn type_invalid(path: &str, value: &Value, message: &str) -> FieldError {
    FieldError {
        field: path.to_string(),
        reason: FieldErrorReason::FieldValueInvalid,
        message: format!("Invalid value: {value}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn qualified_names_follow_the_api_server() {
        for good in [
            "a",
            "app.kubernetes.io/name",
            "pmp.dev/stack",
            "My_Name.1",
            &"n".repeat(63),
        ] {
            assert!(qualified_name_errors(good).is_empty(), "{good}");
        }
        for bad in [
            "bad key!",
            "",
            "-a",
            "a-",
            "/a",
            "a/",
            "a/b/c",
            "Upper.Case/name",
            &"n".repeat(64),
            &format!("{}/a", "p".repeat(254)),
        ] {
            assert!(!qualified_name_errors(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn label_values_follow_the_api_server() {
        for good in ["", "a", "a-value", "My_Value.2", &"v".repeat(63)] {
            assert!(label_value_errors(good).is_empty(), "{good}");
        }
        for bad in ["not a value", "-a", "a.", "a/b", &"v".repeat(64)] {
            assert!(!label_value_errors(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn labels_and_annotations_are_checked_with_server_messages() {
        let errors = validate_metadata(
            &json!({"labels": {"bad key!": "x", "stack": "not a value"}}),
            "metadata",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.field == "metadata.labels"));
        assert!(
            errors[0]
                .message
                .starts_with("Invalid value: \"bad key!\": name part must consist"),
            "{}",
            errors[0].message
        );
        assert!(
            errors[1]
                .message
                .starts_with("Invalid value: \"not a value\": a valid label"),
            "{}",
            errors[1].message
        );
        let annotations = validate_metadata(
            &json!({"annotations": {"Example.COM/Owner": "any text at all", "bad key!": ""}}),
            "metadata",
        );
        assert_eq!(annotations.len(), 1, "{annotations:?}");
        assert_eq!(annotations[0].field, "metadata.annotations");
    }

    #[test]
    fn annotations_are_bounded_in_total() {
        let half = "x".repeat(ANNOTATIONS_MAX_BYTES / 2);
        let fits = json!({"annotations": {"a": half.clone(), "b": "x".repeat(ANNOTATIONS_MAX_BYTES / 2 - 2)}});
        assert!(validate_metadata(&fits, "metadata").is_empty());
        let over = json!({"annotations": {"a": half.clone(), "b": half}});
        let errors = validate_metadata(&over, "metadata");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].reason, FieldErrorReason::FieldValueTooLong);
    }
}
