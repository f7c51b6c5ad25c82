//! Defaults and validation of the built-in kinds, reduced to what operators notice: required
//! fields, selector/template agreement, pod spec immutability, secret `stringData`, namespace
//! finalizers.

use serde_json::{Value, json};

use super::error::StatusCause;
use super::resources::ResourceDef;

fn cause(reason: &str, field: &str, message: impl Into<String>) -> StatusCause {
    StatusCause {
        reason: reason.into(),
        field: field.into(),
        message: message.into(),
    }
}

fn required(field: &str) -> StatusCause {
    cause("FieldValueRequired", field, "Required value")
}

/// Fills defaults the real API server's defaulting would, on create and update of the main
/// resource.
pub fn default_object(def: &ResourceDef, obj: &mut Value, creating: bool) {
    match (def.group.as_str(), def.plural.as_str()) {
        ("apps", "deployments") => {
            let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
                return;
            };
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("progressDeadlineSeconds").or_insert(json!(600));
            spec.entry("strategy").or_insert(json!({
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
            }));
            if let Some(pod_spec) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
                default_pod_spec(pod_spec);
            }
        }
        ("", "pods") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
            if creating {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
        }
        ("", "namespaces") => {
            if let Some(name) = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(String::from)
                && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
            {
                let labels = meta.entry("labels").or_insert(json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
            if creating {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
            }
        }
        ("", "secrets") => {
            if let Some(map) = obj.as_object_mut() {
                map.entry("type").or_insert(json!("Opaque"));
                if let Some(Value::Object(string_data)) = map.remove("stringData") {
                    let data = map.entry("data").or_insert(json!({}));
                    if let Some(data) = data.as_object_mut() {
                        for (k, v) in string_data {
                            let text = v.as_str().unwrap_or_default().to_string();
                            data.insert(k, json!(base64(text.as_bytes())));
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn default_pod_spec(spec: &mut Value) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    spec.entry("restartPolicy").or_insert(json!("Always"));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    spec.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    if let Some(containers) = spec.get_mut("containers").and_then(Value::as_array_mut) {
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            c.entry("terminationMessagePath")
                .or_insert(json!("/dev/termination-log"));
            c.entry("terminationMessagePolicy").or_insert(json!("File"));
            let latest = c
                .get("image")
                .and_then(Value::as_str)
                .is_some_and(|i| !i.contains(':') || i.ends_with(":latest"));
            c.entry("imagePullPolicy").or_insert(json!(if latest {
                "Always"
            } else {
                "IfNotPresent"
            }));
        }
    }
}

/// Validation of the main resource; `old` is the stored object on update.
pub fn validate(def: &ResourceDef, obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    match (def.group.as_str(), def.plural.as_str()) {
        ("apps", "deployments") => {
            match obj.pointer("/spec/selector") {
                None | Some(Value::Null) => causes.push(required("spec.selector")),
                Some(selector) => {
                    let labels = obj.pointer("/spec/template/metadata/labels");
                    let matches = selector
                        .get("matchLabels")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                    if !matches {
                        causes.push(cause(
                            "FieldValueInvalid",
                            "spec.template.metadata.labels",
                            format!(
                                "Invalid value: {}: `selector` does not match template `labels`",
                                labels.cloned().unwrap_or(Value::Null)
                            ),
                        ));
                    }
                    if let Some(old_selector) = old.and_then(|o| o.pointer("/spec/selector"))
                        && old_selector != selector
                    {
                        causes.push(cause(
                            "FieldValueInvalid",
                            "spec.selector",
                            format!("Invalid value: {selector}: field is immutable"),
                        ));
                    }
                }
            }
            if let Some(replicas) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
                && replicas < 0
            {
                causes.push(cause(
                    "FieldValueInvalid",
                    "spec.replicas",
                    format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                ));
            }
            validate_containers(
                obj.pointer("/spec/template/spec"),
                "spec.template.spec",
                &mut causes,
            );
        }
        ("", "pods") => {
            validate_containers(obj.get("spec"), "spec", &mut causes);
            if let Some(old) = old {
                let strip = |v: Option<&Value>| {
                    let mut spec = v.cloned().unwrap_or(Value::Null);
                    for c in spec
                        .get_mut("containers")
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(c) = c.as_object_mut() {
                            c.remove("image");
                        }
                    }
                    if let Some(s) = spec.as_object_mut() {
                        for mutable in [
                            "activeDeadlineSeconds",
                            "tolerations",
                            "terminationGracePeriodSeconds",
                        ] {
                            s.remove(mutable);
                        }
                    }
                    spec
                };
                if strip(obj.get("spec")) != strip(old.get("spec")) {
                    causes.push(cause(
                        "FieldValueForbidden",
                        "spec",
                        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                    ));
                }
            }
        }
        ("", "configmaps") => {
            for section in ["data", "binaryData"] {
                for (k, v) in obj
                    .get(section)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if !v.is_string() {
                        causes.push(cause(
                            "FieldValueInvalid",
                            &format!("{section}[{k}]"),
                            format!("Invalid value: {v}: must be a string"),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    causes
}

fn validate_containers(spec: Option<&Value>, at: &str, causes: &mut Vec<StatusCause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => causes.push(required(&format!("{at}.containers"))),
        Some(list) if list.is_empty() => causes.push(required(&format!("{at}.containers"))),
        Some(list) => {
            for (i, c) in list.iter().enumerate() {
                if c.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(required(&format!("{at}.containers[{i}].name")));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(required(&format!("{at}.containers[{i}].image")));
                }
            }
        }
    }
}

/// DNS-1123 subdomain (most names) or label (namespaces) check; returns the error message.
pub fn name_error(name: &str, label_only: bool) -> Option<String> {
    let max = if label_only { 63 } else { 253 };
    let ok_chars = name.chars().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label_only && c == '.')
    });
    let ok_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !name.is_empty() && name.len() <= max && ok_chars && ok_ends {
        return None;
    }
    Some(if label_only {
        format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        )
    } else {
        format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    })
}

pub fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"f"), "Zg==");
    }
}
