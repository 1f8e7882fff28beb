//! A minimal OpenAPI v3 document: the operations of every catalog resource, without
//! schemas yet. kubectl reads it before `apply`, `create -f` and `replace` to learn
//! whether the server validates fields itself (the `fieldValidation` query parameter on
//! PATCH); without it kubectl falls back to downloading OpenAPI v2 for client-side
//! validation and fails. Schemas (for `kubectl explain`) come later.
//!
//! The PATCH operations list JSON and merge patch but not strategic merge patch, so that
//! `kubectl apply` builds its strategic patches from its compiled-in types rather than
//! looking for schemas here.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::catalog::{Catalog, Resource};
use crate::discovery::KUBERNETES_VERSION;
use crate::rest::AppState;
use crate::status::{json_response, ApiError};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn operation_id(verb: &str, r: &Resource, namespaced: bool, collection: bool) -> String {
    let group: String = if r.group.is_empty() {
        "Core".into()
    } else {
        r.group
            .split('.')
            .next()
            .unwrap_or("")
            .split('-')
            .map(|p| {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    };
    let version = {
        let mut c = r.version.chars();
        c.next()
            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
            .unwrap_or_default()
    };
    let scope = if namespaced { "Namespaced" } else { "" };
    let suffix = if collection { "Collection" } else { "" };
    format!("{verb}{group}{version}{suffix}{scope}{}", r.kind)
}

fn param(name: &str, location: &str) -> Value {
    let mut p =
        json!({"name": name, "in": location, "schema": {"type": "string", "uniqueItems": true}});
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

/// The paths of one group version.
fn document(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let resources = catalog.resources(group, version);
    if resources.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for r in &resources {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let base = format!("/{}", gv_path(&r.group, &r.version));
        let scope = if r.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let collection = format!("{base}{scope}/{}", r.plural);
        let item = format!("{collection}/{{name}}");
        let mut common = vec![param("pretty", "query")];
        if r.namespaced {
            common.push(param("namespace", "path"));
        }
        let op = |verb: &str, action: &str, coll: bool| {
            json!({
                "operationId": operation_id(verb, r, r.namespaced, coll),
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        let mut patch = op("patch", "patch", false);
        patch["requestBody"] = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        }});
        patch["parameters"] = json!([
            param("dryRun", "query"),
            param("fieldManager", "query"),
            param("fieldValidation", "query"),
            param("force", "query")
        ]);
        let mut item_params = common.clone();
        item_params.push(param("name", "path"));
        // kubectl looks for fieldValidation among the path's parameters.
        item_params.push(param("fieldValidation", "query"));
        paths.insert(
            item,
            json!({
                "get": op("read", "get", false),
                "put": op("replace", "put", false),
                "patch": patch,
                "delete": op("delete", "delete", false),
                "parameters": item_params,
            }),
        );
        let mut coll_params = common.clone();
        coll_params.push(param("fieldValidation", "query"));
        paths.insert(
            collection,
            json!({
                "get": op("list", "list", false),
                "post": op("create", "post", false),
                "delete": op("delete", "deletecollection", true),
                "parameters": coll_params,
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

fn hash(v: &Value) -> String {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: where each group version's document is, with a hash clients cache by.
pub async fn root(State(state): State<Arc<AppState>>) -> Response {
    let catalog = &state.objects.catalog;
    let mut paths = Map::new();
    for g in catalog.groups() {
        for v in &g.versions {
            if let Some(doc) = document(catalog, &g.name, v) {
                let p = gv_path(&g.name, v);
                paths.insert(
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
                );
            }
        }
    }
    json_response(StatusCode::OK, &json!({"paths": paths}))
}

/// `/openapi/v3/api/{version}`
pub async fn core(State(state): State<Arc<AppState>>, Path(version): Path<String>) -> Response {
    respond(document(&state.objects.catalog, "", &version))
}

/// `/openapi/v3/apis/{group}/{version}`
pub async fn group(
    State(state): State<Arc<AppState>>,
    Path((group, version)): Path<(String, String)>,
) -> Response {
    respond(document(&state.objects.catalog, &group, &version).filter(|_| !group.is_empty()))
}

fn respond(doc: Option<Value>) -> Response {
    match doc {
        Some(doc) => json_response(StatusCode::OK, &doc),
        None => ApiError::path_not_found().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        let c = Catalog::builtin();
        let doc = document(&c, "apps", "v1").unwrap();
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(
            item["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert_eq!(
            item["patch"]["operationId"],
            "patchAppsV1NamespacedDeployment"
        );
        assert!(item["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(document(&c, "", "v1").unwrap()["paths"]["/api/v1/namespaces/{name}"].is_object());
        assert!(document(&c, "nope", "v1").is_none());
    }
}
