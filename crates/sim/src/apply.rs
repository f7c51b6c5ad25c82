//! Server-side apply and `metadata.managedFields` bookkeeping.
//!
//! Each manager's entry is keyed by (manager, operation, subresource) as on a real server. Apply
//! merges the applied configuration into the live object, reports conflicts with fields other
//! managers own with a different value, and removes fields the manager stopped applying when
//! nobody else owns them. Updates (PUT/PATCH) give the updater the fields it changed and take
//! them from everyone else.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::fieldset::{
    FieldPath, FieldSet, ListKind, PathElem, Shape, display_path, fields_of, from_fields_v1,
    get_path, item_key, remove_path, to_fields_v1,
};

#[derive(Clone, Debug, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn same_slot(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

pub fn read_entries(object: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            Some(ManagedEntry {
                manager: e.get("manager")?.as_str()?.to_string(),
                operation: e
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or("Update")
                    .to_string(),
                api_version: e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                time: e.get("time").and_then(Value::as_str).map(String::from),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(String::from),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            })
        })
        .collect()
}

pub fn write_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let rendered: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(t) = &e.time {
                v["time"] = json!(t);
            }
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if rendered.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(rendered));
        }
    }
}

/// Which part of the object a write may own: the main resource owns everything but status (when
/// status is a subresource) and server-set metadata; `/status` owns only status.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub subresource: Option<&'a str>,
    pub status_is_subresource: bool,
}

impl Scope<'_> {
    fn allows(&self, path: &FieldPath) -> bool {
        let Some(PathElem::Field(top)) = path.first() else {
            return false;
        };
        match (self.subresource, top.as_str()) {
            (_, "apiVersion" | "kind") => false,
            (Some("status"), top) => top == "status",
            (_, "status") => !self.status_is_subresource,
            (_, "metadata") => matches!(
                path.get(1),
                Some(PathElem::Field(f)) if matches!(f.as_str(), "labels" | "annotations" | "finalizers" | "ownerReferences")
            ),
            _ => true,
        }
    }

    fn filter(&self, set: FieldSet) -> FieldSet {
        set.into_iter().filter(|p| self.allows(p)).collect()
    }
}

/// A manager that owns a field the applier wants to set differently.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyConflict {
    pub manager: String,
    pub api_version: String,
    pub field: String,
}

pub struct ApplyRequest<'a> {
    pub live: Option<&'a Value>,
    pub config: &'a Value,
    pub manager: &'a str,
    pub api_version: &'a str,
    pub force: bool,
    pub shape: Shape<'a>,
    pub scope: Scope<'a>,
    pub now: Timestamp,
}

/// Computes the object after an apply, with updated managedFields.
pub fn apply(req: ApplyRequest<'_>) -> Result<Value, Vec<ApplyConflict>> {
    let config = strip_nulls(req.config);
    let applied = req.scope.filter(fields_of(&config, req.shape));
    let empty = json!({});
    let live = req.live.unwrap_or(&empty);
    let mut entries = read_entries(live);
    let sub = req.scope.subresource;

    let mut conflicts = Vec::new();
    let mut taken: Vec<(usize, FieldPath)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.same_slot(req.manager, "Apply", sub) {
            continue;
        }
        for path in entry.fields.intersection(&applied) {
            let (Some(have), Some(want)) = (get_path(live, path), get_path(&config, path)) else {
                continue;
            };
            if have != want && !is_container(have) {
                if entry.manager == req.manager {
                    // A manager never conflicts with its own updates; apply simply takes over.
                    taken.push((i, path.clone()));
                    continue;
                }
                conflicts.push(ApplyConflict {
                    manager: entry.manager.clone(),
                    api_version: entry.api_version.clone(),
                    field: display_path(path),
                });
                taken.push((i, path.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !req.force {
        return Err(conflicts);
    }
    for (i, path) in taken {
        entries[i].fields.remove(&path);
    }

    let mut merged = live.clone();
    merge_into(&mut merged, &config, req.shape, "");

    let previous = entries
        .iter()
        .find(|e| e.same_slot(req.manager, "Apply", sub))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    // Deepest first, so a removed item does not hide its owned children from the check.
    let dropped: Vec<&FieldPath> = previous.difference(&applied).collect();
    for path in dropped.into_iter().rev() {
        let owned_elsewhere = entries
            .iter()
            .any(|e| !e.same_slot(req.manager, "Apply", sub) && e.fields.contains(path));
        if !owned_elsewhere {
            remove_path(&mut merged, path);
        }
    }

    let now = req.now.to_string();
    match entries
        .iter_mut()
        .find(|e| e.same_slot(req.manager, "Apply", sub))
    {
        Some(entry) => {
            entry.fields = applied;
            entry.time = Some(now);
            entry.api_version = req.api_version.to_string();
        }
        None => entries.push(ManagedEntry {
            manager: req.manager.to_string(),
            operation: "Apply".into(),
            api_version: req.api_version.to_string(),
            time: Some(now),
            subresource: sub.map(String::from),
            fields: applied,
        }),
    }
    write_entries(&mut merged, &entries);
    Ok(merged)
}

fn is_container(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty())
}

/// Records an update (create, PUT, any PATCH) by `manager`: it now owns the fields it changed.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    shape: Shape<'_>,
    scope: Scope<'_>,
    now: Timestamp,
) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let new_set = scope.filter(fields_of(new, shape));
    let changed: FieldSet = match old {
        None => new_set.clone(),
        Some(old) => {
            let old_set = scope.filter(fields_of(old, shape));
            let mut changed: FieldSet = new_set
                .iter()
                .filter(|p| get_path(old, p) != get_path(new, p) || !old_set.contains(*p))
                .cloned()
                .collect();
            changed.extend(old_set.difference(&new_set).cloned());
            changed
        }
    };
    if changed.is_empty() {
        write_entries(new, &entries);
        return;
    }
    for entry in entries.iter_mut() {
        if !entry.same_slot(manager, "Update", scope.subresource) {
            entry.fields.retain(|p| !changed.contains(p));
        }
    }
    let gained: FieldSet = changed.intersection(&new_set).cloned().collect();
    let now = now.to_string();
    match entries
        .iter_mut()
        .find(|e| e.same_slot(manager, "Update", scope.subresource))
    {
        Some(entry) => {
            entry.fields.extend(gained);
            entry.fields.retain(|p| new_set.contains(p));
            entry.time = Some(now);
            entry.api_version = api_version.to_string();
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            time: Some(now),
            subresource: scope.subresource.map(String::from),
            fields: gained,
        }),
    }
    write_entries(new, &entries);
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Deep-merges an applied configuration: maps field by field, associative lists item by key,
/// set-lists by value, atomic lists and scalars replaced.
pub fn merge_into(live: &mut Value, config: &Value, shape: Shape<'_>, field: &str) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                match l.get_mut(k) {
                    Some(lv) => merge_into(lv, cv, shape.child(k), k),
                    None => {
                        l.insert(k.clone(), cv.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(c)) => match shape.list_kind(field) {
            ListKind::Atomic => *l = c.clone(),
            ListKind::Set => {
                for item in c {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListKind::Map(keys) => {
                for item in c {
                    let Some(key) = item_key(item, &keys) else {
                        *l = c.clone();
                        return;
                    };
                    match l
                        .iter_mut()
                        .find(|i| item_key(i, &keys).as_deref() == Some(key.as_str()))
                    {
                        Some(existing) => merge_into(existing, item, shape.items(), ""),
                        None => l.push(item.clone()),
                    }
                }
            }
        },
        (l, c) => *l = c.clone(),
    }
}

/// The conflict body details (`FieldManagerConflict` causes) and message.
pub fn conflict_message(conflicts: &[ApplyConflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
            only.manager, only.api_version, only.field
        );
    }
    let mut by_manager: Map<String, Value> = Map::new();
    for c in conflicts {
        let list = by_manager
            .entry(c.manager.clone())
            .or_insert_with(|| json!([]));
        if let Some(a) = list.as_array_mut() {
            a.push(json!(c.field));
        }
    }
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(m, fields)| {
            let fields: Vec<String> = fields
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str())
                .map(|f| format!("- {f}"))
                .collect();
            format!("conflicts with \"{m}\":\n{}", fields.join("\n"))
        })
        .collect();
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        parts.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        live: Option<&'a Value>,
        config: &'a Value,
        manager: &'a str,
        force: bool,
    ) -> ApplyRequest<'a> {
        ApplyRequest {
            live,
            config,
            manager,
            api_version: "v1",
            force,
            shape: Shape::root(None, true),
            scope: Scope {
                subresource: None,
                status_is_subresource: true,
            },
            now: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn conflicts_and_removal() {
        let a = json!({"metadata": {"name": "x"}, "data": {"k": "1", "j": "2"}});
        let first = apply(req(None, &a, "a", false)).unwrap();
        let b = json!({"metadata": {"name": "x"}, "data": {"k": "9"}});
        let err = apply(req(Some(&first), &b, "b", false)).unwrap_err();
        assert_eq!(err[0].field, ".data.k");
        let forced = apply(req(Some(&first), &b, "b", true)).unwrap();
        assert_eq!(forced["data"]["k"], "9");
        // "a" stops applying "j": nobody else owns it, so it goes.
        let a2 = json!({"metadata": {"name": "x"}, "data": {}});
        let after = apply(req(Some(&forced), &a2, "a", false)).unwrap();
        assert_eq!(after["data"], json!({"k": "9"}));
    }
}
