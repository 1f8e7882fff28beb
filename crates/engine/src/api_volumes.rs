//! The volume endpoints: list, create, inspect, remove, prune.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_containers::{flag, Params};
use crate::container_inspect::{dangling_matches, labels_match};
use crate::error::{ApiError, ApiResult};
use crate::Engine;

pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

fn view(engine: &Engine, v: &volume::Volume) -> Value {
    json!({
        "Name": v.name,
        "Driver": v.driver,
        "Mountpoint": engine.volumes.mountpoint(&v.name).display().to_string(),
        "CreatedAt": v.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "Labels": v.labels,
        "Scope": "local",
        "Options": if v.options.is_empty() { Value::Null } else { json!(v.options) },
    })
}

fn matches(
    engine: &Engine,
    v: &volume::Volume,
    filters: &HashMap<String, Vec<String>>,
) -> ApiResult<bool> {
    for (key, values) in filters {
        let ok = match key.as_str() {
            "name" => values.iter().any(|x| v.name.contains(x.as_str())),
            "driver" => values.contains(&v.driver),
            "label" => labels_match(&v.labels, values),
            "dangling" => dangling_matches(engine.volumes.users(&v.name).is_empty(), values),
            // Prune's: anonymous volumes only unless all=true.
            "all" => true,
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list(
    State(engine): State<Arc<Engine>>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let filters = crate::container_inspect::parse_filters(p.get("filters").map(String::as_str))?;
    let mut out = Vec::new();
    for v in engine.volumes.list() {
        if matches(&engine, &v, &filters)? {
            out.push(view(&engine, &v));
        }
    }
    Ok(Json(json!({"Volumes": out, "Warnings": []})))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    driver_opts: HashMap<String, String>,
    labels: HashMap<String, String>,
}

async fn create(State(engine): State<Arc<Engine>>, bytes: Bytes) -> ApiResult<impl IntoResponse> {
    let b: CreateBody = match bytes.is_empty() {
        true => CreateBody::default(),
        false => serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON in request body: {e}")))?,
    };
    let name = (!b.name.is_empty()).then_some(b.name.as_str());
    let v = engine
        .volumes
        .create(name, Some(&b.driver), b.labels, b.driver_opts)?;
    engine.events.volume("create", &v.name);
    Ok((StatusCode::CREATED, Json(view(&engine, &v))))
}

async fn inspect(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let v = engine.volumes.get(&name)?;
    Ok(Json(view(&engine, &v)))
}

async fn remove(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    engine.volumes.remove(&name, flag(&p, "force"))?;
    engine.events.volume("destroy", &name);
    Ok(StatusCode::NO_CONTENT)
}

async fn prune(
    State(engine): State<Arc<Engine>>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let filters = crate::container_inspect::parse_filters(p.get("filters").map(String::as_str))?;
    let all = filters
        .get("all")
        .is_some_and(|v| v.iter().any(|x| matches!(x.as_str(), "true" | "1")));
    // Check the filters once, so a bad one is an error rather than a silent keep.
    if let Some(k) = filters
        .keys()
        .find(|k| !matches!(k.as_str(), "label" | "all"))
    {
        return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
    }
    let e2 = engine.clone();
    let (deleted, reclaimed) = engine
        .volumes
        .prune(all, |v| !matches(&e2, v, &filters).unwrap_or(false));
    for name in &deleted {
        engine.events.volume("destroy", name);
    }
    Ok(Json(
        json!({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}
