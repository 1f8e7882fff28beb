//! `metadata.managedFields`: which manager owns which fields, recorded on every write as
//! upstream's field manager does (k8s.io/apimachinery `managedfields`).
//!
//! A create, update or non-apply patch makes its manager (the `fieldManager` parameter,
//! or the first segment of the User-Agent: `kubectl`) the `Update` owner of the fields it
//! added or changed; those fields leave every other owner, and removed fields leave all
//! owners. Apply ([`crate::apply`]) records `Apply` entries. Clients may send
//! managedFields: a valid list replaces the stored one, an empty list (or `[{}]`) clears
//! it, and anything that does not decode keeps the stored one, so garbage never sticks.

use serde_json::{json, Map, Value};

use crate::catalog::{Resource, Subresource};
use crate::field_diff::{self, Comparison};
use crate::field_types::Shape;
use crate::fieldset::{field, FieldSet};
use crate::meta;
use crate::rest::Call;
use crate::status::ApiError;

/// Upstream's limit on the length of a manager name.
const MAX_MANAGER_LEN: usize = 128;
/// Update entries beyond this many are folded, oldest first, into one.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
    pub time: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    /// Whether this entry is `writer`'s for `operation` (upstream's manager identity:
    /// name, operation, subresource, and the apiVersion for updates).
    pub fn belongs_to(&self, writer: &Writer, operation: Operation) -> bool {
        self.manager == writer.manager
            && self.operation == operation
            && self.subresource == writer.subresource
            && (operation == Operation::Apply || self.api_version == writer.api_version)
    }

    /// How conflict messages name the manager: `"kubectl"`, or for updates
    /// `"kubectl-edit" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    fn decode(v: &Value) -> Result<Entry, String> {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let operation = match v["operation"].as_str() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        if s("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        if v["fieldsType"] != "FieldsV1" {
            return Err(format!("invalid fieldsType {}", v["fieldsType"]));
        }
        let fields = match v.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(f) => FieldSet::from_fields_v1(f)?,
        };
        Ok(Entry {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            subresource: s("subresource"),
            time: v["time"].as_str().map(str::to_string),
            fields,
        })
    }

    fn encode(&self) -> Value {
        let mut e = json!({
            "manager": self.manager,
            "operation": self.operation.name(),
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(t) = &self.time {
            e["time"] = json!(t);
        }
        if !self.subresource.is_empty() {
            e["subresource"] = json!(self.subresource);
        }
        e
    }
}

/// All of an object's entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Managed {
    pub entries: Vec<Entry>,
}

impl Managed {
    /// Decodes a `managedFields` list; an error names what is wrong.
    pub fn decode(list: &Value) -> Result<Managed, String> {
        let items = list.as_array().ok_or("managedFields must be a list")?;
        let mut managed = Managed::default();
        for item in items {
            let entry = Entry::decode(item)?;
            // A repeated manager: the last entry wins, as upstream's map of managers does.
            managed.entries.retain(|e| {
                !(e.manager == entry.manager
                    && e.operation == entry.operation
                    && e.subresource == entry.subresource
                    && (e.operation == Operation::Apply || e.api_version == entry.api_version))
            });
            managed.entries.push(entry);
        }
        Ok(managed)
    }

    /// The entries stored in `obj` (none if they do not decode).
    pub fn of(obj: &Value) -> Managed {
        obj.get("metadata")
            .and_then(|m| m.get("managedFields"))
            .and_then(|l| Managed::decode(l).ok())
            .unwrap_or_default()
    }

    /// Writes the entries into `obj`, sorted as upstream sorts them; none removes the field.
    pub fn store(mut self, obj: &mut Value) {
        self.entries.retain(|e| !e.fields.is_empty());
        let meta = meta::meta_mut(obj);
        if self.entries.is_empty() {
            meta.remove("managedFields");
            return;
        }
        self.entries.sort_by(|a, b| {
            (
                a.operation,
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.operation,
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        let list = self.entries.iter().map(Entry::encode).collect();
        meta.insert("managedFields".into(), Value::Array(list));
    }

    /// Takes `changed` fields away from every entry and `removed` ones too (upstream's
    /// forced update: the writer becomes their only owner).
    pub fn disown(&mut self, changed: &FieldSet, removed: &FieldSet) {
        for e in &mut self.entries {
            e.fields = e.fields.difference(changed).difference(removed);
        }
        self.entries.retain(|e| !e.fields.is_empty());
    }

    /// Folds the oldest Update entries into `ancient-changes` until at most
    /// [`MAX_UPDATE_MANAGERS`] are left, as upstream caps them.
    fn cap_updaters(&mut self) {
        loop {
            let updaters = self
                .entries
                .iter()
                .filter(|e| e.operation == Operation::Update)
                .count();
            if updaters <= MAX_UPDATE_MANAGERS {
                return;
            }
            let Some(oldest) = (0..self.entries.len())
                .filter(|&i| {
                    let e = &self.entries[i];
                    e.operation == Operation::Update && e.manager != ANCIENT_CHANGES
                })
                .min_by(|&a, &b| {
                    let (a, b) = (&self.entries[a], &self.entries[b]);
                    (&a.time, &a.manager).cmp(&(&b.time, &b.manager))
                })
            else {
                return;
            };
            let victim = self.entries[oldest].clone();
            let bucket = self.entries.iter_mut().find(|e| {
                e.operation == Operation::Update
                    && e.manager == ANCIENT_CHANGES
                    && e.api_version == victim.api_version
                    && e.subresource.is_empty()
            });
            match bucket {
                Some(bucket) => {
                    bucket.fields.union_with(&victim.fields);
                    bucket.time = victim.time.clone();
                    self.entries.remove(oldest);
                }
                None => {
                    let e = &mut self.entries[oldest];
                    e.manager = ANCIENT_CHANGES.to_string();
                    e.subresource.clear();
                }
            }
        }
    }
}

/// Who is writing, as managedFields names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    pub manager: String,
    pub subresource: String,
    pub api_version: String,
}

impl Writer {
    /// The writer of `call`: the `fieldManager` parameter, or the User-Agent's product
    /// (`kubectl/v1.32.4 (linux/amd64) ...` is `kubectl`). A bad `fieldManager` is a 422.
    pub fn of(call: &Call) -> Result<Writer, ApiError> {
        let given = call.params.str("fieldManager");
        validate_manager(given, &call.req.verb)?;
        let manager = if given.is_empty() {
            let agent = call
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let mut name = String::new();
            for c in agent.split('/').next().unwrap_or("").chars() {
                if c.is_control() {
                    continue;
                }
                if name.len() + c.len_utf8() > MAX_MANAGER_LEN {
                    break;
                }
                name.push(c);
            }
            name
        } else {
            given.to_string()
        };
        Ok(Writer {
            manager: if manager.is_empty() {
                "unknown".to_string()
            } else {
                manager
            },
            subresource: call.req.subresource.clone(),
            api_version: call.res.api_version(),
        })
    }

    fn entry(&self, operation: Operation, fields: FieldSet) -> Entry {
        Entry {
            manager: self.manager.clone(),
            operation,
            api_version: self.api_version.clone(),
            subresource: self.subresource.clone(),
            time: Some(meta::now()),
            fields,
        }
    }
}

/// The Status of an invalid `fieldManager` (upstream validates the request's options).
pub fn invalid_options(
    verb: &str,
    field_name: &str,
    reason: &'static str,
    message: &str,
) -> ApiError {
    let kind = match verb {
        "create" => "CreateOptions",
        "update" => "UpdateOptions",
        _ => "PatchOptions",
    };
    let mut err = ApiError::new(
        422,
        "Invalid",
        format!("{kind}.meta.k8s.io \"\" is invalid: {field_name}: {message}"),
    );
    err.details = Some(json!({"group": "meta.k8s.io", "kind": kind,
        "causes": [{"reason": reason, "message": message, "field": field_name}]}));
    err
}

fn validate_manager(manager: &str, verb: &str) -> Result<(), ApiError> {
    if manager.len() > MAX_MANAGER_LEN {
        return Err(invalid_options(
            verb,
            "fieldManager",
            "FieldValueTooLong",
            &format!("Too long: may not be more than {MAX_MANAGER_LEN} bytes"),
        ));
    }
    if let Some((i, c)) = manager.char_indices().find(|(_, c)| c.is_control()) {
        return Err(invalid_options(
            verb,
            "fieldManager",
            "FieldValueInvalid",
            &format!(
                "Invalid value: {}: invalid character U+{:04X} (at position {i})",
                json!(manager),
                c as u32
            ),
        ));
    }
    Ok(())
}

/// Metadata fields nobody owns (upstream's stripped fields).
const STRIPPED_META: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// Removes from `set` what a write through `subresource` cannot own: the server's
/// metadata, and the fields the (sub)resource resets (status on the main resource when
/// it has a status subresource; all but status through `/status`).
pub fn ownable(set: &mut FieldSet, res: &Resource, subresource: &str) {
    set.remove_child("f:apiVersion");
    set.remove_child("f:kind");
    set.edit_child("f:metadata", |m| {
        m.set_member(false);
        for f in STRIPPED_META {
            m.remove_child(&field(f));
        }
    });
    match subresource {
        "status" => set.retain_children(|k| k == "f:status"),
        "scale" => set.retain_children(|k| k == "f:spec"),
        _ if res.has(Subresource::Status) => set.remove_child("f:status"),
        _ => {}
    }
}

/// [`ownable`] for each part of a comparison.
pub fn ownable_comparison(cmp: &mut Comparison, res: &Resource, subresource: &str) {
    ownable(&mut cmp.added, res, subresource);
    ownable(&mut cmp.modified, res, subresource);
    ownable(&mut cmp.removed, res, subresource);
}

/// The entries a write starts from: the stored ones, unless the request (`sent`, the
/// `managedFields` of the new object) replaces or clears them. Subresource writes always
/// keep the stored ones.
fn starting_point(sent: Option<Value>, old: &Value, subresource: &str) -> Managed {
    let sent = match sent {
        Some(s) if subresource.is_empty() && !s.is_null() => s,
        _ => return Managed::of(old),
    };
    let reset = match sent.as_array() {
        Some(list) if list.is_empty() => true,
        Some(list) if list.len() == 1 => list[0].as_object().is_some_and(Map::is_empty),
        _ => false,
    };
    if reset {
        return Managed::default();
    }
    match Managed::decode(&sent) {
        Ok(m) if !m.entries.is_empty() => m,
        _ => Managed::of(old),
    }
}

/// Records a create, update or non-apply patch of `old` into `new` by `writer`
/// (`old` is `{}` for a create).
pub fn record_update(res: &Resource, writer: &Writer, old: &Value, new: &mut Value) {
    let sent = meta::meta_mut(new).remove("managedFields");
    let mut managed = starting_point(sent, old, &writer.subresource);
    let mut cmp = field_diff::compare(Some(old), Some(new), Shape::of(res));
    ownable_comparison(&mut cmp, res, &writer.subresource);
    let (changed, removed) = cmp.into_changed_and_removed();
    managed.disown(&changed, &removed);
    if !changed.is_empty() {
        match managed
            .entries
            .iter_mut()
            .find(|e| e.belongs_to(writer, Operation::Update))
        {
            Some(e) => {
                e.fields.union_with(&changed);
                e.time = Some(meta::now());
            }
            None => managed
                .entries
                .push(writer.entry(Operation::Update, changed)),
        }
    }
    managed.cap_updaters();
    managed.store(new);
}

/// Records the creation of `obj` by `call`: by an apply of the fields `applied`, or
/// otherwise as an update from nothing.
pub fn record_create(
    call: &Call,
    obj: &mut Value,
    applied: Option<FieldSet>,
) -> Result<(), ApiError> {
    let writer = Writer::of(call)?;
    match applied {
        Some(fields) => {
            meta::meta_mut(obj).remove("managedFields");
            Managed {
                entries: vec![writer.entry(Operation::Apply, fields)],
            }
            .store(obj);
        }
        None => record_update(&call.res, &writer, &json!({}), obj),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn writer(manager: &str) -> Writer {
        Writer {
            manager: manager.into(),
            subresource: String::new(),
            api_version: "v1".into(),
        }
    }

    fn fields(obj: &Value, manager: &str) -> Value {
        obj["metadata"]["managedFields"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["manager"] == manager))
            .map(|e| e["fieldsV1"].clone())
            .unwrap_or(Value::Null)
    }

    #[test]
    fn updates_take_ownership_of_what_they_change() {
        let cm = Catalog::builtin().lookup("", "v1", "configmaps").unwrap();
        let mut created = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "uid": "u", "labels": {"x": "1"}}, "data": {"a": "1", "b": "2"}});
        record_update(&cm, &writer("kubectl-create"), &json!({}), &mut created);
        assert_eq!(
            fields(&created, "kubectl-create"),
            json!({"f:data": {".": {}, "f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}})
        );
        assert_eq!(
            created["metadata"]["managedFields"][0]["operation"],
            "Update"
        );

        let mut edited = created.clone();
        edited["data"] = json!({"a": "9"});
        record_update(&cm, &writer("kubectl-edit"), &created, &mut edited);
        assert_eq!(
            fields(&edited, "kubectl-create"),
            json!({"f:data": {}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}})
        );
        assert_eq!(
            fields(&edited, "kubectl-edit"),
            json!({"f:data": {"f:a": {}}})
        );

        // A write that changes nothing leaves the entries as they were.
        let mut same = edited.clone();
        record_update(&cm, &writer("other"), &edited, &mut same);
        assert_eq!(same, edited);

        // Garbage sent by a client keeps the stored entries; an empty list clears them.
        let mut garbage = edited.clone();
        garbage["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Steal"}]);
        record_update(&cm, &writer("other"), &edited, &mut garbage);
        assert_eq!(garbage, edited);
        let mut cleared = edited.clone();
        cleared["metadata"]["managedFields"] = json!([]);
        record_update(&cm, &writer("other"), &edited, &mut cleared);
        assert!(cleared["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn status_is_owned_only_through_its_subresource_and_managers_are_capped() {
        let d = Catalog::builtin()
            .lookup("apps", "v1", "deployments")
            .unwrap();
        let old = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {}});
        let mut new =
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}, "status": {"replicas": 2}});
        record_update(&d, &writer("a"), &old, &mut new);
        assert_eq!(fields(&new, "a"), json!({"f:spec": {"f:replicas": {}}}));

        let mut m = Managed::default();
        for i in 0..12 {
            let mut e = writer(&format!("m{i:02}")).entry(Operation::Update, FieldSet::leaf());
            e.time = Some(format!("2024-01-01T00:00:{i:02}Z"));
            m.entries.push(e);
        }
        m.cap_updaters();
        assert_eq!(m.entries.len(), MAX_UPDATE_MANAGERS);
        assert!(m.entries.iter().any(|e| e.manager == ANCIENT_CHANGES));
        assert!(!m
            .entries
            .iter()
            .any(|e| e.manager == "m00" || e.manager == "m01"));
    }
}
