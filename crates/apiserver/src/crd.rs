//! CustomResourceDefinitions: a CRD's served versions become catalog entries, so custom
//! resources go through the same generic handlers as built-in kinds (discovery, CRUD,
//! merge and JSON patch, list/watch, status subresource, Table columns), and their
//! objects are validated against the version's structural schema (types, required
//! fields, enums, bounds, defaults; unknown fields pruned unless preserved).
//!
//! Every server keeps its catalog in step with the store by watching the CRDs, so a CRD
//! created through one API server is served by all of them; the server that wrote it
//! also registers it at once.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use store::{Event, RangeRequest, Revision};

use crate::catalog::{Catalog, NameRule, PrinterColumn, Resource, Subresource};
use crate::keys;
use crate::meta;
use crate::objects::{decode, Objects};
use crate::status::{ApiError, Cause};

pub fn is_crd(res: &Resource) -> bool {
    res.group == "apiextensions.k8s.io" && res.kind == "CustomResourceDefinition"
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn versions(crd: &Value) -> Vec<Value> {
    crd["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Defaults and status of a CRD, as the apiextensions server and its controllers set
/// them: `singular` and `listKind` defaulted, names accepted, Established.
pub fn normalize(crd: &mut Value) {
    let kind = s(&crd["spec"]["names"], "kind").to_string();
    if let Some(names) = crd["spec"]["names"].as_object_mut() {
        names
            .entry("singular")
            .or_insert_with(|| json!(kind.to_ascii_lowercase()));
        names
            .entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
    let storage: Vec<Value> = versions(crd)
        .iter()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    let old_time = |t: &str| {
        crd["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == t))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_string)
            .unwrap_or_else(meta::now)
    };
    let (accepted_time, established_time) = (old_time("NamesAccepted"), old_time("Established"));
    let mut stored_versions = crd["status"]["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for v in storage {
        if !stored_versions.contains(&v) {
            stored_versions.push(v);
        }
    }
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": accepted_time},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": established_time},
        ],
        "storedVersions": stored_versions,
    });
}

/// What makes a CRD invalid (on top of the metadata checks every object gets).
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let (group, plural, kind) = (
        s(spec, "group"),
        s(&spec["names"], "plural"),
        s(&spec["names"], "kind"),
    );
    if group.is_empty() || !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    if !crate::meta::validate_name(NameRule::Label, plural).is_empty() {
        causes.push(Cause::invalid(
            "spec.names.plural",
            plural,
            "a lowercase RFC 1123 label is required",
        ));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind", ""));
    }
    let name = meta::name(crd);
    if name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if !matches!(s(spec, "scope"), "Namespaced" | "Cluster") {
        causes.push(Cause::invalid(
            "spec.scope",
            s(spec, "scope"),
            "must be Namespaced or Cluster",
        ));
    }
    let versions = versions(crd);
    if versions.is_empty() {
        causes.push(Cause::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    } else if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            "",
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vname = s(v, "name");
        if !crate::meta::validate_name(NameRule::Label, vname).is_empty() || seen.contains(&vname) {
            causes.push(Cause::invalid(
                &format!("spec.versions[{i}].name"),
                vname,
                "must be a unique RFC 1123 label",
            ));
        }
        seen.push(vname);
        if !v["schema"]["openAPIV3Schema"].is_object() {
            causes.push(Cause::required(
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            ));
        }
    }
    if Catalog::builtin()
        .all()
        .iter()
        .any(|r| r.group == group && r.plural == plural)
    {
        causes.push(Cause::invalid(
            "spec.names.plural",
            plural,
            "is served by a built-in API",
        ));
    }
    causes
}

/// The catalog entries of the CRD's served versions.
pub fn resources(crd: &Value) -> Vec<Resource> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    versions(crd)
        .iter()
        .filter(|v| v["served"] != false)
        .map(|v| {
            let mut subresources = Vec::new();
            if v["subresources"]["status"].is_object() {
                subresources.push(Subresource::Status);
            }
            let printer_columns = v["additionalPrinterColumns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: s(c, "name").to_string(),
                            kind: s(c, "type").to_string(),
                            json_path: s(c, "jsonPath").to_string(),
                            priority: c["priority"].as_u64().unwrap_or(0).min(255) as u8,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Resource {
                group: s(spec, "group").to_string(),
                version: s(v, "name").to_string(),
                kind: s(names, "kind").to_string(),
                plural: s(names, "plural").to_string(),
                singular: s(names, "singular").to_string(),
                short_names: strings(&names["shortNames"]),
                namespaced: s(spec, "scope") == "Namespaced",
                verbs: [
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                    "watch",
                ]
                .map(String::from)
                .to_vec(),
                categories: strings(&names["categories"]),
                subresources,
                name_rule: NameRule::Subdomain,
                generation: true,
                field_selectors: Vec::new(),
                builtin: false,
                return_deleted: true,
                stored: true,
                schema: Some(Arc::new(v["schema"]["openAPIV3Schema"].clone())),
                printer_columns,
            }
        })
        .collect()
}

/// Serves the CRD's versions (replacing what was served for its group and plural).
pub fn register(catalog: &Catalog, crd: &Value) {
    let spec = &crd["spec"];
    catalog.remove_custom(s(spec, "group"), s(&spec["names"], "plural"));
    if meta::is_deleting(crd) {
        return;
    }
    for r in resources(crd) {
        catalog.add(r);
    }
}

/// Registers every stored CRD; returns the revision it read them at.
pub async fn load(objects: &Objects) -> Result<Revision, ApiError> {
    let Some(res) =
        objects
            .catalog
            .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return Ok(0);
    };
    let page = objects.list(&res, "", &Default::default()).await?;
    for crd in &page.items {
        register(&objects.catalog, crd);
    }
    Ok(page.revision)
}

/// Keeps the catalog in step with the stored CRDs from revision `after` on (for CRDs
/// written through other API servers). Runs until the store ends the watch.
pub async fn sync(objects: Objects, mut after: Revision) {
    let Some(res) =
        objects
            .catalog
            .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return;
    };
    let prefix = keys::collection_prefix(&res, None);
    loop {
        let mut watch = match objects.store.watch(&prefix, after).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("watch custom resource definitions: {e}");
                return;
            }
        };
        while let Some(batch) = watch.next().await {
            let batch = match batch {
                Ok(b) => b,
                Err(store::Error::Compacted { .. }) => {
                    // Missed events: read them all again.
                    match load(&objects).await {
                        Ok(rev) => after = rev,
                        Err(e) => tracing::warn!("reload custom resource definitions: {e}"),
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!("watch custom resource definitions: {e}");
                    return;
                }
            };
            after = batch.revision;
            for event in &batch.events {
                match event {
                    Event::Put { kv, .. } => match decode(kv) {
                        Ok(crd) => register(&objects.catalog, &crd),
                        Err(e) => tracing::warn!("custom resource definition {}: {e}", kv.key),
                    },
                    Event::Delete {
                        prev: Some(prev), ..
                    } => {
                        if let Ok(crd) = decode(prev) {
                            let spec = &crd["spec"];
                            objects
                                .catalog
                                .remove_custom(s(spec, "group"), s(&spec["names"], "plural"));
                        }
                    }
                    Event::Delete { .. } => {}
                }
            }
        }
    }
}

/// Deletes every object of a deleted CRD (upstream's customresourcecleanup finalizer).
pub async fn delete_objects(objects: &Objects, crd: &Value) -> Result<(), ApiError> {
    let spec = &crd["spec"];
    objects
        .catalog
        .remove_custom(s(spec, "group"), s(&spec["names"], "plural"));
    let Some(res) = resources(crd).into_iter().next() else {
        return Ok(());
    };
    let prefix = keys::resource_prefix(&res);
    let all = objects
        .store
        .range(RangeRequest {
            prefix,
            ..Default::default()
        })
        .await
        .map_err(|e| ApiError::from_store(&res, "", e))?;
    for kv in all.kvs {
        match objects.store.delete(&kv.key, 0).await {
            Ok(_) | Err(store::Error::NotFound(_)) => {}
            Err(e) => return Err(ApiError::from_store(&res, "", e)),
        }
    }
    Ok(())
}

/// Validates a custom object against its structural schema: applies defaults, prunes
/// unknown fields (apiVersion, kind and metadata are always kept) and returns what is
/// invalid. Regular expressions (`pattern`) and formats are not checked yet.
pub fn apply_schema(res: &Resource, obj: &mut Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(schema) = &res.schema else {
        return causes;
    };
    let Value::Object(map) = obj else {
        return causes;
    };
    let kept: Vec<(String, Value)> = ["apiVersion", "kind", "metadata"]
        .iter()
        .filter_map(|k| map.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    check(schema, obj, "", &mut causes);
    if let Value::Object(map) = obj {
        map.extend(kept);
    }
    causes
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, v: &mut Value, path: &str, causes: &mut Vec<Cause>) {
    let field = if path.is_empty() { "<root>" } else { path };
    let want = s(schema, "type");
    let have = type_name(v);
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    let type_ok = match want {
        "" => true,
        _ if int_or_string => matches!(have, "integer" | "string"),
        "number" => matches!(have, "number" | "integer"),
        w => w == have,
    };
    if !type_ok {
        causes.push(Cause::invalid_value(
            field,
            v,
            &format!("{field} in body must be of type {want}: {have:?}"),
        ));
        return;
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(v) {
            let allowed: Vec<String> = options.iter().map(Value::to_string).collect();
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: field.to_string(),
                message: format!(
                    "Unsupported value: {v}: supported values: {}",
                    allowed.join(", ")
                ),
            });
        }
    }
    if let Some(n) = v.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            causes.push(Cause::invalid_value(
                field,
                v,
                &format!(
                    "{field} in body should be greater than or equal to {}",
                    schema["minimum"]
                ),
            ));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            causes.push(Cause::invalid_value(
                field,
                v,
                &format!(
                    "{field} in body should be less than or equal to {}",
                    schema["maximum"]
                ),
            ));
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if schema["maxLength"].as_u64().is_some_and(|m| len > m) {
            causes.push(Cause::invalid(
                field,
                text,
                &format!(
                    "{field} in body should be at most {} chars long",
                    schema["maxLength"]
                ),
            ));
        }
        if schema["minLength"].as_u64().is_some_and(|m| len < m) {
            causes.push(Cause::invalid(
                field,
                text,
                &format!(
                    "{field} in body should be at least {} chars long",
                    schema["minLength"]
                ),
            ));
        }
    }
    match v {
        Value::Object(map) => check_object(schema, map, path, causes),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|i| i.is_object()) {
                for (i, item) in items.iter_mut().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), causes);
                }
            }
        }
        _ => {}
    }
}

fn check_object(schema: &Value, map: &mut Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    let props = schema["properties"].as_object();
    // Defaults for missing properties, then nulls dropped where the schema does not allow them.
    if let Some(props) = props {
        for (k, p) in props {
            if !map.contains_key(k) {
                if let Some(d) = p.get("default") {
                    map.insert(k.clone(), d.clone());
                }
            }
        }
        map.retain(|k, v| !(v.is_null() && props.get(k).is_some_and(|p| p["nullable"] != true)));
    }
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let sub = props.and_then(|p| p.get(&k)).or(additional);
        match sub {
            Some(sub) => {
                if let Some(v) = map.get_mut(&k) {
                    check(sub, v, &join(&k), causes);
                }
            }
            None if preserve || schema.get("additionalProperties") == Some(&Value::Bool(true)) => {}
            None => {
                map.remove(&k);
            }
        }
    }
    for req in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(req) {
            causes.push(Cause::required(&join(req), ""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "required": ["size"], "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}}}]}
        })
    }

    #[test]
    fn definitions_become_catalog_entries() {
        let c = Catalog::builtin();
        let mut d = crd();
        assert!(validate(&d).is_empty(), "{:?}", validate(&d));
        normalize(&mut d);
        assert_eq!(d["spec"]["names"]["singular"], "widget");
        assert_eq!(d["status"]["conditions"][1]["type"], "Established");
        register(&c, &d);
        let r = c.lookup("example.com", "v1", "widgets").unwrap();
        assert!(r.has(Subresource::Status) && !r.builtin);
        assert_eq!(r.printer_columns[0].json_path, ".spec.size");
        let mut bad = crd();
        bad["metadata"]["name"] = json!("wrong");
        bad["spec"]["versions"][0]["storage"] = json!(false);
        assert_eq!(validate(&bad).len(), 2);
    }

    #[test]
    fn objects_are_defaulted_pruned_and_checked() {
        let c = Catalog::builtin();
        let mut d = crd();
        normalize(&mut d);
        register(&c, &d);
        let r = c.lookup("example.com", "v1", "widgets").unwrap();
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
            "spec": {"size": 2, "unknown": 1, "extra": {"anything": [1]}}, "bogus": true});
        assert!(apply_schema(&r, &mut obj).is_empty());
        assert_eq!(
            obj["spec"],
            json!({"size": 2, "color": "red", "extra": {"anything": [1]}})
        );
        assert!(obj.get("bogus").is_none() && obj["metadata"]["name"] == "a");
        let mut obj = json!({"spec": {"size": "big", "color": "green"}});
        let causes = apply_schema(&r, &mut obj);
        assert_eq!(causes.len(), 2, "{causes:?}");
        let mut obj = json!({"spec": {"size": 0}});
        assert_eq!(apply_schema(&r, &mut obj)[0].field, "spec.size");
        let mut obj = json!({"spec": {}});
        assert_eq!(apply_schema(&r, &mut obj)[0].reason, "FieldValueRequired");
    }
}
