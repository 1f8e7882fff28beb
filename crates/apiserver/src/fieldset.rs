//! Sets of field paths, the unit of ownership in `metadata.managedFields`, and their
//! `FieldsV1` encoding (structured-merge-diff's trie format):
//! `{"f:spec": {"f:replicas": {}, "f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}}`.
//!
//! A path element is kept in its FieldsV1 spelling (`f:<field>`, `k:<key fields JSON>`,
//! `v:<value JSON>`, `i:<index>`), so encoding is a straight copy and elements compare as
//! plain strings. Parsing normalises `k:` and `v:` JSON so that sets from clients compare
//! equal to the ones computed here.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A set of paths, as a trie. A node is in the set when `member` is true (`.` in FieldsV1,
/// or an empty object for a leaf); its children hold the longer paths below it.
/// Invariant: no child is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

/// The element naming field `name` of an object.
pub fn field(name: &str) -> String {
    format!("f:{name}")
}

impl FieldSet {
    /// A set holding just the path that leads to it.
    pub fn leaf() -> FieldSet {
        FieldSet {
            member: true,
            children: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Whether the path leading here is itself in the set.
    pub fn is_member(&self) -> bool {
        self.member
    }

    pub fn set_member(&mut self, member: bool) {
        self.member = member;
    }

    pub fn child(&self, element: &str) -> Option<&FieldSet> {
        self.children.get(element)
    }

    pub fn children(&self) -> impl Iterator<Item = (&String, &FieldSet)> {
        self.children.iter()
    }

    /// Adds `set` below `element` (a union with what is there already).
    pub fn add_child(&mut self, element: String, set: FieldSet) {
        if set.is_empty() {
            return;
        }
        match self.children.get_mut(&element) {
            Some(existing) => existing.union_with(&set),
            None => {
                self.children.insert(element, set);
            }
        }
    }

    /// Changes the child at `element` (if there is one), dropping it if it ends up empty.
    pub fn edit_child(&mut self, element: &str, edit: impl FnOnce(&mut FieldSet)) {
        if let Some(child) = self.children.get_mut(element) {
            edit(child);
            if child.is_empty() {
                self.children.remove(element);
            }
        }
    }

    /// Drops `element` and everything below it.
    pub fn remove_child(&mut self, element: &str) {
        self.children.remove(element);
    }

    /// Keeps only the children `keep` accepts (and this node's membership).
    pub fn retain_children(&mut self, keep: impl Fn(&str) -> bool) {
        self.children.retain(|k, _| keep(k));
    }

    pub fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, v) in &other.children {
            match self.children.get_mut(k) {
                Some(mine) => mine.union_with(v),
                None => {
                    self.children.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// The paths of `self` that are not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, v) in &self.children {
            let rest = match other.children.get(k) {
                Some(o) => v.difference(o),
                None => v.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(k.clone(), rest);
            }
        }
        out
    }

    /// The paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, v) in &self.children {
            if let Some(o) = other.children.get(k) {
                let both = v.intersection(o);
                if !both.is_empty() {
                    out.children.insert(k.clone(), both);
                }
            }
        }
        out
    }

    /// Every path in the set, in order, as lists of elements.
    pub fn paths(&self) -> Vec<Vec<&str>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths<'a>(&'a self, prefix: &mut Vec<&'a str>, out: &mut Vec<Vec<&'a str>>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (k, v) in &self.children {
            prefix.push(k);
            v.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, v) in &self.children {
            map.insert(k.clone(), v.to_fields_v1());
        }
        Value::Object(map)
    }

    /// Parses FieldsV1 JSON; the error says what is wrong with it.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let Value::Object(map) = v else {
            return Err("fieldsV1 must be an object".into());
        };
        let mut set = FieldSet::default();
        for (k, child) in map {
            if k == "." {
                if !child.as_object().is_some_and(Map::is_empty) {
                    return Err("\".\" must map to an empty object".into());
                }
                set.member = true;
                continue;
            }
            let element = normalize_element(k)?;
            let mut sub = FieldSet::from_fields_v1(child)?;
            // A child that is an empty object is a leaf member.
            if sub.is_empty() {
                sub.member = true;
            }
            set.add_child(element, sub);
        }
        Ok(set)
    }
}

/// `element` with its JSON part in canonical form (compact, keys sorted).
fn normalize_element(element: &str) -> Result<String, String> {
    let bad = || format!("invalid field path element {element:?}");
    let (kind, rest) = element.split_at_checked(2).ok_or_else(bad)?;
    match kind {
        "f:" => Ok(element.to_string()),
        "i:" => rest
            .parse::<u64>()
            .map(|i| format!("i:{i}"))
            .map_err(|_| bad()),
        "v:" => serde_json::from_str::<Value>(rest)
            .map(|v| format!("v:{v}"))
            .map_err(|_| bad()),
        "k:" => match serde_json::from_str::<Value>(rest) {
            // serde_json's maps are sorted, so this is the canonical key spelling.
            Ok(v @ Value::Object(_)) => Ok(format!("k:{v}")),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// How upstream prints a path in conflict messages: `.spec.containers[name="web"].image`,
/// `.metadata.finalizers[="x"]`, `.spec.args[0]`.
pub fn path_string(path: &[&str]) -> String {
    let mut out = String::new();
    for element in path {
        let (kind, rest) = element.split_at_checked(2).unwrap_or(("", element));
        match kind {
            "f:" => {
                out.push('.');
                out.push_str(rest);
            }
            "k:" => {
                let keys: Vec<String> = match serde_json::from_str::<Value>(rest) {
                    Ok(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    _ => vec![rest.to_string()],
                };
                out.push_str(&format!("[{}]", keys.join(",")));
            }
            "v:" => out.push_str(&format!("[={rest}]")),
            "i:" => out.push_str(&format!("[{rest}]")),
            _ => out.push_str(element),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: Value) -> FieldSet {
        FieldSet::from_fields_v1(&v).unwrap()
    }

    #[test]
    fn fields_v1_round_trips_and_normalises_keys() {
        let v = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}});
        assert_eq!(set(v.clone()).to_fields_v1(), v);
        let spaced = set(json!({"k:{\"protocol\": \"TCP\", \"port\": 80}": {}}));
        assert_eq!(
            spaced.paths(),
            vec![vec!["k:{\"port\":80,\"protocol\":\"TCP\"}"]]
        );
        for bad in [
            json!([]),
            json!({"x:y": {}}),
            json!({"k:notjson": {}}),
            json!({".": {"f:a": {}}}),
            json!({"f:a": 1}),
        ] {
            assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_algebra_works_on_members() {
        let a = set(json!({"f:spec": {"f:replicas": {}, "f:paused": {}}, "f:data": {}}));
        let b = set(json!({"f:spec": {"f:replicas": {}}}));
        assert_eq!(
            a.difference(&b),
            set(json!({"f:spec": {"f:paused": {}}, "f:data": {}}))
        );
        assert_eq!(a.intersection(&b), b);
        let mut u = b.clone();
        u.union_with(&set(json!({"f:spec": {".": {}}})));
        assert_eq!(
            u.to_fields_v1(),
            json!({"f:spec": {".": {}, "f:replicas": {}}})
        );
        assert_eq!(
            a.paths(),
            vec![
                vec!["f:data"],
                vec!["f:spec", "f:paused"],
                vec!["f:spec", "f:replicas"]
            ]
        );
        assert!(b.difference(&a).is_empty());
    }

    #[test]
    fn paths_print_like_upstream() {
        assert_eq!(
            path_string(&["f:spec", "f:containers", "k:{\"name\":\"web\"}", "f:image"]),
            ".spec.containers[name=\"web\"].image"
        );
        assert_eq!(
            path_string(&["f:metadata", "f:finalizers", "v:\"x\""]),
            ".metadata.finalizers[=\"x\"]"
        );
        assert_eq!(
            path_string(&["f:ports", "k:{\"port\":80,\"protocol\":\"TCP\"}"]),
            ".ports[port=80,protocol=\"TCP\"]"
        );
    }
}
