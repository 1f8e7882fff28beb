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

mod raw;

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

/// One page of a list with the items as the store holds them (see [`write_list`]).
#[derive(Debug, Clone, Default)]
pub struct RawPage {
    pub kvs: Vec<KeyValue>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// Whether the stored object in `kv` matches the selectors of `opts`. Only the members
/// the selectors compare are parsed; bytes the scanner refuses get a full parse.
fn selected(res: &Resource, kv: &KeyValue, opts: &ListOptions) -> Result<bool, ApiError> {
    let b = kv.value.as_slice();
    let labels = match opts.labels.is_empty() {
        true => Some(true),
        false => raw::find(b, &["metadata", "labels"]).and_then(|span| {
            let labels = match span {
                Some(r) => Some(serde_json::from_slice::<Value>(&b[r]).ok()?),
                None => None,
            };
            let labels = labels.as_ref().and_then(Value::as_object);
            let pairs: Vec<(&str, &str)> = labels
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect();
            Some(opts.labels.matches_labels(&pairs))
        }),
    };
    let matched = match labels {
        Some(false) => Some(false),
        Some(true) if opts.fields.is_empty() => Some(true),
        Some(true) => {
            let mut scanned = true;
            let m = opts.fields.matches_by(|path| {
                if path == ["apiVersion"] && !res.builtin {
                    return Some(json!(res.api_version()));
                }
                let found = raw::find(b, path).map(|span| match span {
                    Some(r) => serde_json::from_slice::<Value>(&b[r]).ok().map(Some),
                    None => Some(None),
                });
                found.flatten().unwrap_or_else(|| {
                    scanned = false;
                    None
                })
            });
            scanned.then_some(m)
        }
        None => None,
    };
    match matched {
        Some(m) => Ok(m),
        None => {
            let obj = decode_as(res, kv)?;
            Ok(opts.labels.matches(&obj) && opts.fields.matches(&obj))
        }
    }
}

/// The `<Kind>List` of `page`, written straight from the stored bytes: each item is
/// copied with its resourceVersion spliced in (as [`decode_as`] and
/// [`crate::rest::list_body`] would serve it, without parsing it). The list goes to `emit`
/// in pieces of about `piece` bytes, so a big list can be sent while it is written;
/// `emit` answers false when no one reads any more.
pub fn write_list(
    res: &Resource,
    page: &RawPage,
    piece: usize,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> Result<(), ApiError> {
    let fail = "JSON values always serialize";
    let total: usize = page.kvs.iter().map(|kv| kv.value.len() + 32).sum();
    let mut out = Vec::with_capacity(total.min(piece) + 16 * 1024);
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        metadata["continue"] = json!(c);
    }
    out.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut out, &res.list_kind()).expect(fail);
    out.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut out, &res.api_version()).expect(fail);
    out.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut out, &metadata).expect(fail);
    out.extend_from_slice(b",\"items\":[");
    let api_version = (!res.builtin).then(|| res.api_version());
    for (i, kv) in page.kvs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let rw = raw::Rewrite {
            resource_version: kv.mod_revision,
            drop_type: res.builtin,
            api_version: api_version.as_deref(),
        };
        if raw::write_item(&mut out, &kv.value, &rw).is_none() {
            let mut obj = decode_as(res, kv)?;
            if let (true, Some(m)) = (res.builtin, obj.as_object_mut()) {
                m.remove("kind");
                m.remove("apiVersion");
            }
            serde_json::to_writer(&mut out, &obj).expect(fail);
        }
        if out.len() >= piece {
            let next = Vec::with_capacity(out.capacity());
            if !emit(std::mem::replace(&mut out, next)) {
                return Ok(());
            }
        }
    }
    out.extend_from_slice(b"]}");
    emit(out);
    Ok(())
}

/// [`write_list`] in one piece.
#[cfg(test)]
pub fn list_json(res: &Resource, page: &RawPage) -> Result<Vec<u8>, ApiError> {
    let mut all = Vec::new();
    write_list(res, page, usize::MAX, |piece| {
        all.extend_from_slice(&piece);
        true
    })?;
    Ok(all)
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
        let page = self.list_raw(res, ns, opts).await?;
        Ok(ListPage {
            items: page
                .kvs
                .iter()
                .map(|kv| decode_as(res, kv))
                .collect::<Result<_, _>>()?,
            revision: page.revision,
            continue_token: page.continue_token,
        })
    }

    /// [`Objects::list`] without parsing the items.
    pub async fn list_raw(
        &self,
        res: &Resource,
        ns: &str,
        opts: &ListOptions,
    ) -> Result<RawPage, ApiError> {
        let prefix = keys::collection_prefix(res, Some(ns));
        let (mut revision, mut start_after) = match &opts.continue_token {
            Some(token) => {
                let (rv, start) = parse_continue(token, &prefix)?;
                (rv, Some(start))
            }
            None => (opts.revision, None),
        };
        let mut page = RawPage::default();
        let filtered = !opts.labels.is_empty() || !opts.fields.is_empty();
        loop {
            let want = opts.limit.saturating_sub(page.kvs.len());
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
            if let Some(kv) = resp.kvs.last() {
                start_after = Some(kv.key.clone());
            }
            for (i, kv) in resp.kvs.into_iter().enumerate() {
                if !filtered || selected(res, &kv, opts)? {
                    page.kvs.push(kv);
                }
                if opts.limit > 0 && page.kvs.len() >= opts.limit {
                    if i + 1 < n || resp.more {
                        let last = &page.kvs[page.kvs.len() - 1].key;
                        page.continue_token = Some(make_continue(revision, &prefix, last));
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
    use crate::selector::{FieldSelector, LabelSelector};

    /// A store with pods written as `encode` writes them and a few written otherwise.
    async fn pods() -> (tempfile::TempDir, Objects, Arc<Resource>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = store::SqliteStore::open(dir.path().join("db")).unwrap();
        let catalog = Arc::new(Catalog::builtin());
        let res = catalog.lookup("", "v1", "pods").unwrap();
        let objects = Objects::new(store.clone(), catalog);
        for i in 0..40 {
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p{i:02}"), "namespace": "d",
                    "labels": {"app": if i % 3 == 0 { "web" } else { "db" }, "n": i.to_string()},
                    "annotations": {"metadata": "{\"resourceVersion\":\"1\"}"}},
                "spec": {"nodeName": format!("node{}", i % 2), "containers": [{"name": "c"}],
                    "template": {"metadata": {"resourceVersion": "3"}}},
                "status": {"phase": "Pending", "message": "é \" ✓"}});
            objects.create(&res, &pod).await.unwrap();
        }
        // Not as encode writes them: a stale resourceVersion, unsorted with whitespace,
        // and bytes the scanner refuses (a second copy of a key), which parse instead.
        let raw: [&[u8]; 3] = [
            br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q0","namespace":"d","resourceVersion":"999"}}"#,
            br#" { "metadata" : { "resourceVersion" : "5", "name" : "q1" } , "kind" : "Pod" } "#,
            br#"{"kind":"Pod","kind":"Pod","metadata":{"name":"q2","labels":{"app":"web"}}}"#,
        ];
        for (i, value) in raw.into_iter().enumerate() {
            let key = keys::object_key(&res, "d", &format!("q{i}"));
            store.create(&key, value.to_vec()).await.unwrap();
        }
        (dir, objects, res)
    }

    /// Every page of the list, spliced and as the parsed items make it.
    async fn both(objects: &Objects, res: &Resource, opts: &ListOptions) -> (Value, Value) {
        let raw = objects.list_raw(res, "d", opts).await.unwrap();
        let fast: Value = serde_json::from_slice(&list_json(res, &raw).unwrap()).unwrap();
        let page = objects.list(res, "d", opts).await.unwrap();
        let parsed = crate::rest::list_body(res, page.items, page.revision, page.continue_token);
        (fast, parsed)
    }

    #[tokio::test]
    async fn spliced_lists_equal_parsed_lists() {
        let (_dir, objects, res) = pods().await;
        let (fast, parsed) = both(&objects, &res, &ListOptions::default()).await;
        assert_eq!(fast, parsed);
        let items = fast["items"].as_array().unwrap();
        assert_eq!(items.len(), 43);
        assert!(items.iter().all(|i| i.get("kind").is_none()));
        assert_eq!(
            items[41]["metadata"]["resourceVersion"], "43",
            "{}",
            items[41]
        );
        assert_eq!(items[40]["metadata"]["resourceVersion"], "42");

        let mut custom = (*res).clone();
        (custom.builtin, custom.version) = (false, "v2".into());
        let (fast, parsed) = both(&objects, &custom, &ListOptions::default()).await;
        assert_eq!(fast, parsed);
        assert_eq!(fast["items"].as_array().unwrap().len(), 43);
        assert_eq!(fast["items"][0]["apiVersion"], "v2");
        assert_eq!(fast["items"][42]["kind"], "Pod");
    }

    #[tokio::test]
    async fn selectors_and_pages_match_the_parsed_objects() {
        let (_dir, objects, res) = pods().await;
        let selectors = [
            ("app=web", ""),
            ("app in (db),n!=4", "spec.nodeName=node0"),
            ("", "metadata.name=q1"),
            ("", "status.phase!=Pending"),
            ("!app", ""),
        ];
        for (labels, fields) in selectors {
            let mut opts = ListOptions {
                labels: LabelSelector::parse(labels).unwrap(),
                fields: FieldSelector::parse(fields, &res).unwrap(),
                ..Default::default()
            };
            let items = |list: &Value| list["items"].as_array().unwrap().clone();
            let whole = items(&both(&objects, &res, &opts).await.0);
            let mut paged = Vec::new();
            opts.limit = 4;
            loop {
                let (fast, parsed) = both(&objects, &res, &opts).await;
                assert_eq!(fast, parsed);
                paged.extend(items(&fast));
                match fast["metadata"]["continue"].as_str() {
                    Some(c) => opts.continue_token = Some(c.to_string()),
                    None => break,
                }
            }
            assert_eq!(paged, whole, "{labels} {fields}");
            let want = objects
                .list(&res, "d", &ListOptions::default())
                .await
                .unwrap();
            let want = want
                .items
                .iter()
                .filter(|o| opts.labels.matches(o) && opts.fields.matches(o));
            assert_eq!(whole.len(), want.count(), "{labels} {fields}");
        }
    }

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
