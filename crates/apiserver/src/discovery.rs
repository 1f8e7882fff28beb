//! Discovery: `/api`, `/apis`, `/apis/{group}`, `/api/v1`, `/apis/{group}/{version}`,
//! both in the legacy form (APIVersions, APIGroupList, APIGroup, APIResourceList) and in
//! the aggregated form (`apidiscovery.k8s.io/v2` APIGroupDiscoveryList) that kubectl 1.32
//! asks for first with `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,...`.
//! Also `/version` and the health endpoints. Everything is generated from the catalog on
//! each request, so resources added at run time show up at once.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::catalog::{Catalog, Resource};
use crate::rest::AppState;
use crate::status::{json_response, ApiError};

/// The Kubernetes version this server presents itself as.
pub const KUBERNETES_VERSION: &str = "v1.32.0";
const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version the client accepts, if any (v2 preferred).
fn aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let wants = |v: &str| {
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| h.split(','))
            .any(|alt| {
                let params: Vec<&str> = alt.split(';').map(str::trim).collect();
                params.contains(&"g=apidiscovery.k8s.io")
                    && params.contains(&"as=APIGroupDiscoveryList")
                    && params.contains(&v)
            })
    };
    if wants("v=v2") {
        Some("v2")
    } else if wants("v=v2beta1") {
        Some("v2beta1")
    } else {
        None
    }
}

fn aggregated_response(version: &str, body: &Value) -> Response {
    let (ct, api_version) = match version {
        "v2" => (AGGREGATED_V2, "apidiscovery.k8s.io/v2"),
        _ => (AGGREGATED_V2BETA1, "apidiscovery.k8s.io/v2beta1"),
    };
    let mut body = body.clone();
    body["apiVersion"] = json!(api_version);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, ct), (header::VARY, "Accept")],
        bytes,
    )
        .into_response()
}

/// One resource in the aggregated form.
fn aggregated_resource(r: &Resource) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let (group, version, kind) = s.kind(r);
            json!({
                "subresource": s.name(),
                "responseKind": {"group": group, "version": version, "kind": kind},
                "verbs": s.verbs(),
            })
        })
        .collect();
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

/// The aggregated document for the core group (`core`) or for every named group.
fn aggregated_list(catalog: &Catalog, core: bool) -> Value {
    let items: Vec<Value> = catalog
        .groups()
        .into_iter()
        .filter(|g| g.name.is_empty() == core)
        .map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = catalog
                        .resources(&g.name, v)
                        .iter()
                        .map(|r| aggregated_resource(r))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !g.name.is_empty() {
                metadata["name"] = json!(g.name);
            }
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "metadata": {}, "items": items})
}

/// The legacy entries of one group version: each resource, then its subresources.
fn resource_list(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let resources = catalog.resources(group, version);
    if resources.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in &resources {
        let mut v = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        out.push(v);
        for s in &r.subresources {
            let (group, version, kind) = s.kind(r);
            let mut sv = json!({
                "name": format!("{}/{}", r.plural, s.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": s.verbs(),
            });
            if group != r.group || version != r.version {
                sv["group"] = json!(group);
                sv["version"] = json!(version);
            }
            out.push(sv);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": out,
    }))
}

fn api_group(g: &crate::catalog::Group) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{}/{v}", g.name), "version": v}))
        .collect();
    json!({
        "name": g.name,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/api`
pub async fn api(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let catalog = &state.objects.catalog;
    if let Some(v) = aggregated(&headers) {
        return aggregated_response(v, &aggregated_list(catalog, true));
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }),
    )
}

/// `/apis`
pub async fn apis(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let catalog = &state.objects.catalog;
    if let Some(v) = aggregated(&headers) {
        return aggregated_response(v, &aggregated_list(catalog, false));
    }
    let groups: Vec<Value> = catalog
        .groups()
        .iter()
        .filter(|g| !g.name.is_empty())
        .map(api_group)
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

/// `/apis/{group}`
pub async fn group(State(state): State<Arc<AppState>>, Path(group): Path<String>) -> Response {
    match state
        .objects
        .catalog
        .groups()
        .iter()
        .find(|g| g.name == group && !g.name.is_empty())
    {
        Some(g) => {
            let mut body = api_group(g);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            json_response(StatusCode::OK, &body)
        }
        None => ApiError::path_not_found().into_response(),
    }
}

/// `/api/{version}`
pub async fn core_version(
    State(state): State<Arc<AppState>>,
    Path(version): Path<String>,
) -> Response {
    match resource_list(&state.objects.catalog, "", &version) {
        Some(body) => json_response(StatusCode::OK, &body),
        None => ApiError::path_not_found().into_response(),
    }
}

/// `/apis/{group}/{version}`
pub async fn group_version(
    State(state): State<Arc<AppState>>,
    Path((group, version)): Path<(String, String)>,
) -> Response {
    match resource_list(&state.objects.catalog, &group, &version).filter(|_| !group.is_empty()) {
        Some(body) => json_response(StatusCode::OK, &body),
        None => ApiError::path_not_found().into_response(),
    }
}

/// `/version`
pub async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "32",
            "gitVersion": format!("{KUBERNETES_VERSION}+cloudlet-{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "n/a",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, goarch()),
        }),
    )
}

fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/healthz`, `/livez`, `/readyz`: "ok" while the store answers.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.objects.store.revision().await {
        Ok(_) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("[-]etcd failed: {e}\nhealthz check failed"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_is_chosen_by_accept() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json".parse().unwrap());
        assert_eq!(aggregated(&h), Some("v2"));
        h.insert(header::ACCEPT, "application/json, */*".parse().unwrap());
        assert_eq!(aggregated(&h), None);
    }

    #[test]
    fn documents_cover_the_catalog() {
        let c = Catalog::builtin();
        let core = aggregated_list(&c, true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap()
            .clone();
        assert_eq!(pods["shortNames"], json!(["po"]));
        let apps = resource_list(&c, "apps", "v1").unwrap();
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments/scale"));
        let groups = aggregated_list(&c, false);
        assert!(groups["items"].as_array().unwrap().len() >= 10);
    }
}
