//! Strategic merge patch for the built-in kinds, as far as `kubectl apply` and
//! `kubectl patch --type=strategic` need it.
//!
//! Written here because no Rust crate implements it: upstream drives it from Go struct
//! tags (`patchStrategy`, `patchMergeKey`). This module keeps a table of those tags for
//! the lists that have them (containers by name, env by name, ports by containerPort or
//! port, conditions by type, ...), found by the field's path; every other list is
//! replaced, like a JSON merge patch. Maps merge recursively, `null` deletes. Directives:
//! `$patch` (merge, replace, delete), `$retainKeys`, `$setElementOrder/<list>` and
//! `$deleteFromPrimitiveList/<list>`.

use serde_json::{Map, Value};

use crate::status::ApiError;

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// The patch's list replaces the original.
    Replace,
    /// Lists of maps merged item by item, matched on this key.
    MergeOn(&'static str),
    /// Lists of scalars merged as sets (`metadata.finalizers`).
    MergePrimitives,
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The strategy of the list at `path` (the field names from the object's root; list
/// items add no element).
fn strategy(path: &[&str]) -> ListStrategy {
    let Some((field, parents)) = path.split_last() else {
        return ListStrategy::Replace;
    };
    let parent = parents.last().copied().unwrap_or("");
    match *field {
        "containers" | "initContainers" | "ephemeralContainers" => ListStrategy::MergeOn("name"),
        "env" | "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates" => {
            ListStrategy::MergeOn("name")
        }
        "volumeMounts" => ListStrategy::MergeOn("mountPath"),
        "volumeDevices" => ListStrategy::MergeOn("devicePath"),
        "resizePolicy" => ListStrategy::MergeOn("resourceName"),
        "hostAliases" => ListStrategy::MergeOn("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeOn("topologyKey"),
        "conditions" => ListStrategy::MergeOn("type"),
        "ownerReferences" if parent == "metadata" => ListStrategy::MergeOn("uid"),
        "finalizers" if parent == "metadata" => ListStrategy::MergePrimitives,
        "ports" if CONTAINER_LISTS.contains(&parent) => ListStrategy::MergeOn("containerPort"),
        // A Service's ports.
        "ports" if parents == ["spec"] => ListStrategy::MergeOn("port"),
        _ => ListStrategy::Replace,
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// Applies strategic merge patch `patch` to `original`.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, ApiError> {
    let Value::Object(patch) = patch else {
        return Err(bad("strategic merge patch must be a JSON object"));
    };
    let mut out = original.clone();
    if !out.is_object() {
        out = Value::Object(Map::new());
    }
    let map = out.as_object_mut().expect("made an object");
    match merge_map(map, patch, &mut Vec::new())? {
        MapOutcome::Keep => Ok(out),
        MapOutcome::Replace(m) => Ok(Value::Object(m)),
        MapOutcome::Delete => Err(bad("strategic merge patch cannot delete the whole object")),
    }
}

enum MapOutcome {
    Keep,
    Replace(Map<String, Value>),
    Delete,
}

/// Removes directives and nulls from a value being added as a whole.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|v| v.get("$patch").is_none())
                .map(clean)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn merge_map<'a>(
    original: &mut Map<String, Value>,
    patch: &'a Map<String, Value>,
    path: &mut Vec<&'a str>,
) -> Result<MapOutcome, ApiError> {
    match patch.get("$patch").map(|v| v.as_str()) {
        None | Some(Some("merge")) => {}
        Some(Some("replace")) => {
            let Value::Object(m) = clean(&Value::Object(patch.clone())) else {
                unreachable!("clean keeps objects")
            };
            return Ok(MapOutcome::Replace(m));
        }
        Some(Some("delete")) => return Ok(MapOutcome::Delete),
        Some(other) => return Err(bad(format!("unknown $patch directive {other:?}"))),
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        path.push(key);
        merge_field(original, key, value, path)?;
        path.pop();
    }
    // `$deleteFromPrimitiveList/<field>`: values to take out of a merged scalar list.
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
        }
    }
    // `$setElementOrder/<field>`: the order the merged list should have.
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            path.push(field);
            let strat = strategy(path);
            path.pop();
            if let (Some(Value::Array(list)), Some(order)) =
                (original.get_mut(field), value.as_array())
            {
                reorder(list, order, strat);
            }
        }
    }
    // `$retainKeys`: only these fields survive (used for unions like Deployment.strategy).
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| bad("$retainKeys must be a list"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(MapOutcome::Keep)
}

fn merge_field<'a>(
    original: &mut Map<String, Value>,
    key: &str,
    value: &'a Value,
    path: &mut Vec<&'a str>,
) -> Result<(), ApiError> {
    match value {
        Value::Null => {
            original.remove(key);
        }
        Value::Object(pm) => match original.get_mut(key) {
            Some(Value::Object(om)) => match merge_map(om, pm, path)? {
                MapOutcome::Keep => {}
                MapOutcome::Replace(m) => {
                    original.insert(key.to_string(), Value::Object(m));
                }
                MapOutcome::Delete => {
                    original.remove(key);
                }
            },
            _ => {
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    original.remove(key);
                } else {
                    original.insert(key.to_string(), clean(value));
                }
            }
        },
        Value::Array(items) => {
            let strat = strategy(path);
            match (strat, original.get_mut(key)) {
                (ListStrategy::Replace, _) | (_, None) => {
                    original.insert(key.to_string(), clean(value));
                }
                (_, Some(existing)) if !existing.is_array() => {
                    original.insert(key.to_string(), clean(value));
                }
                (ListStrategy::MergePrimitives, Some(Value::Array(list))) => {
                    for item in items {
                        if !list.contains(item) {
                            list.push(item.clone());
                        }
                    }
                }
                (ListStrategy::MergeOn(merge_key), Some(Value::Array(list))) => {
                    if let Some(replaced) = merge_list(list, items, merge_key, path)? {
                        original.insert(key.to_string(), Value::Array(replaced));
                    }
                }
                _ => unreachable!("every case handled above"),
            }
        }
        scalar => {
            original.insert(key.to_string(), scalar.clone());
        }
    }
    Ok(())
}

/// Merges patch `items` into `list` by `merge_key`. Returns a whole new list when the
/// patch says `{"$patch": "replace"}`.
fn merge_list<'a>(
    list: &mut Vec<Value>,
    items: &'a [Value],
    merge_key: &str,
    path: &mut Vec<&'a str>,
) -> Result<Option<Vec<Value>>, ApiError> {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Some(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .map(clean)
                .collect(),
        ));
    }
    for item in items {
        let Value::Object(pm) = item else {
            return Err(bad(format!(
                "strategic merge patch: items of {} must be objects",
                path.join(".")
            )));
        };
        let Some(key_value) = pm.get(merge_key) else {
            return Err(bad(format!(
                "strategic merge patch: an item of {} has no merge key {merge_key:?}",
                path.join(".")
            )));
        };
        let pos = list
            .iter()
            .position(|o| o.get(merge_key) == Some(key_value));
        let delete = pm.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                if let Value::Object(om) = &mut list[i] {
                    match merge_map(om, pm, path)? {
                        MapOutcome::Keep => {}
                        MapOutcome::Replace(m) => list[i] = Value::Object(m),
                        MapOutcome::Delete => {
                            list.remove(i);
                        }
                    }
                } else {
                    list[i] = clean(item);
                }
            }
            (None, false) => list.push(clean(item)),
        }
    }
    Ok(None)
}

/// Orders `list` as `order` says (items named there first, in that order; the rest after,
/// as they were).
fn reorder(list: &mut Vec<Value>, order: &[Value], strat: ListStrategy) {
    let rank = |item: &Value| -> usize {
        let found = match strat {
            ListStrategy::MergeOn(k) => order.iter().position(|o| o.get(k) == item.get(k)),
            _ => order.iter().position(|o| o == item),
        };
        found.unwrap_or(order.len())
    };
    let mut ranked: Vec<(usize, usize, Value)> = list
        .drain(..)
        .enumerate()
        .map(|(i, v)| (rank(&v), i, v))
        .collect();
    ranked.sort_by_key(|(r, i, _)| (*r, *i));
    list.extend(ranked.into_iter().map(|(_, _, v)| v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_merge_and_null_deletes() {
        let o = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}});
        let p = json!({"metadata": {"labels": {"b": null, "c": "3"}}, "data": {"y": "2"}});
        assert_eq!(
            apply(&o, &p).unwrap(),
            json!({"metadata": {"labels": {"a": "1", "c": "3"}}, "data": {"x": "1", "y": "2"}})
        );
    }

    #[test]
    fn containers_merge_by_name_like_kubectl_apply() {
        let o = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}],
             "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox"}
        ]}}}});
        let p = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [
            {"name": "web", "image": "nginx:2",
             "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
             "env": [{"name": "B", "value": "2"}]},
            {"name": "side", "$patch": "delete"}
        ]}}}});
        let got = apply(&o, &p).unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx:2",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80}]}])
        );
    }

    #[test]
    fn other_lists_are_replaced_and_directives_work() {
        let o = json!({"spec": {"args": ["a", "b"], "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
                       "metadata": {"finalizers": ["x"]}});
        let p = json!({"spec": {"args": ["c"], "strategy": {"$retainKeys": ["type"], "type": "Recreate"}},
                       "metadata": {"finalizers": ["y"], "$deleteFromPrimitiveList/finalizers": ["x"]}});
        let got = apply(&o, &p).unwrap();
        assert_eq!(got["spec"]["args"], json!(["c"]));
        assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(got["metadata"]["finalizers"], json!(["y"]));
        let p = json!({"spec": {"$patch": "replace", "args": ["z"]}});
        assert_eq!(apply(&o, &p).unwrap()["spec"], json!({"args": ["z"]}));
    }

    #[test]
    fn service_ports_merge_on_port() {
        let o = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let p = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        assert_eq!(
            apply(&o, &p).unwrap()["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443, "name": "https"}])
        );
    }
}
