//! OpenAPI: `/openapi/v3` (one document per group version, what kubectl reads) and
//! `/openapi/v2` (one Swagger 2.0 document for everything, JSON only).
//!
//! Each document has the operations of the group version's resources (see [`paths`]) and
//! the schemas of their kinds (see [`schemas`]): `kubectl explain` reads field types and
//! descriptions from them, kubectl's `apply` looks for the `fieldValidation` parameter.
//!
//! Documents are built on first request, not at start, and kept gzipped (the core group's
//! is 380 kB of JSON, 70 kB gzipped, several megabytes while it is a `Value`); clients
//! that accept gzip (client-go does) get them as they are. The cache is keyed by a
//! fingerprint of the catalog entries a document is built from, so a CRD change rebuilds
//! the documents of its group version; the hash clients see is of the content, so
//! kubectl's cache (which keeps `?hash=` URLs as immutable) is refreshed whenever a
//! document changes, also across server upgrades.
//!
//! client-go fetches `/openapi/v2` only as protobuf (`OpenAPISchema`, used by `apply` for
//! kinds without a strategic-merge-capable v3 document and by `explain
//! --output=plaintext-openapiv2`) and has no JSON fallback: it gets 406 Not Acceptable and
//! kubectl carries on without v2, as it does against servers that do not serve it.

mod paths;
mod schemas;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::sync::{Arc, LazyLock, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Map, Value};

use crate::catalog::Resource;
use crate::discovery::KUBERNETES_VERSION;
use crate::rest::AppState;
use crate::status::{json_response, ApiError};
use paths::gv_path;
use schemas::{Flavor, Schemas};

/// A built document.
#[derive(Clone)]
struct Doc {
    /// Fingerprint of what it was built from.
    inputs: u64,
    /// Hash of the JSON, as clients see it.
    hash: String,
    /// The JSON, gzipped.
    gzip: Bytes,
}

/// Built documents by `api/v1`, `apis/{group}/{version}` or `v2`.
static CACHE: LazyLock<Mutex<HashMap<String, Doc>>> = LazyLock::new(Default::default);

const V2_KEY: &str = "v2";

/// Feeds serialized JSON into a hasher without building the string.
struct HashWriter<'a>(&'a mut DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Hasher::write(self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a document built from `resources` depends on (the built-in schemas are fixed).
fn fingerprint(resources: &[Arc<Resource>]) -> u64 {
    let mut h = DefaultHasher::new();
    for r in resources {
        (&r.group, &r.version, &r.kind, &r.plural, r.namespaced).hash(&mut h);
        (&r.verbs, r.subresources.len()).hash(&mut h);
        if let Some(schema) = &r.schema {
            let _ = serde_json::to_writer(HashWriter(&mut h), schema.as_ref());
        }
    }
    h.finish()
}

/// Adds the paths and schemas of `resources`.
fn describe(
    resources: &[Arc<Resource>],
    flavor: Flavor,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut schemas = Schemas::new(flavor);
    let mut paths = Map::new();
    for r in resources {
        let names = schemas.add(r);
        paths::add(&mut paths, r, flavor, names.as_ref());
        for sub in &r.subresources {
            let (g, v, k) = sub.kind(r);
            schemas.add_kind(g, v, k, None);
        }
    }
    (paths, schemas.finish())
}

fn v3_document(resources: &[Arc<Resource>]) -> Value {
    let (paths, schemas) = describe(resources, Flavor::V3);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn v2_document(resources: &[Arc<Resource>]) -> Value {
    let (paths, definitions) = describe(resources, Flavor::V2);
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

type Build = fn(&[Arc<Resource>]) -> Value;

/// The document's hash and gzipped JSON.
fn render(resources: &[Arc<Resource>], build: Build) -> (String, Vec<u8>) {
    let value = build(resources);
    let json = serde_json::to_vec(&value).unwrap_or_default();
    drop(value);
    let mut h = DefaultHasher::new();
    json.hash(&mut h);
    let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 8), Compression::default());
    let gzip = gz
        .write_all(&json)
        .and_then(|_| gz.finish())
        .unwrap_or_default();
    (format!("{:016X}", h.finish()), gzip)
}

/// The document under `key` built from `resources`, from the cache if it is current.
async fn document(key: &str, resources: Vec<Arc<Resource>>, build: Build) -> Doc {
    let inputs = fingerprint(&resources);
    let cache = || CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(doc) = cache().get(key).filter(|d| d.inputs == inputs) {
        return doc.clone();
    }
    // Built outside the lock (two requests may both build; the last one is kept) and in
    // a thread of its own: the `Value`s take megabytes in small allocations, and glibc
    // keeps what a thread frees in that thread's arena, where a long-lived allocation
    // made meanwhile would pin it. A short-lived thread's arena is left empty and reused.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let moved = resources.clone();
    let spawned = std::thread::Builder::new()
        .name("openapi".into())
        .spawn(move || tx.send(render(&moved, build)));
    let rendered = match spawned {
        Ok(_) => rx.await.ok(),
        Err(_) => None,
    };
    let (hash, gzip) = rendered.unwrap_or_else(|| render(&resources, build));
    let doc = Doc {
        inputs,
        hash,
        // Copied into this thread's arena, so that the builder's is left empty.
        gzip: Bytes::copy_from_slice(&gzip),
    };
    drop(gzip);
    cache().insert(key.to_string(), doc.clone());
    doc
}

/// True unless the client accepts only something other than JSON (client-go asks for
/// OpenAPI v2 as protobuf alone).
fn accepts_json(headers: &HeaderMap) -> bool {
    let mut any = false;
    for value in headers.get_all(header::ACCEPT) {
        for media in value.to_str().unwrap_or("").split(',') {
            let media = media.split(';').next().unwrap_or("").trim();
            if media.is_empty() {
                continue;
            }
            any = true;
            if ["application/json", "application/*", "*/*"]
                .iter()
                .any(|m| media.eq_ignore_ascii_case(m))
            {
                return true;
            }
        }
    }
    !any
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().any(|v| {
        v.to_str().unwrap_or("").split(',').any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let refused = |p: &str| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            };
            parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip")) && !parts.any(refused)
        })
    })
}

fn not_acceptable() -> Response {
    ApiError::new(
        406,
        "NotAcceptable",
        "only application/json is served for OpenAPI documents",
    )
    .into_response()
}

/// Serves a document with its ETag; a `?hash=` request for the current content may be
/// cached for good, one for an old hash is sent to the current URL (as upstream does).
fn serve(doc: &Doc, url: Option<&str>, query: Option<&str>, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", doc.hash);
    let asked = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "hash")
            .map(|(_, v)| v.into_owned())
    });
    let mut response = match (&asked, url) {
        (Some(hash), Some(url)) if *hash != doc.hash => {
            let location = format!("{url}?hash={}", doc.hash);
            return (
                StatusCode::MOVED_PERMANENTLY,
                [(header::LOCATION, location)],
            )
                .into_response();
        }
        _ if headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes()) =>
        {
            StatusCode::NOT_MODIFIED.into_response()
        }
        _ if accepts_gzip(headers) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            doc.gzip.clone(),
        )
            .into_response(),
        _ => {
            let mut json = Vec::new();
            let _ = GzDecoder::new(doc.gzip.as_ref()).read_to_end(&mut json);
            ([(header::CONTENT_TYPE, "application/json")], json).into_response()
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if asked.is_some() {
        let expires = chrono::Utc::now() + chrono::Duration::days(365);
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
        if let Ok(v) =
            HeaderValue::from_str(&expires.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        {
            h.insert(header::EXPIRES, v);
        }
    }
    response
}

/// `/openapi/v3`: where each group version's document is, with the hash of its content.
pub async fn root(State(state): State<Arc<AppState>>) -> Response {
    let catalog = &state.objects.catalog;
    let mut paths = Map::new();
    for g in catalog.groups() {
        for v in &g.versions {
            let resources = catalog.resources(&g.name, v);
            let p = gv_path(&g.name, v);
            let doc = document(&p, resources, v3_document).await;
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", doc.hash)}),
            );
        }
    }
    // Forget group versions no longer served (deleted CRDs).
    CACHE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|k, _| k == V2_KEY || paths.contains_key(k));
    json_response(StatusCode::OK, &json!({"paths": paths}))
}

/// `/openapi/v3/api/{version}`
pub async fn core(
    State(state): State<Arc<AppState>>,
    Path(version): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    group_version(&state, "", &version, query.as_deref(), &headers).await
}

/// `/openapi/v3/apis/{group}/{version}`
pub async fn group(
    State(state): State<Arc<AppState>>,
    Path((group, version)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if group.is_empty() {
        return ApiError::path_not_found().into_response();
    }
    group_version(&state, &group, &version, query.as_deref(), &headers).await
}

async fn group_version(
    state: &AppState,
    group: &str,
    version: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let resources = state.objects.catalog.resources(group, version);
    if resources.is_empty() {
        return ApiError::path_not_found().into_response();
    }
    if !accepts_json(headers) {
        return not_acceptable();
    }
    let p = gv_path(group, version);
    let doc = document(&p, resources, v3_document).await;
    serve(&doc, Some(&format!("/openapi/v3/{p}")), query, headers)
}

/// `/openapi/v2`: every served kind in one Swagger 2.0 document.
pub async fn v2(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let doc = document(V2_KEY, state.objects.catalog.all(), v2_document).await;
    serve(&doc, None, None, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn doc(c: &Catalog, group: &str, version: &str) -> Value {
        v3_document(&c.resources(group, version))
    }

    #[test]
    fn operations_carry_gvk_and_field_validation() {
        let c = Catalog::builtin();
        let doc = doc(&c, "apps", "v1");
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(
            item["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert_eq!(
            item["patch"]["operationId"],
            "patchAppsV1NamespacedDeployment"
        );
        assert!(item["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        // No strategic merge patch: kubectl must not build patches from these schemas.
        let content = item["patch"]["requestBody"]["content"].as_object().unwrap();
        assert!(!content.contains_key("application/strategic-merge-patch+json"));
        assert_eq!(
            item["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.Deployment"
        );
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"][0]
                ["group"],
            "autoscaling"
        );
        let core = self::doc(&c, "", "v1");
        assert!(core["paths"]["/api/v1/namespaces/{name}"].is_object());
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        assert!(accepts_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
        );
        assert!(!accepts_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, */*"),
        );
        assert!(accepts_json(&h));
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
    }

    #[tokio::test]
    async fn documents_are_rebuilt_when_their_resources_change() {
        let c = Catalog::builtin();
        let key = "apis/test.example.com/v1";
        let mut r = (*c.lookup("", "v1", "configmaps").unwrap()).clone();
        r.group = "test.example.com".into();
        r.kind = "Gadget".into();
        r.builtin = false;
        r.schema = Some(Arc::new(json!({"type": "object", "description": "one"})));
        let first = document(key, vec![Arc::new(r.clone())], v3_document).await;
        let again = document(key, vec![Arc::new(r.clone())], v3_document).await;
        assert_eq!(first.hash, again.hash);
        r.schema = Some(Arc::new(json!({"type": "object", "description": "two"})));
        let second = document(key, vec![Arc::new(r)], v3_document).await;
        assert_ne!(first.hash, second.hash);
        let mut json = Vec::new();
        GzDecoder::new(second.gzip.as_ref())
            .read_to_end(&mut json)
            .unwrap();
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            v["components"]["schemas"]["com.example.test.v1.Gadget"]["description"],
            "two"
        );
    }
}
