//! Server-side apply (`PATCH` with `application/apply-patch+yaml`), following
//! structured-merge-diff's `Updater.Apply`:
//!
//! 1. the configuration is merged into the live object (maps key by key, keyed lists item
//!    by item, atomic lists and maps replaced);
//! 2. its field set becomes the manager's `Apply` entry;
//! 3. fields the manager applied last time and no longer applies are removed, unless
//!    another manager owns them;
//! 4. fields whose value changes and that another manager owns are conflicts: a 409
//!    unless `force`, which moves their ownership to the applier.
//!
//! As upstream, an apply by `kubectl` over an object last written by client-side
//! `kubectl apply` may take the fields whose live value still matches the
//! `last-applied-configuration` annotation, and keeps that annotation up to date.

use serde_json::{json, Value};

use crate::catalog::Resource;
use crate::field_diff::{self, compare};
use crate::field_types::{self, ListKind, Shape};
use crate::fieldset::{path_string, FieldSet};
use crate::managed_fields::{self, Managed, Operation, Writer};
use crate::meta;
use crate::status::ApiError;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The result of applying a configuration to a live object.
#[derive(Debug)]
pub struct Applied {
    /// The merged object, not yet defaulted or validated, without managedFields.
    pub object: Value,
    /// The entries to store with it.
    pub managed: Managed,
}

/// Parses and checks an apply body for the object named on the URL.
pub fn parse_config(res: &Resource, body: &[u8], name: &str, ns: &str) -> Result<Value, ApiError> {
    let config: Value = serde_yaml_ng::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding patch: the apply configuration must be an object",
        ));
    }
    let api_version = config["apiVersion"].as_str().unwrap_or("");
    let kind = config["kind"].as_str().unwrap_or("");
    if api_version != res.api_version() || kind != res.kind {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        return Err(ApiError::bad_request(format!(
            "invalid object type: {group}/{version}, Kind={kind}"
        )));
    }
    if !config["metadata"]["managedFields"].is_null() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let config_name = meta::name(&config);
    if config_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({config_name}) does not match the name on the URL ({name})"
        )));
    }
    let config_ns = meta::namespace(&config);
    if res.namespaced && !config_ns.is_empty() && config_ns != ns {
        return Err(ApiError::bad_request(format!(
            "the namespace of the object ({config_ns}) does not match the namespace on the request ({ns})"
        )));
    }
    Ok(config)
}

/// The fields `config` makes `writer` own.
pub fn applied_fields(
    res: &Resource,
    writer: &Writer,
    config: &Value,
) -> Result<FieldSet, ApiError> {
    let mut set = field_diff::fields_of(config, Shape::of(res)).map_err(|e| {
        ApiError::bad_request(format!("failed to create typed patch object: {}", e.0))
    })?;
    managed_fields::ownable(&mut set, res, &writer.subresource);
    Ok(set)
}

/// The object an apply creates: the configuration without its nulls.
pub fn new_object(config: &Value) -> Value {
    without_nulls(config)
}

/// Applies `config` by `writer` to `live`.
pub fn apply(
    res: &Resource,
    writer: &Writer,
    live: &Value,
    config: &Value,
    force: bool,
) -> Result<Applied, ApiError> {
    let shape = Shape::of(res);
    let applied = applied_fields(res, writer, config)?;
    let mut managed = Managed::of(live);
    let mut live = live.clone();
    meta::meta_mut(&mut live).remove("managedFields");

    let mut merged =
        merge(Some(&live), config, shape, &mut Vec::new()).unwrap_or_else(|| json!({}));
    let mine = managed
        .entries
        .iter()
        .position(|e| e.belongs_to(writer, Operation::Apply));
    let (last, last_time) = match mine {
        Some(i) => {
            let e = managed.entries.remove(i);
            (e.fields, e.time)
        }
        None => (FieldSet::default(), None),
    };
    let mut keep = applied.clone();
    for e in &managed.entries {
        keep.union_with(&e.fields);
    }
    prune(&mut merged, &last, &keep, shape, &mut Vec::new());

    let mut cmp = compare(Some(&live), Some(&merged), shape);
    managed_fields::ownable_comparison(&mut cmp, res, &writer.subresource);
    let (changed, removed) = cmp.into_changed_and_removed();
    if !force {
        check_conflicts(&managed, &changed, writer, &live, shape)?;
    }
    managed.disown(&changed, &removed);
    let object_changed = merged != live;
    managed.entries.push(managed_fields::Entry {
        manager: writer.manager.clone(),
        operation: Operation::Apply,
        api_version: writer.api_version.clone(),
        subresource: writer.subresource.clone(),
        time: if object_changed || last_time.is_none() {
            Some(meta::now())
        } else {
            last_time
        },
        fields: applied,
    });
    if writer.manager == "kubectl" {
        update_last_applied(&mut merged, config);
    }
    Ok(Applied {
        object: merged,
        managed,
    })
}

/// Fails with a 409 when `changed` fields are owned by another manager (except those
/// kubectl may take over from its own client-side apply).
fn check_conflicts(
    managed: &Managed,
    changed: &FieldSet,
    writer: &Writer,
    live: &Value,
    shape: Shape,
) -> Result<(), ApiError> {
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for e in &managed.entries {
        let owner = e.describe();
        for p in e.fields.intersection(changed).paths() {
            conflicts.push((owner.clone(), path_string(&p)));
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    if writer.manager == "kubectl" {
        if let Some(allowed) = allowed_by_last_applied(live, shape) {
            let allowed: Vec<String> = allowed.paths().iter().map(|p| path_string(p)).collect();
            conflicts.retain(|(_, p)| !allowed.contains(p));
        }
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(conflict_error(conflicts))
    }
}

/// A 409 naming every conflicting field and its owner, as upstream words it.
fn conflict_error(mut conflicts: Vec<(String, String)>) -> ApiError {
    conflicts.sort();
    let message = if conflicts.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].0, conflicts[0].1
        )
    } else {
        let mut lines: Vec<String> = Vec::new();
        let mut current = "";
        for (owner, path) in &conflicts {
            if owner != current {
                lines.push(format!("conflicts with {owner}:"));
                current = owner;
            }
            lines.push(format!("- {path}"));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(owner, path)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {owner}"), "field": path})
        })
        .collect();
    let mut err = ApiError::new(409, "Conflict", message);
    err.details = Some(json!({ "causes": causes }));
    err
}

/// The fields client-side apply last set that still have the values it set: kubectl may
/// take them over without forcing (upstream's `lastAppliedManager`).
fn allowed_by_last_applied(live: &Value, shape: Shape) -> Option<FieldSet> {
    let text = live["metadata"]["annotations"][LAST_APPLIED].as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last["apiVersion"] != live["apiVersion"] {
        return None;
    }
    let set = field_diff::fields_of(&last, shape).ok()?;
    let cmp = compare(Some(&last), Some(live), shape);
    Some(
        set.difference(&cmp.added)
            .difference(&cmp.modified)
            .difference(&cmp.removed),
    )
}

/// Keeps client-side apply's annotation (if the object has one) in step with what was
/// applied, so that a later client-side apply computes the right patch.
fn update_last_applied(obj: &mut Value, config: &Value) {
    if obj["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .is_none_or(str::is_empty)
    {
        return;
    }
    let mut config = config.clone();
    if let Some(a) = config
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    // JSON with sorted keys and a trailing newline, as kubectl writes it.
    obj["metadata"]["annotations"][LAST_APPLIED] = json!(format!("{config}\n"));
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// `config` merged into `live`; `None` when the result is no value (a null).
fn merge<'a>(
    live: Option<&Value>,
    config: &'a Value,
    shape: Shape,
    path: &mut Vec<&'a str>,
) -> Option<Value> {
    match (live, config) {
        (_, Value::Null) => None,
        (Some(Value::Object(lm)), Value::Object(cm)) if !shape.atomic_map(path) => {
            let mut out = lm.clone();
            for (k, cv) in cm {
                let child_shape = shape.field(path, k);
                path.push(k);
                match merge(lm.get(k), cv, child_shape, path) {
                    Some(v) => out.insert(k.clone(), v),
                    None => out.remove(k),
                };
                path.pop();
            }
            Some(Value::Object(out))
        }
        (Some(Value::Array(ll)), Value::Array(cl)) => {
            let kind = shape.list_kind(path);
            let keys = match kind {
                ListKind::Atomic => None,
                _ => field_types::elements(&kind, ll)
                    .ok()
                    .zip(field_types::elements(&kind, cl).ok()),
            };
            match keys {
                Some((lk, ck)) => Some(Value::Array(merge_list(
                    ll,
                    cl,
                    &lk,
                    &ck,
                    shape.items(),
                    path,
                ))),
                None => Some(without_nulls(config)),
            }
        }
        _ => Some(without_nulls(config)),
    }
}

/// Merges keyed items: shared items in the configuration's order, live-only items where
/// they were, configuration-only items after the shared item before them.
fn merge_list<'a>(
    live: &[Value],
    config: &'a [Value],
    live_keys: &[String],
    config_keys: &[String],
    items: Shape,
    path: &mut Vec<&'a str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let mut next = 0;
    let mut emit = |upto: usize, out: &mut Vec<Value>, path: &mut Vec<&'a str>| {
        while next <= upto && next < config.len() {
            let live_item = live_keys
                .iter()
                .position(|k| *k == config_keys[next])
                .map(|i| &live[i]);
            if let Some(v) = merge(live_item, &config[next], items, path) {
                out.push(v);
            }
            next += 1;
        }
    };
    for (item, key) in live.iter().zip(live_keys) {
        match config_keys.iter().position(|k| k == key) {
            None => out.push(item.clone()),
            Some(pos) => emit(pos, &mut out, path),
        }
    }
    emit(config.len(), &mut out, path);
    out
}

/// Removes from `obj` what the applier owned (`last`) and nobody owns now (`keep`).
fn prune<'a>(
    obj: &mut Value,
    last: &'a FieldSet,
    keep: &FieldSet,
    shape: Shape,
    path: &mut Vec<&'a str>,
) {
    for (element, last_child) in last.children() {
        let Some(kept) = keep.child(element) else {
            remove_element(obj, element, shape, path);
            continue;
        };
        // Owned whole by someone: its contents stay.
        if kept.is_member() && kept.children().next().is_none() {
            continue;
        }
        if let Some(name) = element.strip_prefix("f:") {
            let child_shape = shape.field(path, name);
            let Some(child) = obj.as_object_mut().and_then(|m| m.get_mut(name)) else {
                continue;
            };
            let was_empty = is_empty_container(child);
            path.push(name);
            prune(child, last_child, kept, child_shape, path);
            path.pop();
            if !was_empty && is_empty_container(child) && !kept.is_member() {
                if let Some(m) = obj.as_object_mut() {
                    m.remove(name);
                }
            }
        } else if let Some(i) = item_index(obj, element, shape, path) {
            if let Some(item) = obj.as_array_mut().and_then(|a| a.get_mut(i)) {
                prune(item, last_child, kept, shape.items(), path);
            }
        }
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The position of the list item named `element` in `list`.
fn item_index(list: &Value, element: &str, shape: Shape, path: &[&str]) -> Option<usize> {
    let items = list.as_array()?;
    if let Some(i) = element.strip_prefix("i:") {
        return i.parse().ok().filter(|i| *i < items.len());
    }
    let kind = shape.list_kind(path);
    if kind == ListKind::Atomic {
        return None;
    }
    items
        .iter()
        .position(|item| field_types::element(&kind, item).is_ok_and(|e| e == element))
}

fn remove_element(obj: &mut Value, element: &str, shape: Shape, path: &[&str]) {
    if let Some(name) = element.strip_prefix("f:") {
        if let Some(m) = obj.as_object_mut() {
            m.remove(name);
        }
    } else if let Some(i) = item_index(obj, element, shape, path) {
        if let Some(a) = obj.as_array_mut() {
            a.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn writer(manager: &str) -> Writer {
        Writer {
            manager: manager.into(),
            subresource: String::new(),
            api_version: "apps/v1".into(),
        }
    }

    fn deployment(replicas: i64, labels: Value, containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}}})
    }

    fn res() -> std::sync::Arc<Resource> {
        Catalog::builtin()
            .lookup("apps", "v1", "deployments")
            .unwrap()
    }

    /// Applies and stores the entries, as the handler does (without defaulting).
    fn run(live: &Value, config: &Value, manager: &str, force: bool) -> Result<Value, ApiError> {
        let a = apply(&res(), &writer(manager), live, config, force)?;
        let mut obj = a.object;
        a.managed.store(&mut obj);
        Ok(obj)
    }

    #[test]
    fn reapplying_merges_by_key_and_removes_dropped_fields() {
        let first = deployment(
            2,
            json!({"app": "web", "team": "a"}),
            json!([{"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}]}]),
        );
        let created = run(
            &json!({"metadata": {"name": "web"}}),
            &first,
            "kubectl",
            false,
        )
        .unwrap();
        // Someone else adds a sidecar and a label: neither is the applier's to remove.
        let mut live = created.clone();
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "busybox"}));
        live["metadata"]["labels"]["other"] = json!("x");
        let cmp = compare(Some(&created), Some(&live), Shape::Builtin);
        let mut managed = Managed::of(&created);
        managed.entries.push(managed_fields::Entry {
            manager: "kubectl-edit".into(),
            operation: Operation::Update,
            api_version: "apps/v1".into(),
            subresource: String::new(),
            time: None,
            fields: cmp.changed(),
        });
        managed.store(&mut live);

        let second = deployment(
            2,
            json!({"app": "web"}),
            json!([{"name": "web", "image": "nginx:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]),
        );
        let out = run(&live, &second, "kubectl", false).unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "other": "x"})
        );
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "nginx:2");
        assert_eq!(containers[0]["env"][1], json!({"name": "B", "value": "2"}));
        assert_eq!(containers[1]["name"], "side");
        let entries = out["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries[0]["manager"], "kubectl");
        assert_eq!(entries[0]["operation"], "Apply");
        assert_eq!(entries[1]["manager"], "kubectl-edit");

        // Dropping the container from the config removes it.
        let third = deployment(
            2,
            json!({"app": "web"}),
            json!([{"name": "side", "image": "busybox"}]),
        );
        let out = run(&out, &third, "kubectl", false).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "side", "image": "busybox"}])
        );
    }

    #[test]
    fn changing_another_managers_field_conflicts_unless_forced() {
        let config = deployment(
            2,
            json!({"app": "web"}),
            json!([{"name": "web", "image": "nginx"}]),
        );
        let live = run(
            &json!({"metadata": {"name": "web"}}),
            &config,
            "kubectl",
            false,
        )
        .unwrap();
        let mut other = config.clone();
        other["spec"]["replicas"] = json!(5);
        let err = run(&live, &other, "other", false).unwrap_err();
        assert_eq!((err.code, err.reason), (409, "Conflict"));
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );
        let cause = &err.details.as_ref().unwrap()["causes"][0];
        assert_eq!(cause["reason"], "FieldManagerConflict");
        assert_eq!(cause["field"], ".spec.replicas");
        assert_eq!(cause["message"], "conflict with \"kubectl\"");

        // Same values are shared, not conflicts.
        let shared = run(&live, &config, "other", false).unwrap();
        assert_eq!(
            shared["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            2
        );

        let forced = run(&live, &other, "other", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let entries = forced["metadata"]["managedFields"].as_array().unwrap();
        let kubectl = entries.iter().find(|e| e["manager"] == "kubectl").unwrap();
        assert!(kubectl["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        let other = entries.iter().find(|e| e["manager"] == "other").unwrap();
        assert_eq!(other["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    }

    #[test]
    fn client_side_applied_fields_can_be_taken_by_kubectl() {
        let config = deployment(
            2,
            json!({"app": "web"}),
            json!([{"name": "web", "image": "nginx:1"}]),
        );
        let mut live = config.clone();
        live["metadata"]["annotations"] = json!({LAST_APPLIED: format!("{config}\n")});
        let res = res();
        managed_fields::record_update(
            &res,
            &Writer {
                manager: "kubectl-client-side-apply".into(),
                ..writer("")
            },
            &json!({}),
            &mut live,
        );
        let mut changed = config.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert_eq!(
            run(&live, &changed, "someone", false).unwrap_err().code,
            409
        );
        let out = run(&live, &changed, "kubectl", false).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        let annotation: Value = serde_json::from_str(
            out["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(annotation, changed);
    }

    #[test]
    fn bad_configurations_are_rejected() {
        let r = res();
        let ok = b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n";
        assert!(parse_config(&r, ok, "web", "default").is_ok());
        let cases: [&[u8]; 5] = [
            b"{",
            b"apiVersion: v1\nkind: Deployment\nmetadata:\n  name: web\n",
            b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: other\n",
            b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  managedFields: []\n",
            b"- 1\n",
        ];
        for body in cases {
            let err = parse_config(&r, body, "web", "default").unwrap_err();
            assert_eq!(err.code, 400, "{err}");
        }
        let dup = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}});
        assert_eq!(
            apply(&r, &writer("m"), &json!({}), &dup, false)
                .unwrap_err()
                .code,
            400
        );
    }
}
