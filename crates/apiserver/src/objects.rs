//! JSON objects in the store: encoding (without `metadata.resourceVersion`, which is the
//! key's mod_revision on every read), reads, paginated lists with selectors, and the
//! optimistic-concurrency update loop upstream calls `GuaranteedUpdate`.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use store::{KeyValue, RangeRequest, Revision, Store};

use crate::catalog::{Catalog, Resource};
use crate::keys;
use crate::meta;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// The object in `kv`, with its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        tracing::error!("stored object {} is not JSON: {e}", kv.key);
        ApiError::internal(format!("stored object {} is corrupt", kv.key))
    })?;
    meta::set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// The object in `kv` as `res` serves it: a custom resource stored through one version
/// reads with the apiVersion of the version asked for (versions share storage and differ
/// only in name until conversion webhooks exist).
pub fn decode_as(res: &Resource, kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj = decode(kv)?;
    if !res.builtin {
        obj["apiVersion"] = json!(res.api_version());
    }
    Ok(obj)
}

/// The bytes stored for `obj`: without resourceVersion, which the store tracks itself.
pub fn encode(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    meta::strip_resource_version(&mut obj);
    serde_json::to_vec(&obj).expect("JSON values always serialize")
}

/// Equal apart from resourceVersion: an update that changes nothing is not written.
pub fn same_object(a: &Value, b: &Value) -> bool {
    encode(a) == encode(b)
}

/// Whether finalizers keep `obj` from going away (for namespaces, also `spec.finalizers`).
pub fn deletion_blocked(res: &Resource, obj: &Value) -> bool {
    let spec_finalizers = res.group.is_empty()
        && res.kind == "Namespace"
        && obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
    !meta::finalizers(obj).is_empty() || spec_finalizers
}

/// What a list asks for.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// At most this many items (0 = all).
    pub limit: usize,
    /// A continue token from a previous page.
    pub continue_token: Option<String>,
    /// Read at this revision (0 = the latest).
    pub revision: Revision,
}

/// One page of a list.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub items: Vec<Value>,
    /// The revision the whole list (every page) is read at.
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// The continue token: the list's revision and the last key returned, relative to the
/// list's prefix (so a token cannot be replayed against another collection's keys).
fn make_continue(revision: Revision, prefix: &str, last_key: &str) -> String {
    let start = last_key.strip_prefix(prefix).unwrap_or(last_key);
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    URL_SAFE_NO_PAD.encode(token.to_string())
}

fn parse_continue(token: &str, prefix: &str) -> Result<(Revision, String), ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad("not base64"))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad("not JSON"))?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad("unknown version"));
    }
    let rv = v["rv"]
        .as_i64()
        .filter(|rv| *rv > 0)
        .ok_or_else(|| bad("no revision"))?;
    let start = v["start"].as_str().unwrap_or("");
    if start.is_empty() || start.split('/').any(|s| s == ".." || s == ".") {
        return Err(bad("invalid start key"));
    }
    Ok((rv, format!("{prefix}{start}")))
}

/// The state of a namespace, for writes into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceState {
    Missing,
    Active,
    Terminating,
}

/// Objects of every catalog resource over one store.
#[derive(Clone)]
pub struct Objects {
    pub store: Arc<dyn Store>,
    pub catalog: Arc<Catalog>,
}

impl Objects {
    pub fn new(store: Arc<dyn Store>, catalog: Arc<Catalog>) -> Objects {
        Objects { store, catalog }
    }

    /// One object and its mod_revision, or 404.
    pub async fn get(&self, res: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.get_opt(res, ns, name)
            .await?
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    pub async fn get_opt(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let key = keys::object_key(res, ns, name);
        let kv = self
            .store
            .get(&key, 0)
            .await
            .map_err(|e| ApiError::from_store(res, name, e))?;
        kv.as_ref().map(|kv| decode_as(res, kv)).transpose()
    }

    pub async fn namespace_state(&self, ns: &str) -> Result<NamespaceState, ApiError> {
        let res = self.catalog.lookup("", "v1", "namespaces").ok_or_else(|| {
            ApiError::internal("the namespaces resource is not registered".to_string())
        })?;
        Ok(match self.get_opt(&res, "", ns).await? {
            None => NamespaceState::Missing,
            Some(obj) if meta::is_deleting(&obj) => NamespaceState::Terminating,
            Some(_) => NamespaceState::Active,
        })
    }

    /// One page of the objects of `res` in `ns` ("" = all namespaces) that match the
    /// selectors. Filtering happens here, so a page may take several store reads to fill;
    /// all of them are at one revision, as is every later page of the same list.
    pub async fn list(
        &self,
        res: &Resource,
        ns: &str,
        opts: &ListOptions,
    ) -> Result<ListPage, ApiError> {
        let prefix = keys::collection_prefix(res, Some(ns));
        let (mut revision, mut start_after) = match &opts.continue_token {
            Some(token) => {
                let (rv, start) = parse_continue(token, &prefix)?;
                (rv, Some(start))
            }
            None => (opts.revision, None),
        };
        let mut page = ListPage::default();
        let filtered = !opts.labels.is_empty() || !opts.fields.is_empty();
        loop {
            let want = opts.limit.saturating_sub(page.items.len());
            let resp = self
                .store
                .range(RangeRequest {
                    prefix: prefix.clone(),
                    revision,
                    // Unfiltered, exactly what is missing; filtered, a full page at a time.
                    limit: if filtered { opts.limit } else { want },
                    start_after: start_after.clone(),
                    count_only: false,
                })
                .await
                .map_err(|e| match e {
                    store::Error::Compacted { .. } if opts.continue_token.is_some() => {
                        ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
                    }
                    e => ApiError::from_store(res, "", e),
                })?;
            revision = resp.revision;
            page.revision = resp.revision;
            let n = resp.kvs.len();
            for (i, kv) in resp.kvs.iter().enumerate() {
                start_after = Some(kv.key.clone());
                let obj = decode_as(res, kv)?;
                if opts.labels.matches(&obj) && opts.fields.matches(&obj) {
                    page.items.push(obj);
                }
                if opts.limit > 0 && page.items.len() >= opts.limit {
                    if i + 1 < n || resp.more {
                        page.continue_token = Some(make_continue(revision, &prefix, &kv.key));
                    }
                    return Ok(page);
                }
            }
            if !resp.more {
                return Ok(page);
            }
        }
    }

    /// Creates `obj` (already prepared and validated) at its key.
    pub async fn create(&self, res: &Resource, obj: &Value) -> Result<Value, ApiError> {
        let (ns, name) = (meta::namespace(obj), meta::name(obj));
        let key = keys::object_key(res, ns, name);
        let kv = self
            .store
            .create(&key, encode(obj))
            .await
            .map_err(|e| ApiError::from_store(res, name, e))?;
        let mut out = obj.clone();
        meta::set_resource_version(&mut out, kv.mod_revision);
        Ok(out)
    }

    /// Reads the object, computes its new state with `update`, and writes it guarded by
    /// the revision it read, retrying when someone else wrote in between. `update` gets
    /// the current object (with its resourceVersion) and returns the new one; a non-empty
    /// `metadata.resourceVersion` in the result is a precondition (409 if stale). An
    /// update that changes nothing is not written. An object that is being deleted and
    /// has no finalizers left is removed. `dry_run` computes without writing.
    pub async fn update<F>(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        dry_run: bool,
        mut update: F,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(Value) -> Result<Value, ApiError>,
    {
        let key = keys::object_key(res, ns, name);
        loop {
            let kv = self
                .store
                .get(&key, 0)
                .await
                .map_err(|e| ApiError::from_store(res, name, e))?
                .ok_or_else(|| ApiError::not_found(res, name))?;
            let current = decode_as(res, &kv)?;
            let mut new = update(current.clone())?;
            let wanted = meta::resource_version(&new);
            if !wanted.is_empty() && wanted != kv.mod_revision.to_string() {
                return Err(ApiError::modified(res, name));
            }
            meta::set_resource_version(&mut new, kv.mod_revision);
            if same_object(&current, &new) || dry_run {
                return Ok(new);
            }
            let finished = meta::is_deleting(&new) && !deletion_blocked(res, &new);
            let result = if finished {
                self.store.delete(&key, kv.mod_revision).await
            } else {
                self.store.update(&key, encode(&new), kv.mod_revision).await
            };
            match result {
                Ok(kv) => {
                    meta::set_resource_version(&mut new, kv.mod_revision);
                    return Ok(new);
                }
                Err(store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(res, name, e)),
            }
        }
    }

    /// Removes the object if its mod_revision is still `expected`; returns the revision of
    /// the delete. `Ok(None)` when someone else wrote it first (the caller re-reads).
    pub async fn remove(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        expected: Revision,
    ) -> Result<Option<Revision>, ApiError> {
        let key = keys::object_key(res, ns, name);
        match self.store.delete(&key, expected).await {
            Ok(kv) => Ok(Some(kv.mod_revision)),
            Err(store::Error::Conflict { .. }) => Ok(None),
            Err(e) => Err(ApiError::from_store(res, name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_stay_inside_their_prefix() {
        let t = make_continue(
            7,
            "/registry/core/configmaps/default/",
            "/registry/core/configmaps/default/b",
        );
        let (rv, start) = parse_continue(&t, "/registry/core/configmaps/default/").unwrap();
        assert_eq!(
            (rv, start.as_str()),
            (7, "/registry/core/configmaps/default/b")
        );
        let evil = URL_SAFE_NO_PAD.encode(
            json!({"v": "meta.k8s.io/v1", "rv": 3, "start": "../../secrets/x"}).to_string(),
        );
        assert_eq!(parse_continue(&evil, "/p/").unwrap_err().code, 400);
        assert_eq!(parse_continue("!!", "/p/").unwrap_err().code, 400);
    }
}
