//! The operations of catalog resources, in OpenAPI 3.0 or Swagger 2.0 form.
//!
//! What clients read from them: kubectl's `apply`, `create -f` and `replace` look for the
//! `fieldValidation` parameter (the server validates fields itself, so kubectl does not
//! fall back to client-side validation with OpenAPI v2); `kubectl explain` finds a
//! resource's group, version and kind in `x-kubernetes-group-version-kind` of the
//! operations on its collection or item path.
//!
//! The PATCH operations list JSON and merge patch but not strategic merge patch: kubectl
//! would then build strategic patches from these schemas, which (coming from
//! k8s-openapi) lack the `x-kubernetes-patch-merge-key` and `-patch-strategy` markers and
//! would replace lists that must be merged (containers, ports, env). Without it kubectl
//! uses its compiled-in types for built-in kinds and merge patch for custom ones.

use serde_json::{json, Map, Value};

use super::schemas::{Flavor, Names};
use crate::catalog::Resource;

pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn operation_id(verb: &str, r: &Resource, collection: bool) -> String {
    let group: String = if r.group.is_empty() {
        "Core".into()
    } else {
        r.group
            .split('.')
            .next()
            .unwrap_or("")
            .split('-')
            .map(capitalize)
            .collect()
    };
    let version = capitalize(&r.version);
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let suffix = if collection { "Collection" } else { "" };
    format!("{verb}{group}{version}{suffix}{scope}{}", r.kind)
}

fn param(flavor: Flavor, name: &str, location: &str) -> Value {
    let mut p = match flavor {
        Flavor::V3 => {
            json!({"name": name, "in": location, "schema": {"type": "string", "uniqueItems": true}})
        }
        Flavor::V2 => json!({"name": name, "in": location, "type": "string", "uniqueItems": true}),
    };
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

const PATCH_TYPES: [&str; 2] = [
    "application/json-patch+json",
    "application/merge-patch+json",
];

/// Builds the operations of one resource.
struct Ops<'a> {
    r: &'a Resource,
    flavor: Flavor,
    gvk: Value,
    kind: Option<Value>,
    list: Option<Value>,
}

impl Ops<'_> {
    fn op(&self, verb: &str, action: &str, collection: bool, body: Option<&Value>) -> Value {
        let mut op = json!({
            "operationId": operation_id(verb, self.r, collection),
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": self.gvk,
        });
        if self.flavor == Flavor::V2 {
            op["consumes"] = json!(["*/*"]);
            op["produces"] = json!(["application/json", "application/yaml"]);
            op["schemes"] = json!(["https"]);
        }
        if let Some(schema) = body {
            match self.flavor {
                Flavor::V3 => {
                    op["responses"]["200"]["content"] =
                        json!({"application/json": {"schema": schema}})
                }
                Flavor::V2 => op["responses"]["200"]["schema"] = schema.clone(),
            }
        }
        op
    }

    /// An operation taking the object in its body (create, replace).
    fn write(&self, verb: &str, action: &str) -> Value {
        let mut op = self.op(verb, action, false, self.kind.as_ref());
        if let Some(schema) = &self.kind {
            match self.flavor {
                Flavor::V3 => {
                    op["requestBody"] =
                        json!({"content": {"*/*": {"schema": schema}}, "required": true})
                }
                Flavor::V2 => {
                    op["parameters"] =
                        json!([{"name": "body", "in": "body", "required": true, "schema": schema}])
                }
            }
        }
        op
    }

    fn patch(&self) -> Value {
        let mut op = self.op("patch", "patch", false, self.kind.as_ref());
        let mut params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|p| param(self.flavor, p, "query"))
            .collect();
        let body = json!({"type": "object"});
        match self.flavor {
            Flavor::V3 => {
                let content: Map<String, Value> = PATCH_TYPES
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": body})))
                    .collect();
                op["requestBody"] = json!({"content": content, "required": true});
            }
            Flavor::V2 => {
                op["consumes"] = json!(PATCH_TYPES);
                params.insert(
                    0,
                    json!({"name": "body", "in": "body", "required": true, "schema": body}),
                );
            }
        }
        op["parameters"] = json!(params);
        op
    }
}

/// Adds the collection and item paths of `r` to `paths`; `names` are its schemas.
pub fn add(paths: &mut Map<String, Value>, r: &Resource, flavor: Flavor, names: Option<&Names>) {
    let ops = Ops {
        r,
        flavor,
        gvk: json!({"group": r.group, "version": r.version, "kind": r.kind}),
        kind: names.map(|n| flavor.reference(&n.kind)),
        list: names
            .and_then(|n| n.list.as_deref())
            .map(|l| flavor.reference(l)),
    };
    let base = format!("/{}", gv_path(&r.group, &r.version));
    let scope = if r.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let collection = format!("{base}{scope}/{}", r.plural);
    let item = format!("{collection}/{{name}}");
    let mut common = vec![param(flavor, "pretty", "query")];
    if r.namespaced {
        common.push(param(flavor, "namespace", "path"));
    }

    let mut item_ops = Map::new();
    let mut coll_ops = Map::new();
    if r.allows("get") {
        item_ops.insert(
            "get".into(),
            ops.op("read", "get", false, ops.kind.as_ref()),
        );
    }
    if r.allows("update") {
        item_ops.insert("put".into(), ops.write("replace", "put"));
    }
    if r.allows("patch") {
        item_ops.insert("patch".into(), ops.patch());
    }
    if r.allows("delete") {
        item_ops.insert("delete".into(), ops.op("delete", "delete", false, None));
    }
    if r.allows("list") {
        coll_ops.insert(
            "get".into(),
            ops.op("list", "list", false, ops.list.as_ref()),
        );
    }
    if r.allows("create") {
        coll_ops.insert("post".into(), ops.write("create", "post"));
    }
    if r.allows("deletecollection") {
        coll_ops.insert(
            "delete".into(),
            ops.op("delete", "deletecollection", true, None),
        );
    }
    // kubectl looks for fieldValidation among the path's parameters.
    for (path, mut path_ops, extra) in [
        (item, item_ops, Some(param(flavor, "name", "path"))),
        (collection, coll_ops, None),
    ] {
        if path_ops.is_empty() {
            continue;
        }
        let mut params = common.clone();
        params.extend(extra);
        params.push(param(flavor, "fieldValidation", "query"));
        path_ops.insert("parameters".into(), json!(params));
        paths.insert(path, Value::Object(path_ops));
    }
}
