//! Per-verb request handling: decoding bodies by content type, reads, and calls into the
//! registry for writes.

use std::sync::Arc;

use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::{App, Req, ResourcePath, json_response, watch};
use crate::error::ApiError;
use crate::registry::{self, Caller, DeleteOpts, PatchKind, Target, for_version, meta_str};
use crate::resources::{Behaviour, ResourceDef};
use crate::selector::{FieldSelector, LabelSelector};
use crate::table::{IncludeObject, Table};

pub async fn handle(
    app: &Arc<App>,
    req: &Req,
    def: &ResourceDef,
    path: ResourcePath,
) -> Result<Response, ApiError> {
    let t = Target {
        def,
        version: path.version.clone(),
        namespace: path.namespace.clone(),
        name: path.name.clone(),
        subresource: path.subresource.clone(),
    };
    match def.behaviour {
        Behaviour::TokenReview | Behaviour::AccessReview | Behaviour::SelfReview => {
            review(app, req, &t)
        }
        Behaviour::PodMetrics => metrics(app, req, &t),
        Behaviour::Stored => stored(app, req, &t).await,
    }
}

fn caller(req: &Req) -> Caller {
    Caller {
        field_manager: req
            .param("fieldManager")
            .filter(|m| !m.is_empty())
            .map(String::from),
        user_agent: req.user_agent.clone(),
        dry_run: req.param("dryRun").is_some_and(|d| !d.is_empty()),
        strict: req.param("fieldValidation") == Some("Strict"),
    }
}

async fn stored(app: &Arc<App>, req: &Req, t: &Target<'_>) -> Result<Response, ApiError> {
    let core = &app.core;
    let def = t.def;
    match t.subresource.as_deref() {
        None => {}
        Some("status") if def.status => {}
        Some("scale") if def.scale.is_some() => {}
        Some(_) => return Err(ApiError::no_route()),
    }
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    let caller = caller(req);
    match (&req.method, t.name.as_deref(), t.subresource.as_deref()) {
        (&Method::GET, None, None) if req.flag("watch") => watch::watch(app, req, t),
        (&Method::GET, None, None) => list(app, req, t),
        (&Method::POST, None, None) => {
            let body = decode_body(req)?;
            let created = registry::create(core, t, body, &caller)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (&Method::DELETE, None, None) => delete_collection(app, req, t, &caller),
        (&Method::GET, Some(name), None | Some("status")) => {
            let obj = core
                .store
                .get(&def.resource_ref(&t.version), t.namespace.as_deref(), name)
                .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name))?;
            let obj = for_version(&obj, t);
            match table(app, req, t)? {
                Some(table) if t.subresource.is_none() => {
                    let rv = obj.pointer("/metadata/resourceVersion").cloned();
                    ok(table.render(&[obj], json!({"resourceVersion": rv})))
                }
                _ => ok(obj),
            }
        }
        (&Method::GET, Some(_), Some("scale")) => ok(registry::get_scale(core, t)?),
        (&Method::PUT, Some(_), Some("scale")) => ok(registry::write_scale(
            core,
            t,
            decode_body(req)?,
            None,
            &caller,
        )?),
        (&Method::PATCH, Some(_), Some("scale")) => {
            let (kind, body) = decode_patch(req)?;
            ok(registry::write_scale(core, t, body, Some(kind), &caller)?)
        }
        (&Method::PUT, Some(_), None | Some("status")) => {
            ok(registry::update(core, t, decode_body(req)?, &caller)?)
        }
        (&Method::PATCH, Some(name), None | Some("status")) => {
            let (kind, body) = decode_patch(req)?;
            let existed = core
                .store
                .get(&def.resource_ref(&t.version), t.namespace.as_deref(), name)
                .is_some();
            let result = registry::patch(core, t, kind, body, &caller)?;
            let code = if existed || caller.dry_run {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(json_response(code, &result))
        }
        (&Method::DELETE, Some(_), None) => {
            let opts = delete_opts(req)?;
            ok(registry::delete(core, t, &opts, &caller)?)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The Table a GET asks for in its `Accept` header, if it asks for one.
fn table(app: &Arc<App>, req: &Req, t: &Target<'_>) -> Result<Option<Table>, ApiError> {
    let Some(version) = req
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::table::negotiate)
    else {
        return Ok(None);
    };
    Ok(Some(Table {
        version,
        columns: t.def.printer_columns(&t.version),
        include: IncludeObject::parse(req.param("includeObject"))?,
        now: app.core.clock.now(),
    }))
}

/// Decodes a POST/PUT body: JSON, or YAML (which the real server also accepts).
fn decode_body(req: &Req) -> Result<Value, ApiError> {
    match req.content_type().as_str() {
        "" | "application/json" | "*/*" => parse_json(&req.body),
        "application/yaml" => parse_yaml(&req.body),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn decode_patch(req: &Req) -> Result<(PatchKind, Value), ApiError> {
    let kind = match req.content_type().as_str() {
        "application/merge-patch+json" => PatchKind::Merge,
        "application/json-patch+json" => PatchKind::Json,
        "application/strategic-merge-patch+json" => PatchKind::Strategic,
        "application/apply-patch+yaml" => {
            let force = req.flag("force");
            return Ok((PatchKind::Apply { force }, parse_yaml(&req.body)?));
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    Ok((kind, parse_json(&req.body)?))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("json: cannot decode request body: {e}")))
}

/// YAML or JSON (JSON is parsed directly: faster, and exact for numbers).
pub fn parse_yaml(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("request body is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

fn delete_opts(req: &Req) -> Result<DeleteOpts, ApiError> {
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(&req.body)?
    };
    let int = |v: Option<&str>| -> Result<Option<i64>, ApiError> {
        v.map(|s| {
            s.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {s}")))
        })
        .transpose()
    };
    let mut propagation = req
        .param("propagationPolicy")
        .map(String::from)
        .or_else(|| {
            body.get("propagationPolicy")
                .and_then(Value::as_str)
                .map(String::from)
        });
    let orphan = req
        .param("orphanDependents")
        .map(|v| v == "true")
        .or_else(|| body.get("orphanDependents").and_then(Value::as_bool));
    if propagation.is_none() && orphan == Some(true) {
        propagation = Some("Orphan".into());
    }
    if let Some(p) = &propagation
        && !matches!(p.as_str(), "Background" | "Foreground" | "Orphan")
    {
        return Err(ApiError::invalid(
            "DeleteOptions",
            "",
            "",
            vec![crate::error::StatusCause {
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    "Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                ),
                field: "propagationPolicy".into(),
            }],
        ));
    }
    Ok(DeleteOpts {
        grace_period_seconds: int(req.param("gracePeriodSeconds"))?
            .or_else(|| body.get("gracePeriodSeconds").and_then(Value::as_i64)),
        propagation_policy: propagation,
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        precondition_resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
    })
}

pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn from_request(req: &Req, kind: &str) -> Result<Self, ApiError> {
        Ok(Self {
            labels: LabelSelector::parse(req.param("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse(req.param("fieldSelector").unwrap_or_default(), kind)?,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches_object(obj)
    }
}

/// Built-in kinds' list items carry no kind/apiVersion, as the real server encodes them.
pub fn list_item(t: &Target<'_>, obj: &Value) -> Value {
    let mut item = for_version(obj, t);
    if !t.def.is_crd
        && let Some(m) = item.as_object_mut()
    {
        m.remove("kind");
        m.remove("apiVersion");
    }
    item
}

fn list(app: &Arc<App>, req: &Req, t: &Target<'_>) -> Result<Response, ApiError> {
    let selectors = Selectors::from_request(req, &t.def.kind)?;
    let limit = match req.param("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
        None => 0,
    };
    let after = match req.param("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(decode_continue(token)?),
        None => None,
    };
    let (rv, objects) = app.core.store.transact(|txn| {
        (
            txn.resource_version(),
            txn.list(&t.def.group, &t.def.plural, t.namespace.as_deref()),
        )
    });
    let matching: Vec<&Arc<Value>> = objects
        .iter()
        .filter(|o| selectors.matches(o))
        .filter(|o| {
            after
                .as_ref()
                .is_none_or(|after| object_position(o) > *after)
        })
        .collect();
    let page_len = if limit > 0 {
        limit.min(matching.len())
    } else {
        matching.len()
    };
    let table = table(app, req, t)?;
    let items: Vec<Value> = matching[..page_len]
        .iter()
        .map(|o| match table {
            Some(_) => for_version(o, t),
            None => list_item(t, o),
        })
        .collect();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if page_len < matching.len()
        && let Some(last) = matching[..page_len].last()
    {
        let (ns, name) = object_position(last);
        metadata["continue"] = json!(encode_continue(&ns, &name));
        metadata["remainingItemCount"] = json!(matching.len() - page_len);
    }
    if let Some(table) = table {
        return Ok(json_response(
            StatusCode::OK,
            &table.render(&items, metadata),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": t.def.list_kind(), "apiVersion": t.api_version(), "metadata": metadata, "items": items}),
    ))
}

fn object_position(obj: &Value) -> (String, String) {
    (
        meta_str(obj, "namespace").unwrap_or_default().to_string(),
        meta_str(obj, "name").unwrap_or_default().to_string(),
    )
}

fn encode_continue(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let text = String::from_utf8(bytes.ok_or_else(bad)?).map_err(|_| bad())?;
    let (ns, name) = text.split_once('/').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

fn delete_collection(
    app: &Arc<App>,
    req: &Req,
    t: &Target<'_>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let selectors = Selectors::from_request(req, &t.def.kind)?;
    let opts = delete_opts(req)?;
    let names: Vec<String> = app
        .core
        .store
        .list(&t.def.resource_ref(&t.version), t.namespace.as_deref())
        .iter()
        .filter(|o| selectors.matches(o))
        .filter_map(|o| meta_str(o, "name").map(String::from))
        .collect();
    let mut items = Vec::new();
    for name in names {
        let mut target = t.clone();
        target.name = Some(name);
        // Objects deleted concurrently are skipped, as on a real server.
        if let Ok(obj) = registry::delete(&app.core, &target, &opts, caller) {
            items.push(list_item(t, &obj));
        }
    }
    let rv = app.core.store.resource_version();
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": t.def.list_kind(), "apiVersion": t.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
    ))
}

fn review(app: &Arc<App>, req: &Req, t: &Target<'_>) -> Result<Response, ApiError> {
    if req.method != Method::POST || t.name.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    let mut body = decode_body(req)?;
    if !body.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    let auth = app.auth.read().unwrap_or_else(|p| p.into_inner()).clone();
    let status = match t.def.behaviour {
        Behaviour::TokenReview => auth.review_token(&body),
        Behaviour::SelfReview => auth.review_self(bearer_token(req)).ok_or_else(|| {
            ApiError::new(401, "Unauthorized", "Unauthorized: invalid bearer token")
        })?,
        _ => auth.review_access(&body),
    };
    body["status"] = status;
    body["apiVersion"] = json!(t.api_version());
    body["kind"] = json!(t.def.kind);
    if body.get("metadata").is_none_or(|m| !m.is_object()) {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    Ok(json_response(StatusCode::CREATED, &body))
}

/// The token of an `Authorization: Bearer` header, if the request has one.
fn bearer_token(req: &Req) -> Option<&str> {
    req.headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn metrics(app: &Arc<App>, req: &Req, t: &Target<'_>) -> Result<Response, ApiError> {
    if req.method != Method::GET || t.subresource.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    let store = &app.core.store;
    let pods_ref = crate::resources::ResourceRef::new("", "v1", "pods");
    let selectors = Selectors::from_request(req, "PodMetrics")?;
    let render = |pod: &Value| -> Option<Value> {
        let ns = meta_str(pod, "namespace")?;
        let name = meta_str(pod, "name")?;
        let usage = store.pod_usage(ns, name)?;
        let containers: Vec<Value> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .take(1)
            .map(|c| json!({"name": c.get("name").cloned().unwrap_or(json!("main")), "usage": {"cpu": usage.cpu, "memory": usage.memory}}))
            .collect();
        Some(json!({
            "kind": "PodMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": pod.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                "creationTimestamp": registry::rfc3339(app.core.clock.now()),
            },
            "timestamp": registry::rfc3339(usage.sim_time),
            "window": "10s",
            "containers": containers,
        }))
    };
    match &t.name {
        Some(name) => {
            let pod = store.get(&pods_ref, t.namespace.as_deref(), name);
            let rendered = pod
                .as_ref()
                .and_then(render)
                .ok_or_else(|| ApiError::not_found("metrics.k8s.io", "pods", name))?;
            Ok(json_response(StatusCode::OK, &rendered))
        }
        None => {
            let items: Vec<Value> = store
                .list(&pods_ref, t.namespace.as_deref())
                .iter()
                .filter(|p| selectors.matches(p))
                .filter_map(render)
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}),
            ))
        }
    }
}
