//! Server-side printing: `meta.k8s.io` `Table` responses, which `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ...`.
//!
//! As on a real server, the columns are `Name` plus, for custom resources, the CRD version's
//! `additionalPrinterColumns` (each `jsonPath` evaluated on the object, the cell typed by the
//! column's `type`, `date` cells rendered as ages like `5m`), defaulting to `Age` when a CRD
//! declares none. Built-in kinds get `Name` and `Age` (a real server prints more for them).
//! Rows carry the object's metadata as `PartialObjectMetadata` unless `includeObject` says
//! `Object` or `None`.

use jsonpath_rust::JsonPath;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::error::ApiError;

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATION_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One printer column, as a CRD declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// OpenAPI type of the cells: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    /// Where the cell comes from, e.g. `.status.phase`.
    pub json_path: String,
}

impl PrinterColumn {
    pub fn from_crd(column: &CustomResourceColumnDefinition) -> Self {
        Self {
            name: column.name.clone(),
            type_: column.type_.clone(),
            format: column.format.clone().unwrap_or_default(),
            description: column
                .description
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "Custom resource definition column (in JSONPath format): {}",
                        column.json_path
                    )
                }),
            priority: column.priority.unwrap_or(0),
            json_path: column.json_path.clone(),
        }
    }

    /// The column a kind without printer columns gets.
    pub fn age() -> Self {
        Self {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: CREATION_DESCRIPTION.into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }
    }

    fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }

    /// The cell of this column for `object`, as the API server's table convertor computes it:
    /// the first value the path finds, typed by the column (`null` when absent or mistyped).
    fn cell(&self, object: &Value, now: Timestamp) -> Value {
        let Some(value) = first_match(object, &self.json_path) else {
            return Value::Null;
        };
        match (self.type_.as_str(), value) {
            ("string", Value::String(s)) => json!(s),
            // A string column prints any other value as JSONPath prints it.
            ("string", other) => json!(other.to_string()),
            ("integer", Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(Value::Null, |i| json!(i)),
            ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, |f| json!(f)),
            ("boolean", Value::Bool(b)) => json!(b),
            ("date", Value::String(s)) => match s.parse::<Timestamp>() {
                Ok(at) => json!(human_duration(now.duration_since(at).as_secs())),
                Err(_) => json!("<invalid>"),
            },
            _ => Value::Null,
        }
    }
}

/// Values of a Kubernetes JSONPath (`.a.b[0]`, `.a[?(@.k=="v")].b`) on `object`; the first one.
fn first_match<'v>(object: &'v Value, path: &str) -> Option<&'v Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let path = if path.starts_with('$') {
        path.to_string()
    } else if path.starts_with('.') || path.starts_with('[') {
        format!("${path}")
    } else {
        format!("$.{path}")
    };
    object
        .query(&path)
        .ok()?
        .into_iter()
        .find(|value| !value.is_null())
}

/// Ages as kubectl and the API server print them (`apimachinery/pkg/util/duration`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{d}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The `meta.k8s.io` version of the Table a request accepts, if it asks for one. Media ranges
/// are taken in the client's order; the first the server can produce wins (a Table, or plain
/// JSON, which ends the search).
pub fn negotiate(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        let mut params = std::collections::BTreeMap::new();
        for param in parts {
            if let Some((key, value)) = param.split_once('=') {
                params.insert(key.trim().to_string(), value.trim().to_string());
            }
        }
        match params.get("as").map(String::as_str) {
            None => return None,
            Some("Table") if params.get("g").map(String::as_str) == Some("meta.k8s.io") => {
                match params.get("v").map(String::as_str) {
                    Some("v1") => return Some("v1"),
                    Some("v1beta1") => return Some("v1beta1"),
                    _ => {}
                }
            }
            // PartialObjectMetadata and the like: the full object serves those clients.
            Some(_) => return None,
        }
    }
    None
}

/// What each row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value.unwrap_or_default() {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(ApiError::bad_request(format!(
                "unrecognized includeObject value: \"{other}\""
            ))),
        }
    }
}

/// How to print objects as a Table.
pub struct Table {
    /// `v1` or `v1beta1` (of `meta.k8s.io`).
    pub version: &'static str,
    /// The columns after `Name`.
    pub columns: Vec<PrinterColumn>,
    pub include: IncludeObject,
    /// Time the `date` cells are measured from.
    pub now: Timestamp,
}

impl Table {
    /// The Table of `objects` (already in the requested version); `metadata` is the Table's
    /// own (`resourceVersion`, `continue`, ...).
    pub fn render(&self, objects: &[Value], metadata: Value) -> Value {
        let meta_version = format!("meta.k8s.io/{}", self.version);
        let mut definitions = vec![json!({
            "name": "Name", "type": "string", "format": "name",
            "description": NAME_DESCRIPTION, "priority": 0,
        })];
        definitions.extend(self.columns.iter().map(PrinterColumn::definition));
        let rows: Vec<Value> = objects
            .iter()
            .map(|object| {
                let mut cells = vec![
                    object
                        .pointer("/metadata/name")
                        .cloned()
                        .unwrap_or(json!("")),
                ];
                cells.extend(self.columns.iter().map(|c| c.cell(object, self.now)));
                let mut row = json!({"cells": cells});
                match self.include {
                    IncludeObject::None => {}
                    IncludeObject::Object => row["object"] = object.clone(),
                    IncludeObject::Metadata => {
                        row["object"] = json!({
                            "kind": "PartialObjectMetadata",
                            "apiVersion": meta_version,
                            "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
                        })
                    }
                }
                row
            })
            .collect();
        json!({
            "kind": "Table",
            "apiVersion": meta_version,
            "metadata": metadata,
            "columnDefinitions": definitions,
            "rows": rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_: &str, path: &str) -> PrinterColumn {
        PrinterColumn::from_crd(&CustomResourceColumnDefinition {
            name: name.into(),
            type_: type_.into(),
            json_path: path.into(),
            ..Default::default()
        })
    }

    #[test]
    fn kubectl_accept_header_asks_for_a_v1_table() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(kubectl), Some("v1"));
        assert_eq!(
            negotiate("application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json"),
            Some("v1beta1")
        );
        assert_eq!(negotiate("application/json"), None);
        assert_eq!(negotiate(""), None);
        assert_eq!(
            negotiate("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            None
        );
        // Plain JSON first wins over a Table offered later.
        assert_eq!(
            negotiate("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"),
            None
        );
    }

    #[test]
    fn cells_follow_the_column_type() {
        let now: Timestamp = "2025-01-01T01:00:00Z".parse().unwrap();
        let object = json!({
            "metadata": {"name": "a", "creationTimestamp": "2025-01-01T00:55:00Z"},
            "status": {"phase": "Running", "restartCount": 2, "ready": "1/1", "ok": true,
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "Degraded", "status": "False"}]},
        });
        let cell = |name, type_, path| column(name, type_, path).cell(&object, now);
        assert_eq!(cell("Phase", "string", ".status.phase"), json!("Running"));
        assert_eq!(
            cell("Restarts", "integer", ".status.restartCount"),
            json!(2)
        );
        assert_eq!(cell("Ok", "boolean", ".status.ok"), json!(true));
        assert_eq!(
            cell("Age", "date", ".metadata.creationTimestamp"),
            json!("5m")
        );
        assert_eq!(cell("Missing", "string", ".status.nothing"), Value::Null);
        assert_eq!(
            cell("Restarts", "string", ".status.restartCount"),
            json!("2")
        );
        assert_eq!(cell("Phase", "integer", ".status.phase"), Value::Null);
        assert_eq!(
            cell(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status"
            ),
            json!("True")
        );
        assert_eq!(
            cell("First", "string", ".status.conditions[1].type"),
            json!("Degraded")
        );
    }

    #[test]
    fn ages_print_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 7, "3h7m"),
            (8 * 3600, "8h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400, "3y"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(seconds), expected, "{seconds}s");
        }
    }

    #[test]
    fn rows_carry_partial_metadata_unless_asked_otherwise() {
        let object = json!({"apiVersion": "pmp.dev/v1alpha1", "kind": "Platform",
            "metadata": {"name": "a", "namespace": "ns"}, "spec": {"x": 1}});
        let render = |include| {
            let table = Table {
                version: "v1",
                columns: vec![column("X", "integer", ".spec.x")],
                include,
                now: Timestamp::UNIX_EPOCH,
            };
            table.render(
                std::slice::from_ref(&object),
                json!({"resourceVersion": "7"}),
            )
        };
        let table = render(IncludeObject::Metadata);
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(table["metadata"]["resourceVersion"], "7");
        let names: Vec<&Value> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, [&json!("Name"), &json!("X")]);
        assert_eq!(table["columnDefinitions"][0]["format"], "name");
        assert_eq!(
            table["columnDefinitions"][1]["description"],
            "Custom resource definition column (in JSONPath format): .spec.x"
        );
        assert_eq!(table["rows"][0]["cells"], json!(["a", 1]));
        assert_eq!(
            table["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"name": "a", "namespace": "ns"}})
        );
        let full = render(IncludeObject::Object);
        assert_eq!(full["rows"][0]["object"], object);
        let none = render(IncludeObject::None);
        assert!(none["rows"][0].get("object").is_none());
        assert!(IncludeObject::parse(Some("Everything")).is_err());
    }
}
