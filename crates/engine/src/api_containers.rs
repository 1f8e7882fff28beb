//! The container endpoints of the Docker Engine API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bollard_stubs::models::ContainerCreateBody;
use futures::StreamExt;
use serde_json::json;

use crate::container_io::{AttachOptions, LogsOptions};
use crate::error::{ApiError, ApiResult};
use crate::Engine;
use crate::{
    container_create, container_inspect, container_io, container_remove, container_start,
    container_stop,
};

pub type Params = HashMap<String, String>;

/// Docker's boolean query values: "1", "true", "True".
pub fn flag(p: &Params, key: &str) -> bool {
    p.get(key)
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
}

pub fn int(p: &Params, key: &str) -> ApiResult<Option<i64>> {
    match p.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v}"))),
    }
}

pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/containers/json", get(list))
        .route("/containers/create", post(create))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}", delete(remove))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/logs", get(logs))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/stats", get(stats))
}

async fn list(
    State(engine): State<Arc<Engine>>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let all = flag(&p, "all");
    let filters = container_inspect::parse_filters(p.get("filters").map(String::as_str))?;
    let limit = int(&p, "limit")?.filter(|l| *l > 0);
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    let mut containers: Vec<_> = engine.containers.all().iter().map(|e| e.get()).collect();
    containers.sort_by_key(|c| std::cmp::Reverse(c.created));
    for c in containers {
        if !all
            && !c.state.status.is_running()
            && !filters.contains_key("status")
            && limit.is_none()
        {
            continue;
        }
        if container_inspect::matches(&c, &filters)? {
            let mut row = container_inspect::summary(&c, now);
            let (ports, nets) = crate::container_network::summary(&engine, &c);
            row.ports = Some(ports);
            row.network_settings = serde_json::from_value(nets).ok();

            rows.push(row);
        }
    }
    if let Some(l) = limit {
        rows.truncate(l as usize);
    }
    Ok(Json(rows))
}

async fn create(
    State(engine): State<Arc<Engine>>,
    Query(p): Query<Params>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let body: ContainerCreateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in request body: {e}")))?;
    let (id, warnings) = container_create::create(&engine, p.get("name").cloned(), body).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": id, "Warnings": warnings})),
    ))
}

async fn inspect(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    let execs: Vec<String> = engine
        .execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|e| e.container_id == entry.id)
        .map(|e| e.id.clone())
        .collect();
    let c = entry.get();
    let mut v = container_inspect::inspect(&c, &entry.paths, execs, flag(&p, "size"));
    v["NetworkSettings"] = crate::container_network::settings(&engine, &c, c.state.pid);

    Ok(Json(v))
}

async fn remove(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    container_remove::remove(&engine, &entry, flag(&p, "force"), flag(&p, "v")).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn prune(State(engine): State<Arc<Engine>>) -> ApiResult<impl IntoResponse> {
    let (deleted, reclaimed) = container_remove::prune(&engine).await?;
    Ok(Json(
        json!({"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}

async fn start(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    Ok(if container_start::start(&engine, &entry).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

async fn stop(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    let stopped =
        container_stop::stop(&engine, &entry, p.get("signal").cloned(), int(&p, "t")?).await?;
    Ok(if stopped {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

async fn restart(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    container_stop::restart(&engine, &entry, p.get("signal").cloned(), int(&p, "t")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn kill(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    container_stop::kill(
        &engine,
        &entry,
        p.get("signal").cloned().filter(|s| !s.is_empty()),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pause(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    container_stop::pause(&engine, &entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unpause(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    container_stop::unpause(&engine, &entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Answers at once with the headers and sends the body when the condition is met, as
/// dockerd does (the docker CLI sends `wait` before `start` and reads it later).
async fn wait(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    let condition = p.get("condition").cloned().unwrap_or_default();
    let waiting = container_stop::wait(&entry, &condition)?;
    let body = futures::stream::once(async move {
        let (code, error) = waiting.await;
        let mut v = json!({"StatusCode": code});
        if let Some(e) = error {
            v["Error"] = json!({"Message": e});
        }
        Ok::<_, std::io::Error>(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .expect("static response"))
}

async fn rename(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    container_remove::rename(
        &engine,
        &entry,
        p.get("name").map(String::as_str).unwrap_or(""),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn resize(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    let h = int(&p, "h")?.unwrap_or(0);
    let w = int(&p, "w")?.unwrap_or(0);
    let Some(shim) = entry.shim() else {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            entry.id
        )));
    };
    if entry.get().tty() {
        shim.resize(
            h.clamp(0, u16::MAX as i64) as u16,
            w.clamp(0, u16::MAX as i64) as u16,
        )
        .await?;
    }
    Ok(StatusCode::OK)
}

async fn attach(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
    mut req: Request,
) -> ApiResult<Response<Body>> {
    let entry = engine.containers.find(&id)?;
    let opts = AttachOptions {
        stdin: flag(&p, "stdin"),
        stdout: flag(&p, "stdout"),
        stderr: flag(&p, "stderr"),
        logs: flag(&p, "logs"),
        stream: flag(&p, "stream"),
    };
    let tty = entry.get().tty();
    let Some((resp, on_upgrade)) = crate::hijack::upgrade(&mut req, tty) else {
        return Err(ApiError::bad_request(
            "attach needs a connection upgrade (Upgrade: tcp)",
        ));
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => {
                if let Err(e) = container_io::attach(entry, io, opts).await {
                    tracing::debug!("attach: {e}");
                }
            }
            Err(e) => tracing::debug!("attach upgrade: {e}"),
        }
    });
    Ok(resp)
}

fn parse_since(v: Option<&String>) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    let Some(v) = v.filter(|v| !v.is_empty() && v.as_str() != "0") else {
        return Ok(None);
    };
    if let Ok(secs) = v.parse::<f64>() {
        return Ok(chrono::DateTime::from_timestamp(
            secs.trunc() as i64,
            (secs.fract() * 1e9) as u32,
        ));
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| Some(t.with_timezone(&chrono::Utc)))
        .map_err(|_| ApiError::bad_request(format!("invalid time value: {v}")))
}

async fn logs(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<Response<Body>> {
    let entry = engine.containers.find(&id)?;
    let tail = match p.get("tail").map(String::as_str) {
        None | Some("") | Some("all") => None,
        Some(t) => Some(
            t.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail: {t}")))?,
        ),
    };
    let opts = LogsOptions {
        follow: flag(&p, "follow"),
        stdout: flag(&p, "stdout"),
        stderr: flag(&p, "stderr"),
        timestamps: flag(&p, "timestamps"),
        tail,
        since: parse_since(p.get("since"))?,
        until: parse_since(p.get("until"))?,
    };
    let tty = entry.get().tty();
    let body = container_io::logs(entry, opts)?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, crate::hijack::content_type(tty))
        .body(Body::from_stream(body))
        .expect("static response"))
}

async fn top(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let entry = engine.containers.find(&id)?;
    let ps_args = p.get("ps_args").cloned().unwrap_or_default();
    let e2 = engine.clone();
    let r = tokio::task::spawn_blocking(move || crate::container_stats::top(&e2, &entry, &ps_args))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(r))
}

/// One sample (`stream=false`, with a previous sample taken a moment before so CPU % is
/// meaningful) or a sample a second until the client leaves.
async fn stats(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<Response<Body>> {
    let entry = engine.containers.find(&id)?;
    let stream = p
        .get("stream")
        .is_none_or(|v| matches!(v.as_str(), "1" | "true" | "True"));
    let one_shot = flag(&p, "one-shot");
    let first = crate::container_stats::sample(&engine, &entry, None)?;
    if !stream {
        let v = if one_shot || !entry.get().state.status.is_running() {
            first
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            crate::container_stats::sample(&engine, &entry, Some(&first))?
        };
        return Ok(Json(v).into_response());
    }
    let mut head = serde_json::to_vec(&first).unwrap_or_default();
    head.push(b'\n');
    let head = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) });
    let body = head.chain(futures::stream::unfold(
        (engine, entry, Some(first)),
        |(engine, entry, pre)| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let v = crate::container_stats::sample(&engine, &entry, pre.as_ref()).ok()?;
            let mut line = serde_json::to_vec(&v).ok()?;
            line.push(b'\n');
            Some((
                Ok::<_, std::io::Error>(Bytes::from(line)),
                (engine, entry, Some(v)),
            ))
        },
    ));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body.boxed()))
        .expect("static response"))
}
