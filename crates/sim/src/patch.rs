//! The three classic patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! strategic merge patch (built-in kinds only, like the real server).

use serde_json::{Map, Value};

use super::fieldset::{ListKind, Shape, item_key};

/// Why a patch could not be applied; the caller maps these to 400 / 422.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Failed(String),
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// RFC 6902. A failed `test` or a path that does not exist is a `Failed` error (422 on a real
/// server); a body that is not a patch document is `Malformed` (400).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Malformed(e.to_string()))?;
    json_patch::patch(target, &ops.0).map_err(|e| PatchError::Failed(e.to_string()))
}

/// Strategic merge patch with the merge keys of the real Go types (see [`Shape::list_kind`]).
pub fn strategic_merge_patch(
    target: &mut Value,
    patch: &Value,
    shape: Shape<'_>,
) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "strategic merge patch must be a JSON object".into(),
        ));
    }
    smp_object(target, patch, shape);
    Ok(())
}

fn smp_object(target: &mut Value, patch: &Value, shape: Shape<'_>) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = without_directives(patch);
            return;
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(t) = target.as_object_mut() else {
        return;
    };
    for (k, v) in p {
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(remove)) = (t.get_mut(list), v.as_array()) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if k.starts_with('$') {
            // $setElementOrder/..., $retainKeys: ordering and pruning hints kubectl sends; the
            // merge result is the same without them for the lists served here.
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        if v.get("$patch").and_then(Value::as_str) == Some("delete") {
            t.remove(k);
            continue;
        }
        let child = shape.child(k);
        match (t.get_mut(k), v) {
            (Some(existing @ Value::Array(_)), Value::Array(items)) => {
                smp_list(existing, items, child, k)
            }
            (Some(existing), Value::Object(_)) => smp_object(existing, v, child),
            (_, Value::Array(items)) => {
                let mut fresh = Value::Array(Vec::new());
                smp_list(&mut fresh, items, child, k);
                t.insert(k.clone(), fresh);
            }
            (_, Value::Object(_)) => {
                let mut fresh = Value::Object(Map::new());
                smp_object(&mut fresh, v, child);
                t.insert(k.clone(), fresh);
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn smp_list(target: &mut Value, patch_items: &[Value], shape: Shape<'_>, field: &str) {
    let Value::Array(live) = target else { return };
    let replace = patch_items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    match shape.list_kind(field) {
        ListKind::Atomic => *live = patch_items.to_vec(),
        ListKind::Set => {
            for item in patch_items {
                if !live.contains(item) {
                    live.push(item.clone());
                }
            }
        }
        ListKind::Map(_) if replace => {
            *live = patch_items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .map(without_directives)
                .collect();
        }
        ListKind::Map(keys) => {
            for item in patch_items {
                let Some(key) = item_key(item, &keys) else {
                    // No merge key: the real server rejects this; replacing is the closest
                    // harmless reading.
                    *live = patch_items.to_vec();
                    return;
                };
                let position = live
                    .iter()
                    .position(|i| item_key(i, &keys).as_deref() == Some(key.as_str()));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(i), true) => {
                        live.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => smp_object(&mut live[i], item, shape.items()),
                    (None, false) => live.push(without_directives(item)),
                }
            }
        }
    }
}

fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [
            {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
            {"name": "b", "$patch": "delete"}]}});
        strategic_merge_patch(&mut pod, &patch, Shape::root(None, true)).unwrap();
        assert_eq!(
            pod["spec"]["containers"],
            json!([
            {"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}])
        );
    }

    #[test]
    fn merge_patch_deletes_with_null() {
        let mut v = json!({"a": {"b": 1, "c": 2}});
        merge_patch(&mut v, &json!({"a": {"b": null}}));
        assert_eq!(v, json!({"a": {"c": 2}}));
    }
}
