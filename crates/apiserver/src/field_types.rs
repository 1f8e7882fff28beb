//! What server-side apply and field ownership need to know about an object's fields:
//! which lists merge by key (and on which keys), which are sets, which are atomic, and
//! which maps are atomic. This is the part of upstream's OpenAPI schema that
//! structured-merge-diff reads (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`).
//!
//! Built-in kinds have no schema here, so a table keyed by field path gives their list
//! keys (as upstream's Go `+listType`/`+listMapKey` markers do; note that container ports
//! key on `containerPort` and `protocol` here, where strategic merge uses only the port).
//! Custom resources use their CRD's structural schema; fields it does not describe (and
//! `x-kubernetes-preserve-unknown-fields` subtrees) get upstream's deduced rules: lists
//! atomic, maps merged key by key. Every other list is atomic, as upstream defaults.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::catalog::Resource;

/// How a list merges and how its items are named in field sets.
#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    /// Replaced as a whole and owned as one field.
    Atomic,
    /// Scalars merged as a set; items are `v:<value>`.
    Set,
    /// Objects merged by these key fields (with their defaults); items are `k:{...}`.
    Map(Vec<KeyField>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyField {
    pub name: Cow<'static, str>,
    /// The value an item without this key has (upstream reads schema defaults).
    pub default: Option<Value>,
}

const fn key(name: &'static str) -> (&'static str, Option<&'static str>) {
    (name, None)
}

/// The type of one field: where in a built-in object, or which CRD schema node.
#[derive(Debug, Clone, Copy)]
pub enum Shape<'s> {
    /// A field of a built-in kind (or of any object's metadata): rules by field path.
    Builtin,
    /// A node of a CRD's structural schema.
    Schema(&'s Value),
    /// A field no schema describes.
    Deduced,
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

impl<'s> Shape<'s> {
    /// The shape of the whole object of `res`.
    pub fn of(res: &'s Resource) -> Shape<'s> {
        match &res.schema {
            Some(schema) if !res.builtin => Shape::Schema(schema),
            _ => Shape::Builtin,
        }
    }

    /// The shape of field `name` of the object at `path` (field names from the root).
    pub fn field(self, path: &[&str], name: &str) -> Shape<'s> {
        match self {
            Shape::Builtin => Shape::Builtin,
            // Custom resources have ordinary object metadata.
            _ if path.is_empty() && name == "metadata" => Shape::Builtin,
            Shape::Schema(node) => {
                let prop = node
                    .get("properties")
                    .and_then(|p| p.get(name))
                    .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()));
                prop.map_or(Shape::Deduced, Shape::Schema)
            }
            Shape::Deduced => Shape::Deduced,
        }
    }

    /// The shape of a list's items.
    pub fn items(self) -> Shape<'s> {
        match self {
            Shape::Schema(node) => node.get("items").map_or(Shape::Deduced, Shape::Schema),
            other => other,
        }
    }

    /// How the list at `path` merges.
    pub fn list_kind(self, path: &[&str]) -> ListKind {
        match self {
            Shape::Builtin => builtin_list(path),
            Shape::Deduced => ListKind::Atomic,
            Shape::Schema(node) => match node["x-kubernetes-list-type"].as_str() {
                Some("set") => ListKind::Set,
                Some("map") => {
                    let item_props = &node["items"]["properties"];
                    let keys = node["x-kubernetes-list-map-keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|k| KeyField {
                            name: Cow::Owned(k.to_string()),
                            default: item_props[k].get("default").cloned(),
                        })
                        .collect::<Vec<_>>();
                    if keys.is_empty() {
                        ListKind::Atomic
                    } else {
                        ListKind::Map(keys)
                    }
                }
                _ => ListKind::Atomic,
            },
        }
    }

    /// Whether the object at `path` is owned and replaced as one field.
    pub fn atomic_map(self, path: &[&str]) -> bool {
        match self {
            Shape::Builtin => path.last().is_some_and(|f| is_atomic_builtin_struct(f)),
            Shape::Schema(node) => node["x-kubernetes-map-type"] == "atomic",
            Shape::Deduced => false,
        }
    }

    /// Whether the object at `path` is a map with arbitrary keys (labels, a CRD's
    /// `additionalProperties`) rather than a struct with named fields. Upstream owns a
    /// map's own path when it adds one, and a struct's only for list items.
    pub fn is_map(self, path: &[&str]) -> bool {
        match self {
            Shape::Builtin => path.last().is_some_and(|f| {
                matches!(
                    *f,
                    "labels"
                        | "annotations"
                        | "data"
                        | "binaryData"
                        | "stringData"
                        | "matchLabels"
                        | "limits"
                        | "requests"
                        | "capacity"
                        | "allocatable"
                        | "hard"
                        | "used"
                )
            }),
            Shape::Schema(node) => {
                node.get("properties").is_none() && node["additionalProperties"].is_object()
            }
            Shape::Deduced => true,
        }
    }
}

/// Built-in structs upstream marks `+structType=atomic` or `+mapType=atomic` that clients
/// commonly set: label selectors, node selectors and the env var references.
fn is_atomic_builtin_struct(field: &str) -> bool {
    field == "selector"
        || field.ends_with("Selector")
        || matches!(
            field,
            "fieldRef" | "resourceFieldRef" | "configMapKeyRef" | "secretKeyRef"
        )
}

fn keyed(keys: &[(&'static str, Option<&'static str>)]) -> ListKind {
    ListKind::Map(
        keys.iter()
            .map(|(name, default)| KeyField {
                name: Cow::Borrowed(name),
                default: default.map(|d| Value::String(d.to_string())),
            })
            .collect(),
    )
}

/// The list rules of the built-in kinds (upstream's `+listType=map` and `+listMapKey`
/// markers), by the list's field name and the names above it.
fn builtin_list(path: &[&str]) -> ListKind {
    let Some((field, parents)) = path.split_last() else {
        return ListKind::Atomic;
    };
    let parent = parents.last().copied().unwrap_or("");
    match *field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => keyed(&[key("name")]),
        "volumeMounts" => keyed(&[key("mountPath")]),
        "volumeDevices" => keyed(&[key("devicePath")]),
        "hostAliases" => keyed(&[key("ip")]),
        "topologySpreadConstraints" => keyed(&[key("topologyKey"), key("whenUnsatisfiable")]),
        "conditions" => keyed(&[key("type")]),
        "ownerReferences" if parent == "metadata" => keyed(&[key("uid")]),
        "finalizers" if parent == "metadata" => ListKind::Set,
        "ports" if CONTAINER_LISTS.contains(&parent) => {
            keyed(&[key("containerPort"), ("protocol", Some("TCP"))])
        }
        // A Service's ports.
        "ports" if parents == ["spec"] => keyed(&[key("port"), ("protocol", Some("TCP"))]),
        _ => ListKind::Atomic,
    }
}

/// Why a list's items cannot be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementError(pub String);

/// The path element naming `item` of a list of `kind` (not atomic).
pub fn element(kind: &ListKind, item: &Value) -> Result<String, ElementError> {
    match kind {
        ListKind::Atomic => Err(ElementError("atomic lists have no items".into())),
        ListKind::Set => Ok(format!("v:{item}")),
        ListKind::Map(keys) => {
            let Value::Object(obj) = item else {
                return Err(ElementError(format!(
                    "associative list with keys has an element that is not a map: {item}"
                )));
            };
            let mut key_values = Map::new();
            for k in keys {
                let v = obj.get(k.name.as_ref()).filter(|v| !v.is_null());
                match v.or(k.default.as_ref()) {
                    Some(v) => {
                        key_values.insert(k.name.to_string(), v.clone());
                    }
                    None => {
                        return Err(ElementError(format!(
                            "associative list with keys has an element that omits key field {:?} (and doesn't have default value)",
                            k.name
                        )))
                    }
                }
            }
            Ok(format!("k:{}", Value::Object(key_values)))
        }
    }
}

/// The elements of every item of `list`, in order; an error on a missing key or on two
/// items with the same key.
pub fn elements(kind: &ListKind, list: &[Value]) -> Result<Vec<String>, ElementError> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        let e = element(kind, item)?;
        if out.contains(&e) {
            return Err(ElementError(format!(
                "duplicate entries for key {}",
                crate::fieldset::path_string(&[&e])
            )));
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_lists_key_like_upstream() {
        let ports = Shape::Builtin.list_kind(&["spec", "template", "spec", "containers", "ports"]);
        assert_eq!(
            element(&ports, &json!({"containerPort": 80})).unwrap(),
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}"
        );
        let c = Shape::Builtin.list_kind(&["spec", "containers"]);
        assert_eq!(
            element(&c, &json!({"name": "web", "image": "x"})).unwrap(),
            "k:{\"name\":\"web\"}"
        );
        assert!(element(&c, &json!({"image": "x"})).is_err());
        assert_eq!(
            Shape::Builtin.list_kind(&["metadata", "finalizers"]),
            ListKind::Set
        );
        assert_eq!(
            Shape::Builtin.list_kind(&["spec", "args"]),
            ListKind::Atomic
        );
        let dup = elements(&c, &[json!({"name": "a"}), json!({"name": "a"})]).unwrap_err();
        assert_eq!(dup.0, "duplicate entries for key [name=\"a\"]");
        assert!(Shape::Builtin.atomic_map(&["spec", "selector"]));
        assert!(!Shape::Builtin.atomic_map(&["spec", "template"]));
    }

    #[test]
    fn crd_schemas_give_list_keys_and_map_types() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "items": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name", "zone"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "zone": {"type": "string", "default": "a"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "ref": {"type": "object", "x-kubernetes-map-type": "atomic"},
                "extra": {"type": "object", "additionalProperties": {"type": "string"}}}}}});
        let root = Shape::Schema(&schema);
        let spec = root.field(&[], "spec");
        let items = spec.field(&["spec"], "items");
        let kind = items.list_kind(&["spec", "items"]);
        assert_eq!(
            element(&kind, &json!({"name": "x"})).unwrap(),
            "k:{\"name\":\"x\",\"zone\":\"a\"}"
        );
        assert_eq!(spec.field(&["spec"], "tags").list_kind(&[]), ListKind::Set);
        assert!(spec.field(&["spec"], "ref").atomic_map(&[]));
        assert!(spec.field(&["spec"], "extra").is_map(&[]));
        assert!(matches!(root.field(&[], "metadata"), Shape::Builtin));
        assert!(matches!(spec.field(&["spec"], "nope"), Shape::Deduced));
    }
}
