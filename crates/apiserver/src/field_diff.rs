//! Field sets of objects: the fields an apply configuration sets, and the fields one
//! write adds, changes and removes (upstream's `ToFieldSet` and `Compare`). Each is one
//! walk of the objects.

use serde_json::{Map, Value};

use crate::field_types::{self, ElementError, ListKind, Shape};
use crate::fieldset::{field, FieldSet};

/// The fields `config` sets: every leaf value (scalars, nulls, empty maps, atomic lists
/// and maps) and every item of a keyed or set list. Items without their keys, or two items
/// with one key, are an error, as upstream rejects them in apply configurations.
pub fn fields_of(config: &Value, shape: Shape) -> Result<FieldSet, ElementError> {
    set_of(config, shape, &mut Vec::new())
}

fn set_of<'a>(
    v: &'a Value,
    shape: Shape,
    path: &mut Vec<&'a str>,
) -> Result<FieldSet, ElementError> {
    match v {
        Value::Object(m) if !m.is_empty() && !shape.atomic_map(path) => {
            let is_map = shape.is_map(path);
            let mut set = FieldSet::default();
            for (k, child) in m {
                let child_shape = shape.field(path, k);
                path.push(k);
                let mut sub = set_of(child, child_shape, path)?;
                path.pop();
                // A map's keys are owned themselves, not only what is below them.
                if is_map {
                    sub.set_member(true);
                }
                set.add_child(field(k), sub);
            }
            Ok(set)
        }
        Value::Array(items) => {
            let kind = shape.list_kind(path);
            if kind == ListKind::Atomic {
                return Ok(FieldSet::leaf());
            }
            let mut set = FieldSet::default();
            let elements = field_types::elements(&kind, items)?;
            for (item, element) in items.iter().zip(elements) {
                let mut sub = set_of(item, shape.items(), path)?;
                sub.set_member(true);
                set.add_child(element, sub);
            }
            Ok(set)
        }
        _ => Ok(FieldSet::leaf()),
    }
}

/// What a write did to the fields of an object.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Added or modified: what the writer now owns.
    #[cfg(test)]
    pub fn changed(&self) -> FieldSet {
        let mut out = self.added.clone();
        out.union_with(&self.modified);
        out
    }

    /// [`Comparison::changed`] and the removed fields, without copying.
    pub fn into_changed_and_removed(self) -> (FieldSet, FieldSet) {
        let mut changed = self.added;
        changed.union_with(&self.modified);
        (changed, self.removed)
    }

    fn add_child(&mut self, element: String, sub: Comparison) {
        self.added.add_child(element.clone(), sub.added);
        self.modified.add_child(element.clone(), sub.modified);
        self.removed.add_child(element, sub.removed);
    }
}

/// The fields `new` adds, modifies and removes relative to `old` (either may be absent).
/// Lists whose items cannot be keyed (missing keys, duplicates) compare as atomic.
pub fn compare(old: Option<&Value>, new: Option<&Value>, shape: Shape) -> Comparison {
    cmp(old, new, shape, &mut Vec::new())
}

/// Whether a value is one unit for comparison and ownership.
fn is_leaf(old: Option<&Value>, new: Option<&Value>, shape: Shape, path: &[&str]) -> bool {
    let empty = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    match (old, new) {
        (Some(Value::Object(_)) | None, Some(Value::Object(_)))
        | (Some(Value::Object(_)), None) => shape.atomic_map(path) || (empty(old) && empty(new)),
        (Some(Value::Array(_)) | None, Some(Value::Array(_))) | (Some(Value::Array(_)), None) => {
            shape.list_kind(path) == ListKind::Atomic || (empty(old) && empty(new))
        }
        _ => true,
    }
}

fn cmp<'a>(
    old: Option<&'a Value>,
    new: Option<&'a Value>,
    shape: Shape,
    path: &mut Vec<&'a str>,
) -> Comparison {
    let mut out = Comparison::default();
    if old.is_none() && new.is_none() {
        return out;
    }
    if is_leaf(old, new, shape, path) {
        leaf(&mut out, old, new);
        return out;
    }
    if let (None, Some(new)) = (old, new) {
        // A create, or a new subtree: one set to build, not three.
        out.added = added(new, shape, path);
        return out;
    }
    if old.or(new).is_some_and(Value::is_object) {
        cmp_maps(
            &mut out,
            old.and_then(Value::as_object),
            new.and_then(Value::as_object),
            shape,
            path,
        );
        // Upstream owns an added map's own path, and a struct's only when it was a nil
        // pointer; maps are the cases that matter here.
        if old.is_none() && shape.is_map(path) {
            out.added.set_member(true);
        }
    } else if !cmp_lists(
        &mut out,
        old.and_then(Value::as_array),
        new.and_then(Value::as_array),
        shape,
        path,
    ) {
        leaf(&mut out, old, new);
        return out;
    }
    if new.is_none() && !path.is_empty() {
        out.removed.set_member(true);
    }
    out
}

/// What `cmp` finds added when `new` (not a leaf) replaces nothing.
fn added<'a>(new: &'a Value, shape: Shape, path: &mut Vec<&'a str>) -> FieldSet {
    let mut set = FieldSet::default();
    match new {
        Value::Object(m) => {
            for (k, v) in m {
                let child_shape = shape.field(path, k);
                path.push(k);
                let sub = if is_leaf(None, Some(v), child_shape, path) {
                    FieldSet::leaf()
                } else {
                    added(v, child_shape, path)
                };
                path.pop();
                set.add_child(field(k), sub);
            }
            set.set_member(shape.is_map(path));
        }
        Value::Array(items) => {
            let kind = shape.list_kind(path);
            let Ok(keys) = field_types::elements(&kind, items) else {
                return FieldSet::leaf();
            };
            let item_shape = shape.items();
            for (item, key) in items.iter().zip(keys) {
                let mut sub = if is_leaf(None, Some(item), item_shape, path) {
                    FieldSet::leaf()
                } else {
                    added(item, item_shape, path)
                };
                sub.set_member(true);
                set.add_child(key, sub);
            }
        }
        _ => set.set_member(true),
    }
    set
}

fn leaf(out: &mut Comparison, old: Option<&Value>, new: Option<&Value>) {
    match (old, new) {
        (None, Some(_)) => out.added.set_member(true),
        (Some(_), None) => out.removed.set_member(true),
        (Some(a), Some(b)) if a != b => out.modified.set_member(true),
        _ => {}
    }
}

fn cmp_maps<'a>(
    out: &mut Comparison,
    old: Option<&'a Map<String, Value>>,
    new: Option<&'a Map<String, Value>>,
    shape: Shape,
    path: &mut Vec<&'a str>,
) {
    let mut visit = |k: &'a String, o: Option<&'a Value>, n: Option<&'a Value>| {
        let child_shape = shape.field(path, k);
        path.push(k);
        let sub = cmp(o, n, child_shape, path);
        path.pop();
        out.add_child(field(k), sub);
    };
    if let Some(old) = old {
        for (k, o) in old {
            visit(k, Some(o), new.and_then(|n| n.get(k)));
        }
    }
    if let Some(new) = new {
        for (k, n) in new {
            if !old.is_some_and(|o| o.contains_key(k)) {
                visit(k, None, Some(n));
            }
        }
    }
}

/// Compares a keyed or set list item by item; false (compare as a leaf) when the items
/// cannot be keyed.
fn cmp_lists<'a>(
    out: &mut Comparison,
    old: Option<&'a Vec<Value>>,
    new: Option<&'a Vec<Value>>,
    shape: Shape,
    path: &mut Vec<&'a str>,
) -> bool {
    let kind = shape.list_kind(path);
    let old: &'a [Value] = old.map_or(&[], Vec::as_slice);
    let new: &'a [Value] = new.map_or(&[], Vec::as_slice);
    let (Ok(old_keys), Ok(new_keys)) = (
        field_types::elements(&kind, old),
        field_types::elements(&kind, new),
    ) else {
        return false;
    };
    let items = shape.items();
    for (o, key) in old.iter().zip(&old_keys) {
        let n = new_keys.iter().position(|k| k == key).map(|i| &new[i]);
        let mut sub = cmp(Some(o), n, items, path);
        if n.is_none() {
            sub.removed.set_member(true);
        }
        out.add_child(key.clone(), sub);
    }
    for (n, key) in new.iter().zip(&new_keys) {
        if !old_keys.contains(key) {
            let mut sub = cmp(None, Some(n), items, path);
            sub.added.set_member(true);
            out.add_child(key.clone(), sub);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, env: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": image, "env": env,
                     "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn applied_fields_follow_upstream_fields_v1() {
        let set = fields_of(
            &deployment("nginx", json!([{"name": "A", "value": "1"}])),
            Shape::Builtin,
        )
        .unwrap();
        assert_eq!(
            set.to_fields_v1(),
            json!({"f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:labels": {"f:app": {}}, "f:name": {}},
                "f:spec": {"f:replicas": {}, "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}})
        );
        let bad = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(fields_of(&bad, Shape::Builtin).is_err());
        let fin = json!({"metadata": {"finalizers": ["a", "b"]}});
        assert_eq!(
            fields_of(&fin, Shape::Builtin).unwrap().to_fields_v1(),
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}})
        );
    }

    #[test]
    fn comparisons_find_added_modified_and_removed_fields() {
        let old = deployment(
            "nginx:1",
            json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]),
        );
        let mut new = deployment(
            "nginx:2",
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
        );
        new["metadata"]["labels"]["tier"] = json!("front");
        let c = compare(Some(&old), Some(&new), Shape::Builtin);
        let web = |s: &FieldSet| {
            s.child("f:spec")
                .and_then(|s| s.child("f:template"))
                .and_then(|s| s.child("f:spec"))
                .and_then(|s| s.child("f:containers"))
                .and_then(|s| s.child("k:{\"name\":\"web\"}"))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(web(&c.modified).to_fields_v1(), json!({"f:image": {}}));
        assert_eq!(
            web(&c.added).to_fields_v1(),
            json!({"f:env": {"k:{\"name\":\"B\"}": {".": {}, "f:name": {}, "f:value": {}}}})
        );
        assert_eq!(
            web(&c.removed).to_fields_v1(),
            json!({"f:env": {"k:{\"name\":\"C\"}": {".": {}, "f:name": {}, "f:value": {}}}})
        );
        assert_eq!(
            c.added.child("f:metadata").unwrap().to_fields_v1(),
            json!({"f:labels": {"f:tier": {}}})
        );
        // Creating: maps own their own path, as upstream's kubectl-create entries show.
        let created = compare(None, Some(&new), Shape::Builtin);
        assert_eq!(
            created.added.child("f:metadata").unwrap().to_fields_v1(),
            json!({"f:labels": {".": {}, "f:app": {}, "f:tier": {}}, "f:name": {}})
        );
        assert!(compare(Some(&old), Some(&old), Shape::Builtin)
            .changed()
            .is_empty());
    }
}
