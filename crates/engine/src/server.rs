//! Serves the Docker Engine API on a unix socket.
//!
//! HTTP/1.1 only, with upgrades, because `attach` and `exec start` hijack the connection.
//! Paths may carry a `/v1.xx` prefix; it is checked against the supported range and removed
//! before routing, as dockerd does.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tower::ServiceExt;

use crate::{
    api_containers, api_exec, api_images, api_networks, api_system, api_volumes, ApiError, Config,
    Engine,
};

/// Opens the engine, recovers its containers, and serves until `shutdown` completes; then
/// removes the containers it made ahead of demand (containers keep running).
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let engine = Engine::open(config.clone()).await?;
    let listener = bind(&config.socket)?;
    tracing::info!(socket = %config.socket.display(), "serving the Docker Engine API");
    let expiry = tokio::spawn(expire_warm(engine.clone()));
    let served = tokio::select! {
        r = serve_on(engine.clone(), listener) => r,
        () = shutdown => Ok(()),
    };
    expiry.abort();
    engine.warm.drain(&engine).await;
    served
}

async fn expire_warm(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(crate::warm::IDLE / 10);
    loop {
        tick.tick().await;
        engine.warm.expire(&engine).await;
    }
}

fn bind(path: &std::path::Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket left by a killed daemon would make bind fail; nobody can be listening on it
    // if connecting fails.
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

pub async fn serve_on(
    engine: Arc<Engine>,
    listener: UnixListener,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let router = routes(engine);
    loop {
        let (stream, _) = listener.accept().await?;
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let router = router.clone();
                async move { Ok::<_, std::convert::Infallible>(dispatch(router, req).await) }
            });
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

async fn dispatch(router: Router, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let mut req = req.map(Body::new);
    match strip_version(req.uri()) {
        Ok(Some(uri)) => *req.uri_mut() = uri,
        Ok(None) => {}
        Err(e) => return axum::response::IntoResponse::into_response(e),
    }
    tracing::debug!(method = %req.method(), uri = %req.uri(), "request");
    match router.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// `/v1.47/containers/json?all=1` → `/containers/json?all=1`, refusing unsupported versions.
fn strip_version(uri: &axum::http::Uri) -> Result<Option<axum::http::Uri>, ApiError> {
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(None);
    };
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(requested) = parse_version(version) else {
        return Ok(None);
    };
    if requested > parse_version(crate::API_VERSION).unwrap_or_default() {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {}",
            crate::API_VERSION
        )));
    }
    if requested < parse_version(crate::MIN_API_VERSION).unwrap_or_default() {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is {}, \
             please upgrade your client to a newer version",
            crate::MIN_API_VERSION
        )));
    }
    let pq = match uri.query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    pq.parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("invalid path {path}")))
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn routes(engine: Arc<Engine>) -> Router {
    Router::new()
        .merge(api_system::routes())
        .merge(api_containers::routes())
        .merge(api_exec::routes())
        .merge(api_images::routes())
        .merge(api_networks::routes())
        .merge(api_volumes::routes())
        .fallback(|req: Request<Body>| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("page not found: {} {}", req.method(), req.uri().path()),
            )
        })
        .with_state(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_is_stripped_and_checked() {
        let uri: axum::http::Uri = "/v1.43/containers/json?all=1".parse().unwrap();
        assert_eq!(
            strip_version(&uri).unwrap().unwrap(),
            "/containers/json?all=1"
        );
        let uri: axum::http::Uri = "/_ping".parse().unwrap();
        assert!(strip_version(&uri).unwrap().is_none());
        let uri: axum::http::Uri = "/v9.99/info".parse().unwrap();
        assert_eq!(
            strip_version(&uri).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let uri: axum::http::Uri = "/v1.12/info".parse().unwrap();
        assert!(strip_version(&uri).unwrap_err().message.contains("too old"));
        // "/volumes" starts with "/v" but is not a version.
        let uri: axum::http::Uri = "/volumes".parse().unwrap();
        assert!(strip_version(&uri).unwrap().is_none());
    }
}
