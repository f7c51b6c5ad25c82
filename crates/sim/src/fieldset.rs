//! Field paths and field sets, the vocabulary of server-side apply.
//!
//! A set holds the leaf fields a manager owns, list items of associative lists addressed by their
//! key (`k:{"name":"app"}`) and members of set-lists by value (`v:"x"`), and serialises to the
//! `fieldsV1` form stored in `metadata.managedFields`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElem {
    Field(String),
    /// A keyed list item; the string is the compact JSON of its key fields.
    Key(String),
    /// A member of a set-list; the string is the compact JSON of the value.
    Value(String),
}

pub type FieldPath = Vec<PathElem>;
pub type FieldSet = BTreeSet<FieldPath>;

/// How a list is merged and tracked.
#[derive(Clone, Debug, PartialEq)]
pub enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// Where a value sits in the schema, to decide list semantics. CRD-backed kinds follow the
/// `x-kubernetes-list-type` markers of their schema (default atomic, as on a real server);
/// built-in kinds and `metadata` use the merge keys of the real Go types for the lists that
/// matter here.
#[derive(Clone, Copy, Debug)]
pub struct Shape<'a> {
    pub schema: Option<&'a Value>,
    pub builtin: bool,
}

impl<'a> Shape<'a> {
    pub fn root(schema: Option<&'a Value>, builtin: bool) -> Self {
        Self { schema, builtin }
    }

    pub fn child(&self, field: &str) -> Shape<'a> {
        if field == "metadata" && !self.builtin {
            // CRD schemas do not describe metadata; its lists follow the built-in rules.
            return Shape {
                schema: None,
                builtin: true,
            };
        }
        let schema = self.schema.and_then(|s| {
            s.get("properties")
                .and_then(|p| p.get(field))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
        });
        Shape {
            schema,
            builtin: self.builtin,
        }
    }

    pub fn items(&self) -> Shape<'a> {
        Shape {
            schema: self.schema.and_then(|s| s.get("items")),
            builtin: self.builtin,
        }
    }

    /// List semantics of the list stored under `field` (whose shape is `self`).
    pub fn list_kind(&self, field: &str) -> ListKind {
        if !self.builtin {
            let Some(schema) = self.schema else {
                return ListKind::Atomic;
            };
            return match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListKind::Set,
                Some("map") => ListKind::Map(
                    schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|keys| {
                            keys.iter()
                                .filter_map(|k| k.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                _ => ListKind::Atomic,
            };
        }
        let keys: &[&str] = match field {
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "env"
            | "volumes"
            | "imagePullSecrets" => &["name"],
            "volumeMounts" => &["mountPath"],
            "ports" => &["containerPort", "protocol"],
            "conditions" => &["type"],
            "ownerReferences" => &["uid"],
            "finalizers" => return ListKind::Set,
            _ => return ListKind::Atomic,
        };
        ListKind::Map(keys.iter().map(|k| k.to_string()).collect())
    }
}

/// The key element of a list item, or `None` when the item lacks every key field (such items
/// make the list behave atomically).
pub fn item_key(item: &Value, keys: &[String]) -> Option<String> {
    let obj = item.as_object()?;
    let mut key = Map::new();
    for k in keys {
        if let Some(v) = obj.get(k) {
            key.insert(k.clone(), v.clone());
        }
    }
    if key.is_empty() {
        None
    } else {
        Some(Value::Object(key).to_string())
    }
}

/// The set of fields present in `value`.
pub fn fields_of(value: &Value, shape: Shape<'_>) -> FieldSet {
    let mut set = FieldSet::new();
    collect(value, shape, "", &mut Vec::new(), &mut set);
    set
}

fn collect(value: &Value, shape: Shape<'_>, field: &str, path: &mut FieldPath, set: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                if v.is_null() {
                    continue;
                }
                path.push(PathElem::Field(k.clone()));
                collect(v, shape.child(k), k, path, set);
                path.pop();
            }
        }
        Value::Array(items) => match shape.list_kind(field) {
            ListKind::Atomic => {
                set.insert(path.clone());
            }
            ListKind::Set => {
                for item in items {
                    path.push(PathElem::Value(item.to_string()));
                    set.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Map(keys) => {
                let keyed: Option<Vec<String>> = items.iter().map(|i| item_key(i, &keys)).collect();
                match keyed {
                    Some(item_keys) => {
                        for (item, key) in items.iter().zip(item_keys) {
                            path.push(PathElem::Key(key));
                            set.insert(path.clone());
                            collect(item, shape.items(), "", path, set);
                            path.pop();
                        }
                    }
                    None => {
                        set.insert(path.clone());
                    }
                }
            }
        },
        _ => {
            if !path.is_empty() {
                set.insert(path.clone());
            }
        }
    }
}

/// The value at `path`, if present.
pub fn get_path<'v>(value: &'v Value, path: &[PathElem]) -> Option<&'v Value> {
    let mut current = value;
    for elem in path {
        current = match elem {
            PathElem::Field(f) => current.get(f)?,
            PathElem::Key(k) => find_keyed(current.as_array()?, k)?,
            PathElem::Value(v) => current.as_array()?.iter().find(|i| i.to_string() == *v)?,
        };
    }
    Some(current)
}

fn find_keyed<'v>(items: &'v [Value], key: &str) -> Option<&'v Value> {
    let wanted: Map<String, Value> = serde_json::from_str(key).ok()?;
    items
        .iter()
        .find(|item| wanted.iter().all(|(k, v)| item.get(k) == Some(v)))
}

/// Removes the value at `path` (a field, a keyed item or a set member), if present.
pub fn remove_path(value: &mut Value, path: &[PathElem]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut current = value;
    for elem in parent_path {
        let next = match elem {
            PathElem::Field(f) => current.get_mut(f),
            PathElem::Key(k) => {
                let Ok(wanted) = serde_json::from_str::<Map<String, Value>>(k) else {
                    return;
                };
                current.as_array_mut().and_then(|items| {
                    items
                        .iter_mut()
                        .find(|i| wanted.iter().all(|(k, v)| i.get(k) == Some(v)))
                })
            }
            PathElem::Value(v) => current
                .as_array_mut()
                .and_then(|items| items.iter_mut().find(|i| i.to_string() == *v)),
        };
        match next {
            Some(n) => current = n,
            None => return,
        }
    }
    match last {
        PathElem::Field(f) => {
            if let Some(obj) = current.as_object_mut() {
                obj.remove(f);
            }
        }
        PathElem::Key(k) => {
            if let (Some(items), Ok(wanted)) = (
                current.as_array_mut(),
                serde_json::from_str::<Map<String, Value>>(k),
            ) {
                items.retain(|i| !wanted.iter().all(|(k, v)| i.get(k) == Some(v)));
            }
        }
        PathElem::Value(v) => {
            if let Some(items) = current.as_array_mut() {
                items.retain(|i| i.to_string().as_str() != v.as_str());
            }
        }
    }
}

/// Renders a path the way conflict messages do: `.spec.containers[name="app"].image`.
pub fn display_path(path: &[PathElem]) -> String {
    let mut out = String::new();
    for elem in path {
        match elem {
            PathElem::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElem::Key(k) => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElem::Value(v) => out.push_str(&format!("[{v}]")),
        }
    }
    out
}

/// Encodes a set as `fieldsV1`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for elem in path {
            let name = match elem {
                PathElem::Field(f) => format!("f:{f}"),
                PathElem::Key(k) => format!("k:{k}"),
                PathElem::Value(v) => format!("v:{v}"),
            };
            let entry = node
                .entry(name)
                .or_insert_with(|| Value::Object(Map::new()));
            node = match entry.as_object_mut() {
                Some(n) => n,
                None => return Value::Object(root),
            };
        }
        // A member that also has members below it is marked with ".".
        let is_prefix = set
            .range(path.clone()..)
            .nth(1)
            .is_some_and(|next| next.starts_with(path));
        if is_prefix {
            node.insert(".".into(), Value::Object(Map::new()));
        }
    }
    Value::Object(root)
}

/// Decodes `fieldsV1`; unknown entries are ignored.
pub fn from_fields_v1(value: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    decode(value, &mut Vec::new(), &mut set);
    set
}

fn decode(value: &Value, path: &mut FieldPath, set: &mut FieldSet) {
    let Some(map) = value.as_object() else { return };
    if (map.is_empty() || map.contains_key(".")) && !path.is_empty() {
        set.insert(path.clone());
    }
    for (name, child) in map {
        let elem = if let Some(f) = name.strip_prefix("f:") {
            PathElem::Field(f.to_string())
        } else if let Some(k) = name.strip_prefix("k:") {
            PathElem::Key(canonical(k))
        } else if let Some(v) = name.strip_prefix("v:") {
            PathElem::Value(canonical(v))
        } else {
            continue;
        };
        path.push(elem);
        decode(child, path, set);
        path.pop();
    }
}

fn canonical(json: &str) -> String {
    serde_json::from_str::<Value>(json)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_fields_v1() {
        let obj = json!({"metadata": {"labels": {"a": "b"}, "finalizers": ["x"]},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "i"}]}}}});
        let set = fields_of(&obj, Shape::root(None, true));
        let encoded = to_fields_v1(&set);
        assert_eq!(
            encoded["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]["."],
            json!({})
        );
        assert_eq!(from_fields_v1(&encoded), set);
        let path = vec![
            PathElem::Field("spec".into()),
            PathElem::Field("template".into()),
            PathElem::Field("spec".into()),
            PathElem::Field("containers".into()),
            PathElem::Key("{\"name\":\"app\"}".into()),
            PathElem::Field("image".into()),
        ];
        assert_eq!(get_path(&obj, &path), Some(&json!("i")));
        let mut copy = obj.clone();
        remove_path(&mut copy, &path[..5]);
        assert_eq!(copy["spec"]["template"]["spec"]["containers"], json!([]));
    }
}
