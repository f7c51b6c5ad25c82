//! The write paths of the API server, independent of HTTP: create, update (PUT), the patch
//! kinds, server-side apply, delete and the scale subresource. Everything runs inside one store
//! transaction so a request sees and produces a consistent state.

mod delete;
mod patching;
mod scale;

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub use delete::DeleteOpts;
pub(crate) use delete::{
    FOREGROUND, delete, delete_in as delete_in_pub, finish_pod_grace, remove as remove_pub,
    remove_if_done,
};
pub use patching::patch;
pub(crate) use patching::patch_value;
pub use scale::{get_scale, write_scale};

use super::admission;
use super::apply::{self, Scope};
use super::builtin;
use super::clock::SimClock;
use super::error::{ApiError, StatusCause};
use super::fieldset::Shape;
use super::gc::GcMsg;
use super::resources::{ResourceDef, ResourceTable, api_version};
use super::store::{Key, Store, Txn, WriteCtx, WriteVerb};

/// Shared state of a running simulated cluster.
pub struct Core {
    pub store: Store,
    pub table: ResourceTable,
    pub clock: SimClock,
    pub(crate) gc: mpsc::UnboundedSender<GcMsg>,
}

impl Core {
    pub(crate) fn notify(&self, msg: GcMsg) {
        // The collector only stops at shutdown, when nothing needs collecting any more.
        let _ = self.gc.send(msg);
    }

    pub fn def_for_key(&self, key: &Key) -> Option<&ResourceDef> {
        self.table
            .all()
            .iter()
            .find(|d| d.group == key.group && d.plural == key.plural)
    }
}

/// Who is writing, from the request.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub field_manager: Option<String>,
    pub user_agent: String,
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields are an error instead of being dropped.
    pub strict: bool,
}

impl Caller {
    pub fn internal(name: &str) -> Self {
        Self {
            field_manager: Some(name.into()),
            user_agent: name.into(),
            dry_run: false,
            strict: false,
        }
    }

    /// The history's actor: the field manager if given, else the whole `User-Agent`, else
    /// `unknown` (kube-rs sends no `User-Agent` unless the client is built with one).
    pub fn actor(&self) -> String {
        match (&self.field_manager, self.user_agent.is_empty()) {
            (Some(manager), _) => manager.clone(),
            (None, false) => self.user_agent.clone(),
            (None, true) => "unknown".into(),
        }
    }

    /// The managedFields manager: as the real server, the `User-Agent` up to its first `/`.
    pub fn manager(&self) -> String {
        let from_agent = self.user_agent.split('/').next().unwrap_or_default();
        match (&self.field_manager, from_agent.is_empty()) {
            (Some(manager), _) => manager.clone(),
            (None, false) => from_agent.to_string(),
            (None, true) => "unknown".into(),
        }
    }
}

/// The object a request is about.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    pub def: &'a ResourceDef,
    pub version: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target<'_> {
    pub fn api_version(&self) -> String {
        api_version(&self.def.group, &self.version)
    }

    pub fn key(&self, name: &str) -> Key {
        Key::new(
            &self.def.group,
            &self.def.plural,
            self.namespace.as_deref(),
            name,
        )
    }

    fn ctx(&self, caller: &Caller, verb: WriteVerb) -> WriteCtx {
        WriteCtx {
            actor: caller.actor(),
            verb,
            resource: self.def.resource_ref(&self.version),
            subresource: self.subresource.clone(),
        }
    }

    fn shape(&self) -> Shape<'_> {
        Shape::root(self.def.schema(&self.version), !self.def.is_crd)
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            subresource: self.subresource.as_deref(),
            status_is_subresource: self.def.status,
        }
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(&self.def.group, &self.def.plural, name)
    }

    fn invalid(&self, name: &str, causes: Vec<StatusCause>) -> ApiError {
        ApiError::invalid(&self.def.kind, &self.def.group, name, causes)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply { force: bool },
}

/// Timestamps in objects have second precision, as on a real server.
pub fn rfc3339(ts: Timestamp) -> String {
    Timestamp::from_second(ts.as_second())
        .unwrap_or(ts)
        .to_string()
}

pub(crate) fn meta_str<'v>(obj: &'v Value, field: &str) -> Option<&'v str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

fn set_meta(obj: &mut Value, field: &str, value: Option<Value>) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        match value {
            Some(v) => {
                meta.insert(field.into(), v);
            }
            None => {
                meta.remove(field);
            }
        }
    }
}

pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// POST to a collection.
pub fn create(
    core: &Arc<Core>,
    t: &Target<'_>,
    body: Value,
    caller: &Caller,
) -> Result<Value, ApiError> {
    core.store
        .transact(|txn| create_in(core, txn, t, body, caller, WriteVerb::Create, None))
}

fn check_type(t: &Target<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    let expected = t.api_version();
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && av != expected
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({expected})"
        )));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && kind != t.def.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            t.def.kind
        )));
    }
    obj["apiVersion"] = json!(expected);
    obj["kind"] = json!(t.def.kind);
    match obj.get("metadata") {
        None | Some(Value::Null) => obj["metadata"] = json!({}),
        Some(Value::Object(_)) => {}
        Some(_) => return Err(ApiError::bad_request("metadata must be an object")),
    }
    if let Some(ns) = meta_str(obj, "namespace")
        && t.def.namespaced
        && Some(ns) != t.namespace.as_deref()
        && !ns.is_empty()
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let ns = t.namespace.clone().map(Value::String);
    set_meta(obj, "namespace", if t.def.namespaced { ns } else { None });
    // Client-sent managedFields are not honoured; the server computes them.
    set_meta(obj, "managedFields", None);
    Ok(())
}

fn check_namespace(txn: &Txn<'_>, t: &Target<'_>) -> Result<(), ApiError> {
    let Some(ns) = t.namespace.as_deref().filter(|_| t.def.namespaced) else {
        return Ok(());
    };
    match txn.get(&Key::new("", "namespaces", None, ns)) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if meta_str(&n, "deletionTimestamp").is_some() => {
            Err(ApiError::forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                t.def.plural,
                t.name.as_deref().unwrap_or_default()
            )))
        }
        Some(_) => Ok(()),
    }
}

fn generate_name(txn: &mut Txn<'_>, prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let uid = txn.new_uid();
    let mut seed = uid.bytes().fold(0u64, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    let suffix: String = (0..5)
        .map(|_| {
            seed = super::store::splitmix(seed);
            ALPHABET[(seed % ALPHABET.len() as u64) as usize] as char
        })
        .collect();
    format!("{prefix}{suffix}")
}

pub(crate) fn create_in(
    core: &Arc<Core>,
    txn: &mut Txn<'_>,
    t: &Target<'_>,
    mut obj: Value,
    caller: &Caller,
    verb: WriteVerb,
    preset_managed: Option<Value>,
) -> Result<Value, ApiError> {
    check_type(t, &mut obj)?;
    let name = match (
        meta_str(&obj, "name").filter(|n| !n.is_empty()),
        meta_str(&obj, "generateName"),
    ) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) if !prefix.is_empty() => generate_name(txn, prefix),
        _ => {
            return Err(t.invalid(
                "",
                vec![StatusCause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: name or generateName is required".into(),
                    field: "metadata.name".into(),
                }],
            ));
        }
    };
    if let Some(message) = builtin::name_error(&name, t.def.plural == "namespaces") {
        return Err(t.invalid(
            &name,
            vec![StatusCause {
                reason: "FieldValueInvalid".into(),
                message,
                field: "metadata.name".into(),
            }],
        ));
    }
    if let Some(url_name) = &t.name
        && url_name != &name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        )));
    }
    set_meta(&mut obj, "name", Some(json!(name)));
    if meta_str(&obj, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let key = t.key(&name);
    if txn.get(&key).is_some() {
        return Err(ApiError::already_exists(&t.def.group, &t.def.plural, &name));
    }
    check_namespace(txn, t)?;

    let uid = txn.new_uid();
    let now = txn.now();
    set_meta(&mut obj, "uid", Some(json!(uid)));
    set_meta(&mut obj, "creationTimestamp", Some(json!(rfc3339(now))));
    set_meta(
        &mut obj,
        "generation",
        t.def.tracks_generation.then(|| json!(1)),
    );
    for cleared in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "resourceVersion",
    ] {
        set_meta(&mut obj, cleared, None);
    }
    if t.def.status
        && let Some(map) = obj.as_object_mut()
    {
        // Status is written through /status only; create starts from an empty one.
        map.remove("status");
    }
    builtin::default_object(t.def, &mut obj, true);
    let mut causes = builtin::validate(t.def, &obj, None);
    if t.def.is_crd {
        causes.extend(admission::admit_custom(
            t.def,
            &t.version,
            &mut obj,
            None,
            caller.strict,
        )?);
    }
    if !causes.is_empty() {
        return Err(t.invalid(&name, causes));
    }
    match preset_managed {
        Some(managed) => set_meta(&mut obj, "managedFields", Some(managed)),
        None => {
            let scope = t.scope();
            apply::track_update(
                None,
                &mut obj,
                &caller.manager(),
                &t.api_version(),
                t.shape(),
                scope,
                truncate(now),
            );
        }
    }
    if caller.dry_run {
        return Ok(obj);
    }
    let _ = core;
    let (stored, _) = txn.put(key, obj, &t.ctx(caller, verb));
    Ok(for_version(&stored, t))
}

fn truncate(ts: Timestamp) -> Timestamp {
    Timestamp::from_second(ts.as_second()).unwrap_or(ts)
}

/// The stored object as the requested version (storage is version-less; no conversion needed
/// for the kinds served).
pub fn for_version(obj: &Value, t: &Target<'_>) -> Value {
    let mut out = obj.clone();
    out["apiVersion"] = json!(t.api_version());
    out
}

/// PUT on an object or its status.
pub fn update(
    core: &Arc<Core>,
    t: &Target<'_>,
    body: Value,
    caller: &Caller,
) -> Result<Value, ApiError> {
    let name = t.name.clone().unwrap_or_default();
    core.store.transact(|txn| {
        let key = t.key(&name);
        let old = txn.get(&key).ok_or_else(|| t.not_found(&name))?;
        let mut body = body;
        check_type(t, &mut body)?;
        commit_update(
            core,
            txn,
            t,
            &key,
            &old,
            body,
            caller,
            WriteVerb::Update,
            false,
        )
    })
}

/// The shared tail of every update: preconditions, subresource rules, server-owned metadata,
/// admission, generation, managedFields, then the store's no-op-aware write.
#[allow(clippy::too_many_arguments)]
pub(crate) fn commit_update(
    core: &Arc<Core>,
    txn: &mut Txn<'_>,
    t: &Target<'_>,
    key: &Key,
    old: &Value,
    mut new: Value,
    caller: &Caller,
    verb: WriteVerb,
    managed_done: bool,
) -> Result<Value, ApiError> {
    let name = key.name.as_str();
    let conflict = |why: &str| ApiError::conflict(&t.def.group, &t.def.plural, name, why);
    if let Some(rv) = meta_str(&new, "resourceVersion").filter(|rv| !rv.is_empty())
        && Some(rv) != meta_str(old, "resourceVersion")
    {
        return Err(conflict(
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    if let Some(uid) = meta_str(&new, "uid").filter(|u| !u.is_empty())
        && Some(uid) != meta_str(old, "uid")
    {
        return Err(conflict(&format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta_str(old, "uid").unwrap_or_default()
        )));
    }
    if let Some(body_name) = meta_str(&new, "name").filter(|n| !n.is_empty())
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let managed = new.pointer("/metadata/managedFields").cloned();
    match t.subresource.as_deref() {
        Some("status") => {
            // Only status changes through /status; everything else keeps the stored value.
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            set_meta(&mut new, "managedFields", managed.clone());
        }
        _ if t.def.status => match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        },
        _ => {}
    }
    new["apiVersion"] = old
        .get("apiVersion")
        .cloned()
        .unwrap_or(json!(t.api_version()));
    new["kind"] = json!(t.def.kind);
    for owned in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "name",
        "namespace",
        "resourceVersion",
    ] {
        set_meta(
            &mut new,
            owned,
            old.pointer(&format!("/metadata/{owned}")).cloned(),
        );
    }
    set_meta(&mut new, "selfLink", None);

    let mut causes = Vec::new();
    if meta_str(old, "deletionTimestamp").is_some() {
        let before = finalizers(old);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            causes.push(StatusCause {
                reason: "FieldValueForbidden".into(),
                message: format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
                field: "metadata.finalizers".into(),
            });
        }
    }
    if t.subresource.is_none() {
        builtin::default_object(t.def, &mut new, false);
        causes.extend(builtin::validate(t.def, &new, Some(old)));
    }
    if t.def.is_crd {
        causes.extend(admission::admit_custom(
            t.def,
            &t.version,
            &mut new,
            Some(old),
            caller.strict,
        )?);
    }
    if !causes.is_empty() {
        return Err(t.invalid(name, causes));
    }
    if t.def.tracks_generation && spec_changed(t.def, old, &new) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        set_meta(&mut new, "generation", Some(json!(generation + 1)));
    }
    if !managed_done {
        set_meta(
            &mut new,
            "managedFields",
            old.pointer("/metadata/managedFields").cloned(),
        );
        apply::track_update(
            Some(old),
            &mut new,
            &caller.manager(),
            &t.api_version(),
            t.shape(),
            t.scope(),
            truncate(txn.now()),
        );
    }
    if caller.dry_run {
        return Ok(new);
    }
    let (stored, changed) = txn.put(key.clone(), new, &t.ctx(caller, verb));
    if changed {
        remove_if_done(core, txn, t.def, key, &t.ctx(caller, verb));
    }
    Ok(for_version(&stored, t))
}

fn spec_changed(def: &ResourceDef, old: &Value, new: &Value) -> bool {
    if def.is_crd {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
                m.remove("status");
                m.remove("apiVersion");
            }
            v
        };
        strip(old) != strip(new)
    } else {
        old.get("spec") != new.get("spec")
    }
}
