//! The generic REST handlers: one dispatcher for every catalog resource, and the read and
//! create operations. Updates and patches are in [`crate::write`], deletes in
//! [`crate::delete`], watches in [`crate::watch`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::auth::{Authorizer, User};
use crate::catalog::{Resource, Subresource};
use crate::meta;
use crate::objects::{ListOptions, NamespaceState, Objects};
use crate::request::{decode_object, read_body, Params};
use crate::request_info::{RequestInfo, ResourceRequest};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{json_response, ApiError, Cause};
use crate::{crd, defaults, delete, review, table, watch, write};

/// What every handler shares.
pub struct AppState {
    pub objects: Objects,
    pub pki: Arc<pki::Pki>,
    pub authorizer: Arc<dyn Authorizer>,
    /// Audiences a bearer token must carry one of.
    pub audiences: Vec<String>,
    /// Where Service ClusterIPs and NodePorts come from.
    pub services: crate::services::ServiceRanges,
}

/// A resource request, resolved against the catalog.
pub struct Call {
    pub res: Arc<Resource>,
    pub req: ResourceRequest,
    pub params: Params,
    pub headers: HeaderMap,
    /// Who asks (set by the authentication middleware).
    pub user: Option<User>,
}

/// The fallback handler: every `/api/...` and `/apis/...` path that is not discovery.
pub async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(RequestInfo::Resource(req)) = parts.extensions.get::<RequestInfo>().cloned() else {
        return ApiError::path_not_found().into_response();
    };
    let params = Params::parse(parts.uri.query().unwrap_or(""));
    let user = parts.extensions.get::<User>().cloned();
    let result = match resolve(&state, req, params, parts.headers, user) {
        Ok(call) => run(&state, call, body).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn resolve(
    state: &AppState,
    req: ResourceRequest,
    params: Params,
    headers: HeaderMap,
    user: Option<User>,
) -> Result<Call, ApiError> {
    let res = state
        .objects
        .catalog
        .lookup(&req.group, &req.version, &req.resource)
        .ok_or_else(ApiError::path_not_found)?;
    let sub_ok = match req.subresource.as_str() {
        "" => true,
        "status" => res.has(Subresource::Status),
        "scale" => res.has(Subresource::Scale),
        "token" => res.has(Subresource::Token),
        _ => false,
    };
    // A namespaced object needs its namespace; a cluster-scoped one must not have one.
    let scope_ok = if res.namespaced {
        req.name.is_empty() || !req.namespace.is_empty()
    } else {
        req.namespace.is_empty()
    };
    if !sub_ok || !scope_ok || (!req.subresource.is_empty() && req.name.is_empty()) {
        return Err(ApiError::path_not_found());
    }
    // Creating, or deleting a collection, across all namespaces has no route upstream.
    let all_namespaces = res.namespaced && req.namespace.is_empty() && res.stored;
    if all_namespaces && matches!(req.verb.as_str(), "create" | "deletecollection") {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let verb = if req.subresource.is_empty() {
        req.verb.as_str()
    } else {
        "get"
    };
    if !res.allows(verb) {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    Ok(Call {
        res,
        req,
        params,
        headers,
        user,
    })
}

async fn run(state: &AppState, call: Call, body: Body) -> Result<Response, ApiError> {
    let sub = call.req.subresource.as_str();
    match (call.req.verb.as_str(), sub) {
        ("get", "") | ("get", "status") => get(state, &call).await,
        ("get", "scale") => write::get_scale(state, &call).await,
        ("create", "token") => review::token_request(state, &call, read_body(body).await?).await,
        ("list", "") => list(state, &call).await,
        ("watch", "") => watch::watch(state, &call).await,
        ("create", "") if call.req.name.is_empty() && !call.res.stored => {
            review::create(state, &call, read_body(body).await?).await
        }
        ("create", "") if call.req.name.is_empty() => {
            create(state, &call, read_body(body).await?).await
        }
        ("update", _) => write::update(state, &call, read_body(body).await?).await,
        ("patch", _) => write::patch(state, &call, read_body(body).await?).await,
        ("delete", "") => delete::delete(state, &call, read_body(body).await?).await,
        ("deletecollection", "") => {
            delete::delete_collection(state, &call, read_body(body).await?).await
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// A single object as a response (a Table row when the client asked for one).
pub fn object_response(call: &Call, code: StatusCode, obj: Value) -> Response {
    if table::wanted(&call.headers) && code == StatusCode::OK && call.req.subresource.is_empty() {
        return json_response(code, &table::for_object(&call.res, &obj, &call.params));
    }
    json_response(code, &obj)
}

async fn get(state: &AppState, call: &Call) -> Result<Response, ApiError> {
    let obj = state
        .objects
        .get(&call.res, &call.req.namespace, &call.req.name)
        .await?;
    Ok(object_response(call, StatusCode::OK, obj))
}

/// List options from the query: selectors, limit/continue and resourceVersion rules.
pub async fn list_options(state: &AppState, call: &Call) -> Result<ListOptions, ApiError> {
    let p = &call.params;
    let mut opts = ListOptions {
        labels: LabelSelector::parse(p.str("labelSelector"))?,
        fields: FieldSelector::parse(p.str("fieldSelector"), &call.res)?,
        limit: p.int("limit")?.unwrap_or(0) as usize,
        continue_token: p
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        revision: 0,
    };
    let rv = p.str("resourceVersion");
    if opts.continue_token.is_some() && !rv.is_empty() && rv != "0" {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    if !rv.is_empty() && rv != "0" {
        let rv: i64 = rv
            .parse()
            .ok()
            .filter(|rv| *rv > 0)
            .ok_or_else(|| ApiError::bad_request(format!("invalid resource version {rv:?}")))?;
        let current = state
            .objects
            .store
            .revision()
            .await
            .map_err(|e| ApiError::from_store(&call.res, "", e))?;
        if rv > current {
            return Err(ApiError::timeout(format!(
                "Too large resource version: {rv}, current: {current}"
            )));
        }
        // Exact reads at that revision; NotOlderThan (and no match) read the latest,
        // which is never older.
        if p.str("resourceVersionMatch") == "Exact" {
            opts.revision = rv;
        }
    }
    Ok(opts)
}

async fn list(state: &AppState, call: &Call) -> Result<Response, ApiError> {
    let opts = list_options(state, call).await?;
    let (res, ns) = (&call.res, &call.req.namespace);
    if table::wanted(&call.headers) {
        let page = state.objects.list(res, ns, &opts).await?;
        return Ok(json_response(
            StatusCode::OK,
            &table::for_list(res, &page, &call.params),
        ));
    }
    let page = state.objects.list_raw(res, ns, &opts).await?;
    Ok(stream_list(res.clone(), page).await?.into_response())
}

/// Size of the pieces a list is sent in.
const LIST_PIECE: usize = 128 * 1024;

/// The JSON list of `page`, written from the store's bytes without parsing them (see
/// [`crate::objects::write_list`]). A big list is written on a blocking thread while the
/// pieces already written are sent: an error in its first piece answers as usual, a later
/// one (a corrupt stored object) can only cut the response short.
async fn stream_list(
    res: Arc<Resource>,
    page: crate::objects::RawPage,
) -> Result<Response, ApiError> {
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    if page.kvs.iter().map(|kv| kv.value.len()).sum::<usize>() < LIST_PIECE {
        let mut body = Vec::new();
        crate::objects::write_list(&res, &page, usize::MAX, |all| {
            body = all;
            true
        })?;
        return Ok((StatusCode::OK, json, body).into_response());
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, ApiError>>(4);
    tokio::task::spawn_blocking(move || {
        let sent = crate::objects::write_list(&res, &page, LIST_PIECE, |piece| {
            tx.blocking_send(Ok(piece.into())).is_ok()
        });
        if let Err(e) = sent {
            tracing::error!("list {}: {}", res.qualified(), e.message);
            let _ = tx.blocking_send(Err(e));
        }
    });
    let first = match rx.recv().await {
        Some(Ok(piece)) => piece,
        Some(Err(e)) => return Err(e),
        None => return Err(ApiError::internal("the list writer stopped".to_string())),
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        let piece = rx.recv().await?.map_err(std::io::Error::other);
        Some((piece, rx))
    });
    let body = futures::stream::once(async move { Ok(first) }).chain(rest);
    Ok((StatusCode::OK, json, Body::from_stream(body)).into_response())
}

/// A `<Kind>List` object.
pub fn list_body(
    res: &Resource,
    mut items: Vec<Value>,
    revision: i64,
    continue_token: Option<String>,
) -> Value {
    if res.builtin {
        // Upstream's typed lists carry kind and apiVersion only on the list.
        for item in &mut items {
            if let Some(m) = item.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
        }
    }
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": res.list_kind(),
        "apiVersion": res.api_version(),
        "metadata": metadata,
        "items": items,
    })
}

/// Checks (and fills in when missing) `apiVersion` and `kind` against the resource.
pub fn check_type(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    let want_version = res.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(want_version),
        Some(v) if v == want_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want_version})"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(res.kind),
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )))
        }
    }
    Ok(())
}

/// Kind-specific normalisation on every write, as upstream's conversion and defaulting
/// do it: Secret `stringData` folds into `data`, defaults fill missing fields, CRDs get
/// their status.
pub fn normalize(res: &Resource, obj: &mut Value) {
    if crd::is_crd(res) {
        crd::normalize(obj);
    }
    defaults::apply(res, obj);
    if res.group.is_empty() && res.kind == "Secret" {
        {
            if let Some(Value::Object(string_data)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                if !obj.get("data").is_some_and(Value::is_object) {
                    obj["data"] = json!({});
                }
                for (k, v) in string_data {
                    let v = v.as_str().unwrap_or_default();
                    obj["data"][k] = json!(STANDARD.encode(v));
                }
            }
            if obj
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                obj["type"] = json!("Opaque");
            }
        }
    }
}

/// Validation every write shares: metadata, plus the kind-specific checks this slice has.
/// Custom resources are also defaulted and pruned by their schema here.
pub fn validate(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    let mut causes = meta::validate_meta(obj, res.name_rule);
    causes.extend(crd::apply_schema(res, obj));
    if crd::is_crd(res) {
        causes.extend(crd::validate(obj));
    }
    if res.group.is_empty() && matches!(res.kind.as_str(), "ConfigMap" | "Secret") {
        for field in ["data", "binaryData"] {
            if let Some(Value::Object(data)) = obj.get(field) {
                for key in data.keys() {
                    let ok = !key.is_empty()
                        && key.len() <= 253
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
                    if !ok {
                        causes.push(Cause::invalid(&format!("{field}[{key}]"), key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
                    }
                }
            }
        }
    }
    if res.has(Subresource::Scale) {
        if let Some(r) = obj.get("spec").and_then(|s| s.get("replicas")) {
            if r.as_i64().is_none_or(|r| r < 0) {
                causes.push(Cause::invalid(
                    "spec.replicas",
                    &r.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, meta::name(obj), causes))
    }
}

/// The server-owned fields of a new object.
fn prepare_create(res: &Resource, obj: &mut Value) {
    let meta = meta::meta_mut(obj);
    for owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
    ] {
        meta.remove(owned);
    }
    meta.insert("uid".into(), json!(meta::new_uid()));
    meta.insert("creationTimestamp".into(), json!(meta::now()));
    if res.generation {
        meta.insert("generation".into(), json!(1));
    }
    if res.group.is_empty() && res.kind == "Namespace" {
        let name = meta.get("name").cloned().unwrap_or_default();
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("kubernetes.io/metadata.name".into(), name);
        }
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
    } else if res.has(Subresource::Status) && !res.builtin {
        // Custom resources drop status on create, as upstream does.
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    } else if res.has(Subresource::Status) && !crd::is_crd(res) {
        // Status is written through /status only; a new object starts without one.
        obj["status"] = if res.group.is_empty() && res.kind == "Pod" {
            json!({"phase": "Pending"})
        } else {
            json!({})
        };
    }
    normalize(res, obj);
}

async fn create(state: &AppState, call: &Call, body: bytes::Bytes) -> Result<Response, ApiError> {
    let obj = decode_object(&call.headers, &body)?;
    create_object(state, call, obj, None).await
}

/// Creates `obj`; `applied` is the field set of a server-side apply that creates it
/// (its manager's managedFields entry), `None` for a plain create.
pub(crate) async fn create_object(
    state: &AppState,
    call: &Call,
    mut obj: Value,
    applied: Option<crate::fieldset::FieldSet>,
) -> Result<Response, ApiError> {
    let res = &call.res;
    check_type(res, &mut obj)?;
    let ns = call.req.namespace.clone();
    {
        let meta = meta::meta_mut(&mut obj);
        let body_ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if res.namespaced {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
    }
    let generate = meta::str_field(&obj, "generateName").to_string();
    if meta::name(&obj).is_empty() && !generate.is_empty() {
        meta::meta_mut(&mut obj).insert("name".into(), json!(meta::generate_name(&generate)));
    }
    prepare_create(res, &mut obj);
    validate(res, &mut obj)?;
    crate::managed_fields::record_create(call, &mut obj, applied)?;
    if res.namespaced {
        match state.objects.namespace_state(&ns).await? {
            NamespaceState::Missing => return Err(ApiError::namespace_not_found(&ns)),
            NamespaceState::Terminating => {
                return Err(ApiError::forbidden(format!(
                    "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    res.qualified(),
                    meta::name(&obj)
                )))
            }
            NamespaceState::Active => {}
        }
    }
    // Held until the object is stored: it keeps the namespace's quota lock.
    let admitted = crate::admission::admit_create(state, call, &mut obj).await?;
    if call.params.dry_run()? {
        return Ok(admitted.respond(json_response(StatusCode::CREATED, &obj)));
    }
    let store = state.objects.store.clone();
    let claimed = match crate::services::is_service(res) {
        true => {
            state
                .services
                .allocate(store.as_ref(), res, &mut obj)
                .await?
        }
        false => Vec::new(),
    };
    let created = create_named(state, res, obj, &generate).await;
    if created.is_err() {
        crate::services::release_keys(store.as_ref(), &claimed).await;
    }
    created.map(|r| admitted.respond(r))
}

/// Creates `obj`; a generated name that collides gets a new suffix, as upstream retries.
async fn create_named(
    state: &AppState,
    res: &Resource,
    mut obj: Value,
    generate: &str,
) -> Result<Response, ApiError> {
    let mut attempts = 0;
    loop {
        match state.objects.create(res, &obj).await {
            Ok(created) => {
                if crd::is_crd(res) {
                    crd::register(&state.objects.catalog, &created);
                }
                return Ok(json_response(StatusCode::CREATED, &created));
            }
            Err(e) if e.reason == "AlreadyExists" && !generate.is_empty() && attempts < 8 => {
                attempts += 1;
                meta::meta_mut(&mut obj)
                    .insert("name".into(), json!(meta::generate_name(generate)));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn big_lists_stream_the_same_bytes() {
        let res = crate::catalog::Catalog::builtin()
            .lookup("", "v1", "configmaps")
            .unwrap();
        let page = crate::objects::RawPage {
            kvs: (0..300)
                .map(|i| store::KeyValue {
                    key: format!("/registry/core/configmaps/d/c{i:03}"),
                    value: serde_json::to_vec(&json!({"kind": "ConfigMap",
                        "metadata": {"name": format!("c{i:03}"), "resourceVersion": "1"},
                        "data": {"k": "v".repeat(1000)}}))
                    .unwrap(),
                    create_revision: i + 2,
                    mod_revision: i + 2,
                })
                .collect(),
            revision: 400,
            continue_token: Some("next".into()),
        };
        let whole = crate::objects::list_json(&res, &page).unwrap();
        assert!(whole.len() > 2 * LIST_PIECE);
        let resp = stream_list(res, page).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, whole);
        let list: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(list["items"][299]["metadata"]["resourceVersion"], "301");
        assert_eq!(list["metadata"]["continue"], "next");
    }
}
