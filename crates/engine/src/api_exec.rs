//! The exec endpoints: create, start (hijacked or detached), resize, inspect.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bollard_stubs::models::{ExecConfig, ExecStartConfig};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::api_containers::{int, Params};
use crate::error::{ApiError, ApiResult};
use crate::Engine;
use crate::{container_exec, container_io};

pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/resize", post(resize))
        .route("/exec/{id}/json", get(inspect))
}

async fn create(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let config: ExecConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in request body: {e}")))?;
    let entry = engine.containers.find(&id)?;
    let exec_id = container_exec::create(&engine, &entry, config)?;
    Ok((StatusCode::CREATED, Json(json!({"Id": exec_id}))))
}

async fn start(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    mut req: Request,
) -> ApiResult<Response<Body>> {
    let exec = container_exec::find(&engine, &id)?;
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let cfg: ExecStartConfig = if body.is_empty() {
        ExecStartConfig::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON in request body: {e}")))?
    };
    let shim = container_exec::prepare(&engine, &exec).await?;
    if cfg.detach.unwrap_or(false) {
        container_exec::run(&engine, &exec, shim).await?;
        return Ok(StatusCode::OK.into_response());
    }
    let tty = exec.config.tty.unwrap_or(false);
    let Some((resp, on_upgrade)) = crate::hijack::upgrade(&mut req, tty) else {
        return Err(ApiError::bad_request(
            "exec start needs a connection upgrade (Upgrade: tcp)",
        ));
    };
    let cfg = exec.config.clone();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!("exec upgrade: {e}");
                return;
            }
        };
        let attach = shim
            .attach(
                cfg.attach_stdin.unwrap_or(false),
                cfg.attach_stdout.unwrap_or(true),
                cfg.attach_stderr.unwrap_or(true),
            )
            .await;
        let attach = match attach {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("exec attach: {e}");
                return;
            }
        };
        if let Err(e) = container_exec::run(&engine, &exec, shim).await {
            tracing::warn!("exec start: {e}");
            return;
        }
        // The docker CLI reads the exit code from /exec/{id}/json as soon as the stream
        // closes: close it only once the exit is recorded.
        let mut done = exec.done.subscribe();
        let recorded = async move {
            let wait = done.wait_for(|d| *d);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), wait).await;
        };
        let (rd, wr) = tokio::io::split(TokioIo::new(io));
        container_io::pump(rd, wr, attach, tty, true, recorded).await;
    });
    Ok(resp)
}

async fn resize(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let exec = container_exec::find(&engine, &id)?;
    let h = int(&p, "h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = int(&p, "w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    if let Some(shim) = exec.state().shim {
        shim.resize(h, w).await?;
    }
    Ok(StatusCode::OK)
}

async fn inspect(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let exec = container_exec::find(&engine, &id)?;
    Ok(Json(container_exec::inspect(&exec)))
}
