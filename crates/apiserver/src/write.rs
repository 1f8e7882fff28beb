//! Updates (PUT) and patches (PATCH) of objects and of their `status` and `scale`
//! subresources. All of them go through [`Objects::update`]'s read-modify-write loop, so
//! a stale `metadata.resourceVersion` is a 409 and concurrent writers never lose updates.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::apply;
use crate::catalog::{Resource, Subresource};
use crate::managed_fields::{self, record_update, Writer};
use crate::meta;
use crate::objects::Objects;
use crate::patch::{self, PatchType};
use crate::request::{content_type, decode_object};
use crate::rest::{check_type, normalize, object_response, validate, AppState, Call};
use crate::status::{json_response, ApiError, Cause};

/// Metadata fields only the server sets: carried over from the stored object on update.
const SERVER_OWNED: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
];

/// The new state of `old` after a main-resource write of `new`.
pub fn prepare_update(res: &Resource, old: &Value, mut new: Value) -> Result<Value, ApiError> {
    check_type(res, &mut new)?;
    let name = meta::name(old).to_string();
    let body_name = meta::name(&new);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_ns = meta::namespace(&new);
    if res.namespaced && !body_ns.is_empty() && body_ns != meta::namespace(old) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let body_uid = meta::uid(&new).to_string();
    if !body_uid.is_empty() && body_uid != meta::uid(old) {
        return Err(ApiError::conflict(
            res,
            &name,
            &format!(
                "Precondition failed: UID in precondition: {body_uid}, UID in object meta: {}",
                meta::uid(old)
            ),
        ));
    }
    {
        let old_meta = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let meta = meta::meta_mut(&mut new);
        meta.insert("name".into(), json!(name));
        match old_meta.get("namespace") {
            Some(ns) => meta.insert("namespace".into(), ns.clone()),
            None => meta.remove("namespace"),
        };
        for field in SERVER_OWNED {
            match old_meta.get(*field) {
                Some(v) => meta.insert(field.to_string(), v.clone()),
                None => meta.remove(*field),
            };
        }
    }
    if res.group.is_empty() && res.kind == "Namespace" {
        new["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    }
    if res.has(Subresource::Status) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    normalize(res, &mut new);
    if res.generation && new.get("spec") != old.get("spec") {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        new["metadata"]["generation"] = json!(generation);
    }
    if meta::is_deleting(old) {
        let before = meta::finalizers(old);
        if let Some(added) = meta::finalizers(&new)
            .into_iter()
            .find(|f| !before.contains(f))
        {
            return Err(ApiError::invalid(
                res,
                &name,
                vec![Cause::forbidden(
                    "metadata.finalizers",
                    &format!("no new finalizers can be added if the object is being deleted, found new finalizers [{added:?}]"),
                )],
            ));
        }
    }
    validate(res, &mut new)?;
    Ok(new)
}

/// The new state of `old` after a `/status` write of `new`: only `.status` changes.
fn prepare_status(res: &Resource, old: &Value, new: &Value) -> Result<Value, ApiError> {
    let mut checked = new.clone();
    check_type(res, &mut checked)?;
    let mut out = old.clone();
    match new.get("status") {
        Some(s) => out["status"] = s.clone(),
        None => {
            if let Some(m) = out.as_object_mut() {
                m.remove("status");
            }
        }
    }
    // The caller's resourceVersion stays the precondition.
    out["metadata"]["resourceVersion"] = json!(meta::resource_version(new));
    Ok(out)
}

/// The `autoscaling/v1` Scale view of a workload.
pub fn to_scale(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut metadata = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(f) {
            metadata[f] = v.clone();
        }
    }
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// The new state of `old` after writing `scale`: its `spec.replicas`.
fn apply_scale(res: &Resource, old: &Value, scale: &Value) -> Result<Value, ApiError> {
    let name = meta::name(old);
    let replicas = &scale["spec"]["replicas"];
    let Some(n) = replicas.as_i64().filter(|n| *n >= 0) else {
        return Err(ApiError::invalid(
            res,
            name,
            vec![Cause::invalid(
                "spec.replicas",
                &replicas.to_string(),
                "must be greater than or equal to 0",
            )],
        ));
    };
    let mut out = old.clone();
    if out["spec"]["replicas"] != json!(n) {
        out["spec"]["replicas"] = json!(n);
        if res.generation {
            out["metadata"]["generation"] =
                json!(old["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
        }
    }
    out["metadata"]["resourceVersion"] = json!(meta::resource_version(scale));
    Ok(out)
}

pub async fn get_scale(state: &AppState, call: &Call) -> Result<Response, ApiError> {
    let obj = state
        .objects
        .get(&call.res, &call.req.namespace, &call.req.name)
        .await?;
    Ok(json_response(StatusCode::OK, &to_scale(&obj)))
}

fn respond(state: &AppState, call: &Call, obj: Value) -> Response {
    if crate::crd::is_crd(&call.res) && !call.params.dry_run().unwrap_or(false) {
        crate::crd::register(&state.objects.catalog, &obj);
    }
    match call.req.subresource.as_str() {
        "scale" => json_response(StatusCode::OK, &to_scale(&obj)),
        _ => object_response(call, StatusCode::OK, obj),
    }
}

/// Runs `f` in the store's read-modify-write loop and records the write in the result's
/// managedFields.
async fn run_update<F>(
    objects: &Objects,
    call: &Call,
    dry_run: bool,
    mut f: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let writer = Writer::of(call)?;
    let admission = crate::admission::UpdateCheck::prepare(objects, call).await?;
    objects
        .update(
            &call.res,
            &call.req.namespace,
            &call.req.name,
            dry_run,
            |old| {
                let mut new = f(&old)?;
                admission.check(call, &old, &mut new)?;
                record_update(&call.res, &writer, &old, &mut new);
                Ok(new)
            },
        )
        .await
}

/// PUT: replace the object (or its status, or its scale).
pub async fn update(
    state: &AppState,
    call: &Call,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let res = &call.res;
    let dry_run = call.params.dry_run()?;
    let body = decode_object(&call.headers, &body)?;
    let updated = match call.req.subresource.as_str() {
        "" => {
            run_update(&state.objects, call, dry_run, |old| {
                prepare_update(res, old, body.clone())
            })
            .await?
        }
        "status" => {
            run_update(&state.objects, call, dry_run, |old| {
                prepare_status(res, old, &body)
            })
            .await?
        }
        "scale" => {
            run_update(&state.objects, call, dry_run, |old| {
                apply_scale(res, old, &body)
            })
            .await?
        }
        _ => return Err(ApiError::path_not_found()),
    };
    Ok(respond(state, call, updated))
}

/// PATCH: apply a JSON, merge or strategic merge patch to the latest object, retrying
/// on concurrent writes (a resourceVersion inside the patch is a precondition), or a
/// server-side apply.
pub async fn patch(
    state: &AppState,
    call: &Call,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let res = &call.res;
    let dry_run = call.params.dry_run()?;
    let kind = PatchType::from_content_type(content_type(&call.headers))?;
    if kind == PatchType::Apply {
        return server_side_apply(state, call, &body).await;
    }
    if call.params.get("force").is_some() {
        return Err(managed_fields::invalid_options(
            "patch",
            "force",
            "FieldValueForbidden",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    let updated = match call.req.subresource.as_str() {
        "" => {
            run_update(&state.objects, call, dry_run, |old| {
                let patched = patch::apply(kind, res, old, &body)?;
                prepare_update(res, old, patched)
            })
            .await?
        }
        "status" => {
            run_update(&state.objects, call, dry_run, |old| {
                let patched = patch::apply(kind, res, old, &body)?;
                prepare_status(res, old, &patched)
            })
            .await?
        }
        "scale" => {
            run_update(&state.objects, call, dry_run, |old| {
                // Scale patches are plain structs upstream: strategic means merge here.
                let kind = if kind == PatchType::Strategic {
                    PatchType::Merge
                } else {
                    kind
                };
                let patched = patch::apply(kind, res, &to_scale(old), &body)?;
                apply_scale(res, old, &patched)
            })
            .await?
        }
        _ => return Err(ApiError::path_not_found()),
    };
    Ok(respond(state, call, updated))
}

/// Server-side apply of the body to the object, or its creation when it does not exist.
async fn server_side_apply(
    state: &AppState,
    call: &Call,
    body: &[u8],
) -> Result<Response, ApiError> {
    let res = &call.res;
    let force = match call.params.str("force") {
        "" | "false" | "False" | "0" => false,
        "true" | "True" | "1" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid force value {other:?}: not a boolean"
            )))
        }
    };
    if call.params.str("fieldManager").is_empty() {
        return Err(managed_fields::invalid_options(
            "patch",
            "fieldManager",
            "FieldValueRequired",
            "Required value: is required for apply patch",
        ));
    }
    let status = match call.req.subresource.as_str() {
        "" => false,
        "status" => true,
        _ => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "server-side apply is not supported for the {} subresource; use a merge patch",
                    call.req.subresource
                ),
            ))
        }
    };
    let dry_run = call.params.dry_run()?;
    let writer = Writer::of(call)?;
    let config = apply::parse_config(res, body, &call.req.name, &call.req.namespace)?;
    loop {
        let updated = state
            .objects
            .update(res, &call.req.namespace, &call.req.name, dry_run, |old| {
                let applied = apply::apply(res, &writer, &old, &config, force)?;
                let mut new = if status {
                    prepare_status(res, &old, &applied.object)?
                } else {
                    prepare_update(res, &old, applied.object)?
                };
                applied.managed.store(&mut new);
                Ok(new)
            })
            .await;
        match updated {
            Ok(obj) => return Ok(respond(state, call, obj)),
            Err(e) if e.code == 404 && !status => {
                let fields = apply::applied_fields(res, &writer, &config)?;
                let created = crate::rest::create_object(
                    state,
                    call,
                    apply::new_object(&config),
                    Some(fields),
                )
                .await;
                match created {
                    // Created meanwhile by someone else: apply to theirs.
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    other => return other,
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn updates_keep_server_fields_and_bump_generation_on_spec_changes() {
        let c = Catalog::builtin();
        let d = c.lookup("apps", "v1", "deployments").unwrap();
        let mut old = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "a", "uid": "u1", "generation": 1, "creationTimestamp": "t", "resourceVersion": "5"},
            "spec": {"replicas": 1}, "status": {"replicas": 1}});
        // Stored objects are defaulted.
        crate::defaults::apply(&d, &mut old);
        let new = json!({"metadata": {"name": "web", "labels": {"x": "y"}}, "spec": {"replicas": 1}, "status": {"replicas": 9}});
        let out = prepare_update(&d, &old, new).unwrap();
        assert_eq!(out["metadata"]["uid"], "u1");
        assert_eq!(out["metadata"]["generation"], 1);
        assert_eq!(out["status"]["replicas"], 1);
        let new = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}});
        let out = prepare_update(&d, &old, new).unwrap();
        assert_eq!(out["metadata"]["generation"], 2);
        let bad = json!({"metadata": {"name": "other"}});
        assert_eq!(prepare_update(&d, &old, bad).unwrap_err().code, 400);
        let scaled = apply_scale(&d, &old, &json!({"spec": {"replicas": 4}})).unwrap();
        assert_eq!(
            (
                scaled["spec"]["replicas"].as_i64(),
                scaled["metadata"]["generation"].as_i64()
            ),
            (Some(4), Some(2))
        );
        assert_eq!(to_scale(&old)["spec"]["replicas"], 1);
    }
}
