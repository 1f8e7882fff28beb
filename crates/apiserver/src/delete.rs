//! DELETE of one object and of a collection, with preconditions, finalizers (an object
//! with finalizers is only marked with `deletionTimestamp`), dryRun, and the deletion of
//! a namespace's content.
//!
//! Dependents (ownerReferences) are handled per `propagationPolicy` by [`crate::gc`].

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use store::RangeRequest;

use crate::catalog::Resource;
use crate::gc::{self, Policy};
use crate::keys;
use crate::meta;
use crate::objects::{decode, deletion_blocked, Objects};
use crate::request::decode_object;
use crate::rest::{list_body, list_options, AppState, Call};
use crate::status::{deleted_status, json_response, ApiError};

/// Namespaces that may never be deleted (upstream's `system` namespaces).
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// The parts of DeleteOptions this slice honours.
#[derive(Debug, Clone, Default)]
struct DeleteOptions {
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
    policy: Policy,
}

fn delete_options(call: &Call, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let query_policy = call.params.get("propagationPolicy");
    let mut opts = DeleteOptions {
        dry_run: call.params.dry_run()?,
        policy: Policy::parse(&Value::Null, query_policy)?,
        ..Default::default()
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(opts);
    }
    let body = decode_object(&call.headers, body)?;
    opts.policy = Policy::parse(&body, query_policy)?;
    let pre = &body["preconditions"];
    opts.uid = pre["uid"].as_str().map(str::to_string);
    opts.resource_version = pre["resourceVersion"].as_str().map(str::to_string);
    if body["dryRun"]
        .as_array()
        .is_some_and(|d| d.iter().any(|v| v == "All"))
    {
        opts.dry_run = true;
    }
    Ok(opts)
}

/// What deleting one object did.
enum Outcome {
    /// Gone; the last state, with the delete's revision.
    Deleted(Value),
    /// Finalizers hold it; now marked with `deletionTimestamp`.
    Pending(Value),
}

/// Deletes one object: checks preconditions, then either removes it or, when finalizers
/// hold it, marks it. Retries when the object changes underneath.
async fn delete_one(
    objects: &Objects,
    res: &Resource,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Outcome, ApiError> {
    loop {
        let current = objects.get(res, ns, name).await?;
        let uid = meta::uid(&current);
        if let Some(want) = opts.uid.as_deref().filter(|u| *u != uid) {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        let rv = meta::resource_version(&current).to_string();
        if let Some(want) = opts.resource_version.as_deref().filter(|r| *r != rv) {
            return Err(ApiError::conflict(
                res,
                name,
                &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"),
            ));
        }
        if deletion_blocked(res, &current) {
            if meta::is_deleting(&current) {
                return Ok(Outcome::Pending(current));
            }
            let marked = objects
                .update(res, ns, name, opts.dry_run, |mut obj| {
                    if !meta::is_deleting(&obj) {
                        let m = meta::meta_mut(&mut obj);
                        m.insert("deletionTimestamp".into(), json!(meta::now()));
                        m.insert("deletionGracePeriodSeconds".into(), json!(0));
                    }
                    if res.group.is_empty() && res.kind == "Namespace" {
                        obj["status"]["phase"] = json!("Terminating");
                    }
                    Ok(obj)
                })
                .await?;
            return Ok(Outcome::Pending(marked));
        }
        if opts.dry_run {
            return Ok(Outcome::Deleted(current));
        }
        let expected: i64 = rv.parse().unwrap_or(0);
        if let Some(revision) = objects.remove(res, ns, name, expected).await? {
            if crate::services::is_service(res) {
                crate::services::release(objects.store.as_ref(), &current).await;
            }
            let mut last = current;
            meta::set_resource_version(&mut last, revision);
            return Ok(Outcome::Deleted(last));
        }
    }
}

/// Deletes one object and handles its dependents as `opts.policy` says.
async fn delete_owner(
    objects: &Objects,
    res: &Resource,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Outcome, ApiError> {
    if opts.dry_run {
        return delete_one(objects, res, ns, name, opts).await;
    }
    match opts.policy {
        Policy::Orphan => {
            let current = objects.get(res, ns, name).await?;
            gc::orphan(objects, &current).await?;
            delete_one(objects, res, ns, name, opts).await
        }
        Policy::Foreground => {
            objects
                .update(res, ns, name, false, |mut obj| {
                    let present = meta::finalizers(&obj).contains(&gc::FOREGROUND_FINALIZER);
                    if !present && !meta::is_deleting(&obj) {
                        let m = meta::meta_mut(&mut obj);
                        let f = m.entry("finalizers").or_insert_with(|| json!([]));
                        if let Some(a) = f.as_array_mut() {
                            a.push(json!(gc::FOREGROUND_FINALIZER));
                        }
                    }
                    Ok(obj)
                })
                .await?;
            let outcome = delete_one(objects, res, ns, name, opts).await?;
            if let Outcome::Pending(owner) = &outcome {
                let stored = objects
                    .catalog
                    .lookup(&res.group, &res.version, &res.plural);
                if let Some(stored) =
                    stored.filter(|_| meta::finalizers(owner).contains(&gc::FOREGROUND_FINALIZER))
                {
                    gc::finish_foreground(objects.clone(), stored, owner.clone());
                }
            }
            Ok(outcome)
        }
        Policy::Background => {
            let outcome = delete_one(objects, res, ns, name, opts).await?;
            if let Outcome::Deleted(gone) = &outcome {
                gc::collect_in_background(objects.clone(), gone);
            }
            Ok(outcome)
        }
    }
}

/// A delete on behalf of the garbage collector: `policy` for this object's own dependents.
pub(crate) async fn delete_with_policy(
    objects: &Objects,
    res: &Resource,
    ns: &str,
    name: &str,
    policy: Policy,
) -> Result<(), ApiError> {
    let opts = DeleteOptions {
        policy,
        ..Default::default()
    };
    delete_owner(objects, res, ns, name, &opts).await.map(drop)
}

pub async fn delete(
    state: &AppState,
    call: &Call,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let res = &call.res;
    let (ns, name) = (call.req.namespace.as_str(), call.req.name.as_str());
    let opts = delete_options(call, &body)?;
    let is_namespace = res.group.is_empty() && res.kind == "Namespace";
    if is_namespace && PROTECTED_NAMESPACES.contains(&name) {
        return Err(ApiError::forbidden(format!(
            "namespaces {name:?} is forbidden: this namespace may not be deleted"
        )));
    }
    let outcome = delete_owner(&state.objects, res, ns, name, &opts).await?;
    if let (Outcome::Deleted(crd), true, false) = (&outcome, crate::crd::is_crd(res), opts.dry_run)
    {
        crate::crd::delete_objects(&state.objects, crd).await?;
    }
    match outcome {
        Outcome::Pending(obj) => {
            if is_namespace && !opts.dry_run {
                tokio::spawn(finalize_namespace(state.objects.clone(), name.to_string()));
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        Outcome::Deleted(obj) if res.return_deleted || is_namespace => {
            Ok(json_response(StatusCode::OK, &obj))
        }
        Outcome::Deleted(obj) => Ok(json_response(
            StatusCode::OK,
            &deleted_status(res, name, meta::uid(&obj)),
        )),
    }
}

/// DELETE on a collection: every object the selectors match, one by one.
pub async fn delete_collection(
    state: &AppState,
    call: &Call,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let res = &call.res;
    let opts = delete_options(call, &body)?;
    let mut list = list_options(state, call).await?;
    list.limit = 0;
    list.continue_token = None;
    let page = state.objects.list(res, &call.req.namespace, &list).await?;
    let mut deleted = Vec::new();
    for item in page.items {
        let (ns, name) = (
            meta::namespace(&item).to_string(),
            meta::name(&item).to_string(),
        );
        match delete_owner(&state.objects, res, &ns, &name, &opts).await {
            Ok(Outcome::Deleted(obj) | Outcome::Pending(obj)) => deleted.push(obj),
            // Deleted by someone else meanwhile: that is what was asked.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let revision = state
        .objects
        .store
        .revision()
        .await
        .unwrap_or(page.revision);
    Ok(json_response(
        StatusCode::OK,
        &list_body(res, deleted, revision, None),
    ))
}

/// Empties a terminating namespace and then removes it: the namespace controller's job,
/// done by the API server until the controllers exist. Objects held by finalizers are
/// marked; the namespace waits for them, checking again for a while.
async fn finalize_namespace(objects: Objects, ns: String) {
    // Upstream's namespace controller starts a moment after the namespace is marked; a
    // client deleting a manifest (`kubectl delete -f`: the namespace, then its objects)
    // relies on that and fails with NotFound if the content vanishes at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut delay = Duration::from_millis(100);
    for _ in 0..60 {
        match delete_namespace_content(&objects, &ns).await {
            Ok(0) => {
                remove_namespace_finalizer(&objects, &ns).await;
                return;
            }
            Ok(left) => tracing::debug!("namespace {ns}: {left} objects still finalizing"),
            Err(e) => tracing::warn!("namespace {ns}: delete content: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    tracing::warn!("namespace {ns}: gave up waiting for its content to be deleted");
}

/// Deletes every object in namespace `ns`; returns how many are still there.
async fn delete_namespace_content(objects: &Objects, ns: &str) -> Result<usize, ApiError> {
    let mut left = 0;
    for res in objects.catalog.namespaced_storage() {
        let prefix = keys::collection_prefix(&res, Some(ns));
        let resp = objects
            .store
            .range(RangeRequest {
                prefix,
                ..Default::default()
            })
            .await
            .map_err(|e| ApiError::from_store(&res, "", e))?;
        for kv in &resp.kvs {
            let obj = decode(kv)?;
            let name = meta::name(&obj).to_string();
            match delete_one(objects, &res, ns, &name, &DeleteOptions::default()).await {
                Ok(Outcome::Pending(_)) => left += 1,
                Ok(Outcome::Deleted(_)) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(left)
}

async fn remove_namespace_finalizer(objects: &Objects, ns: &str) {
    let Some(res) = objects.catalog.lookup("", "v1", "namespaces") else {
        return;
    };
    let result = objects
        .update(&res, "", ns, false, |mut obj| {
            if let Some(f) = obj["spec"]["finalizers"].as_array_mut() {
                f.retain(|f| f != "kubernetes");
            }
            Ok(obj)
        })
        .await;
    match result {
        Ok(_) => {}
        Err(e) if e.code == 404 => {}
        Err(e) => tracing::warn!("namespace {ns}: remove finalizer: {e}"),
    }
}
