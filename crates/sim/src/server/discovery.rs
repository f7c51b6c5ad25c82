//! Discovery documents. Only the plain (non-aggregated) forms are served, always as
//! `application/json`; clients asking for aggregated discovery first fall back to these, as they
//! do against servers older than 1.26.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::json_response;
use crate::error::ApiError;
use crate::resources::{ResourceTable, api_version};

pub fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0-sim",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-04-23T00:00:00Z",
            "goVersion": "go1.24.2",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

pub fn api_versions() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }),
    )
}

fn group_value(table: &ResourceTable, group: &str) -> Value {
    let mut versions: Vec<String> = Vec::new();
    for def in table.all().iter().filter(|d| d.group == group) {
        for v in &def.versions {
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
    }
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": api_version(group, v), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": entries,
        "preferredVersion": entries.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn group_list(table: &ResourceTable) -> Response {
    let groups: Vec<Value> = table
        .groups()
        .iter()
        .filter(|g| !g.is_empty())
        .map(|g| group_value(table, g))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

pub fn group(table: &ResourceTable, group: &str) -> Result<Response, ApiError> {
    if group.is_empty() || !table.groups().iter().any(|g| g == group) {
        return Err(ApiError::no_route());
    }
    let mut value = group_value(table, group);
    value["kind"] = json!("APIGroup");
    value["apiVersion"] = json!("v1");
    Ok(json_response(StatusCode::OK, &value))
}

pub fn resource_list(table: &ResourceTable, group: &str, version: &str) -> Response {
    let mut resources = Vec::new();
    for def in table
        .all()
        .iter()
        .filter(|d| d.group == group && d.serves(version))
    {
        let mut main = json!({
            "name": def.plural,
            "singularName": def.singular,
            "namespaced": def.namespaced,
            "kind": def.kind,
            "verbs": def.verbs(),
        });
        if !def.short_names.is_empty() {
            main["shortNames"] = json!(def.short_names);
        }
        if !def.categories.is_empty() {
            main["categories"] = json!(def.categories);
        }
        resources.push(main);
        if def.status {
            resources.push(json!({
                "name": format!("{}/status", def.plural),
                "singularName": "",
                "namespaced": def.namespaced,
                "kind": def.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if def.scale.is_some() {
            resources.push(json!({
                "name": format!("{}/scale", def.plural),
                "singularName": "",
                "namespaced": def.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": api_version(group, version),
            "resources": resources,
        }),
    )
}
