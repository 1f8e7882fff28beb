//! The image endpoints: list, inspect, pull (`create`), import, push, tag, remove, prune,
//! load and save. Image names may hold slashes, so `/images/{name}/…` is routed by suffix.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{header, HeaderMap, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use crate::api_containers::{flag, Params};
use crate::error::{chain, ApiError, ApiResult};
use crate::Engine;

pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(create))
        .route("/images/load", post(load))
        .route("/images/get", get(save_many))
        .route("/images/prune", post(prune))
        .route(
            "/images/{*rest}",
            get(get_named).post(post_named).delete(remove),
        )
}

fn blocking_err(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(e.to_string())
}

fn created_ts(img: &image::Image) -> i64 {
    img.created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

async fn list(
    State(engine): State<Arc<Engine>>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let store = engine.images.clone();
    let images = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(blocking_err)??;
    let filters = crate::container_inspect::parse_filters(p.get("filters").map(String::as_str))?;
    let mut rows = Vec::new();
    for img in images {
        if let Some(d) = filters.get("dangling") {
            let dangling = img.repo_tags.is_empty();
            if d.iter().any(|v| (v == "true") != dangling) {
                continue;
            }
        }
        if let Some(refs) = filters.get("reference") {
            if !img.repo_tags.iter().any(|t| {
                refs.iter()
                    .any(|r| t == r || t.split(':').next() == Some(r.as_str()))
            }) {
                continue;
            }
        }
        let containers = engine
            .containers
            .all()
            .iter()
            .filter(|e| e.get().image_id == img.id)
            .count();
        let labels = img
            .config
            .config()
            .as_ref()
            .and_then(|c| c.labels().clone())
            .unwrap_or_default();
        rows.push(json!({
            "Id": img.id,
            "ParentId": "",
            "RepoTags": img.repo_tags,
            "RepoDigests": img.repo_digests,
            "Created": created_ts(&img),
            "Size": img.size,
            "SharedSize": -1,
            "VirtualSize": img.size,
            "Labels": labels,
            "Containers": containers,
        }));
    }
    Ok(Json(rows))
}

/// `docker image inspect`.
fn inspect_json(img: &image::Image) -> Value {
    let raw = serde_json::to_value(&img.config).unwrap_or_default();
    let layers: Vec<String> = img.config.rootfs().diff_ids().clone();
    json!({
        "Id": img.id,
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Parent": "",
        "Comment": img.config.history().as_ref().and_then(|h| h.last()).and_then(|h| h.comment().clone()).unwrap_or_default(),
        "Created": img.created.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        "DockerVersion": "",
        "Author": img.config.author().clone().unwrap_or_default(),
        "Config": docker_config(raw.get("config")),
        "Architecture": img.config.architecture().to_string(),
        "Os": img.config.os().to_string(),
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Name": "overlay2", "Data": {}},
        "RootFS": {"Type": "layers", "Layers": layers},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    })
}

/// The OCI config's keys are docker's already (`Env`, `Cmd`, …); fill what docker always
/// prints so templates like `{{.Config.Cmd}}` work.
fn docker_config(c: Option<&Value>) -> Value {
    let mut v = c.cloned().unwrap_or_else(|| json!({}));
    if let Value::Object(m) = &mut v {
        for k in ["Hostname", "Domainname", "User", "WorkingDir"] {
            m.entry(k).or_insert(json!(""));
        }
        for k in [
            "AttachStdin",
            "AttachStdout",
            "AttachStderr",
            "Tty",
            "OpenStdin",
            "StdinOnce",
        ] {
            m.entry(k).or_insert(json!(false));
        }
        for k in ["Env", "Cmd", "Entrypoint", "OnBuild"] {
            m.entry(k).or_insert(Value::Null);
        }
        m.entry("Labels").or_insert(json!({}));
        m.entry("Image").or_insert(json!(""));
        m.entry("Volumes").or_insert(Value::Null);
    }
    v
}

async fn get_named(
    State(engine): State<Arc<Engine>>,
    Path(rest): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<Response<Body>> {
    if let Some(name) = rest.strip_suffix("/json") {
        let store = engine.images.clone();
        let name = name.to_string();
        let img = tokio::task::spawn_blocking(move || store.resolve(&name))
            .await
            .map_err(blocking_err)??;
        return Ok(Json(inspect_json(&img)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save(engine, vec![name.to_string()]).await;
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let store = engine.images.clone();
        let name = name.to_string();
        let img = tokio::task::spawn_blocking(move || store.resolve(&name))
            .await
            .map_err(blocking_err)??;
        let mut rows: Vec<Value> = img
            .config
            .history()
            .iter()
            .flatten()
            .map(|h| {
                json!({
                    "Id": "<missing>",
                    "Created": h.created().as_deref().and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()).map(|t| t.timestamp()).unwrap_or(0),
                    "CreatedBy": h.created_by().clone().unwrap_or_default(),
                    "Tags": Value::Null,
                    "Size": 0,
                    "Comment": h.comment().clone().unwrap_or_default(),
                })
            })
            .collect();
        rows.reverse();
        if let Some(first) = rows.first_mut() {
            first["Id"] = json!(img.id);
            first["Tags"] = json!(img.repo_tags);
            first["Size"] = json!(img.size);
        }
        return Ok(Json(rows).into_response());
    }
    let _ = p;
    Err(ApiError::not_found(format!(
        "page not found: GET /images/{rest}"
    )))
}

async fn post_named(
    State(engine): State<Arc<Engine>>,
    Path(rest): Path<String>,
    Query(p): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response<Body>> {
    if let Some(name) = rest.strip_suffix("/tag") {
        let repo = p.get("repo").cloned().unwrap_or_default();
        if repo.is_empty() {
            return Err(ApiError::bad_request(
                "repository name must have at least one component",
            ));
        }
        let target = match p.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{repo}:{t}"),
            None => repo,
        };
        let store = engine.images.clone();
        let source = name.to_string();
        let t2 = target.clone();
        let img = tokio::task::spawn_blocking(move || {
            store.tag(&source, &t2)?;
            store.resolve(&t2)
        })
        .await
        .map_err(blocking_err)??;
        engine.events.image("tag", &img.id, &target);
        return Ok(StatusCode::CREATED.into_response());
    }
    if let Some(name) = rest.strip_suffix("/push") {
        let reference = match p.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{name}:{t}"),
            None => name.to_string(),
        };
        let creds = credentials(&headers)?;
        return Ok(progress_stream(engine, reference, creds, Transfer::Push));
    }
    Err(ApiError::not_found(format!(
        "page not found: POST /images/{rest}"
    )))
}

/// `X-Registry-Auth`: base64url of `{"username","password","serveraddress"}`.
fn credentials(headers: &HeaderMap) -> ApiResult<Option<image::Credentials>> {
    let Some(h) = headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if h.is_empty() || h == "e30=" || h == "e30" {
        return Ok(None);
    }
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(
            h.trim_end_matches('=').to_string()
                + &"=".repeat((4 - h.trim_end_matches('=').len() % 4) % 4),
        )
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(h))
        .map_err(|_| ApiError::bad_request("invalid X-Registry-Auth header"))?;
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|_| ApiError::bad_request("invalid X-Registry-Auth header"))?;
    let user = v["username"].as_str().unwrap_or_default();
    let pass = v["password"].as_str().unwrap_or_default();
    if user.is_empty() && pass.is_empty() {
        return Ok(None);
    }
    Ok(Some(image::Credentials {
        username: user.into(),
        password: pass.into(),
    }))
}

#[derive(Clone, Copy)]
enum Transfer {
    Pull,
    Push,
}

fn progress_json(p: &image::Progress) -> Value {
    let mut v = json!({"status": p.status});
    if !p.id.is_empty() {
        v["id"] = json!(p.id);
    }
    if let Some(total) = p.total {
        let current = p.current.unwrap_or(0);
        v["progressDetail"] = json!({"current": current, "total": total});
        let width = 50;
        let done = (current.min(total) * width).checked_div(total).unwrap_or(0) as usize;
        let bar = format!(
            "[{}>{}]",
            "=".repeat(done.saturating_sub(1)),
            " ".repeat(width as usize - done.max(1))
        );
        v["progress"] = json!(format!("{bar} {}/{}", human(current), human(total)));
    } else {
        v["progressDetail"] = json!({});
    }
    v
}

fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut f = n as f64;
    let mut i = 0;
    while f >= 1000.0 && i < units.len() - 1 {
        f /= 1000.0;
        i += 1;
    }
    format!("{:.3}{}", f, units[i]).replace(".000", "")
}

/// Runs a pull or push, streaming docker's JSON progress lines; a failure becomes an
/// `error` line, which the docker CLI prints.
fn progress_stream(
    engine: Arc<Engine>,
    reference: String,
    creds: Option<image::Credentials>,
    what: Transfer,
) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        let tx2 = tx.clone();
        let progress = move |p: image::Progress| {
            let _ = tx2.send(progress_json(&p));
        };
        match what {
            Transfer::Pull => {
                let r = engine.images.pull(&reference, creds, &progress).await;
                match r {
                    Ok(img) => {
                        if let Some(d) = &img.manifest_digest {
                            let _ = tx.send(json!({"status": format!("Digest: {d}")}));
                        }
                        let name = image::parse_reference(&reference)
                            .map(|r| r.to_string())
                            .unwrap_or(reference.clone());
                        let _ = tx.send(
                            json!({"status": format!("Status: Downloaded newer image for {name}")}),
                        );
                        engine.events.image("pull", &img.id, &name);
                    }
                    Err(e) => {
                        let msg = chain(&e);
                        let _ = tx.send(json!({"errorDetail": {"message": msg}, "error": msg}));
                    }
                }
            }
            Transfer::Push => match engine.images.push(&reference, creds, &progress).await {
                Ok(digest) => {
                    let tag = image::parse_reference(&reference)
                        .ok()
                        .and_then(|r| r.tag().map(String::from))
                        .unwrap_or_else(|| "latest".into());
                    let _ = tx.send(json!({"status": format!("{tag}: digest: {digest} size: 0")}));
                    let _ = tx.send(json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": 0}}));
                    engine.events.image("push", &digest, &reference);
                }
                Err(e) => {
                    let msg = chain(&e);
                    let _ = tx.send(json!({"errorDetail": {"message": msg}, "error": msg}));
                }
            },
        }
    });
    json_lines(tokio_stream(rx))
}

fn tokio_stream(rx: mpsc::UnboundedReceiver<Value>) -> impl futures::Stream<Item = Value> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

fn json_lines(s: impl futures::Stream<Item = Value> + Send + 'static) -> Response<Body> {
    let body = s.map(|v| {
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.extend_from_slice(b"\r\n");
        Ok::<_, std::io::Error>(Bytes::from(line))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .expect("static response")
}

/// `POST /images/create`: pull (`fromImage`) or import (`fromSrc=-` with the tar as body).
async fn create(
    State(engine): State<Arc<Engine>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<Response<Body>> {
    let q = multi_query(raw.as_deref());
    let one = |k: &str| {
        q.get(k)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default()
    };
    let from_image = one("fromImage");
    let tag = one("tag");
    if !from_image.is_empty() {
        let reference = if tag.is_empty() {
            from_image
        } else if tag.starts_with("sha256:") {
            format!("{from_image}@{tag}")
        } else {
            format!("{from_image}:{tag}")
        };
        image::parse_reference(&reference).map_err(ApiError::from)?;
        let creds = credentials(&headers)?;
        return Ok(progress_stream(engine, reference, creds, Transfer::Pull));
    }
    if one("fromSrc") != "-" {
        return Err(ApiError::bad_request(
            "fromImage or fromSrc=- is required (importing from a URL is not supported)",
        ));
    }
    let repo = one("repo");
    let reference = match (repo.is_empty(), tag.is_empty()) {
        (true, _) => None,
        (false, true) => Some(repo),
        (false, false) => Some(format!("{repo}:{tag}")),
    };
    let opts = image::ImportOptions {
        reference,
        changes: q.get("changes").cloned().unwrap_or_default(),
        message: Some(one("message")).filter(|m| !m.is_empty()),
    };
    let store = engine.images.clone();
    let reader = body_reader(req.into_body());
    let img = tokio::task::spawn_blocking(move || {
        let mut reader = SyncIoBridge::new(reader);
        store.import(&mut reader, opts)
    })
    .await
    .map_err(blocking_err)??;
    engine.events.image(
        "import",
        &img.id,
        img.repo_tags.first().map(String::as_str).unwrap_or(""),
    );
    Ok(json_lines(futures::stream::iter([
        json!({"status": img.id}),
    ])))
}

fn body_reader(body: Body) -> impl tokio::io::AsyncRead + Send + Unpin + 'static {
    StreamReader::new(
        body.into_data_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    )
}

/// Repeated query keys (`names=a&names=b`, `changes=…`) are kept, unlike with `Query`.
fn multi_query(raw: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in url_pairs(raw.unwrap_or("")) {
        out.entry(k).or_default().push(v);
    }
    out
}

fn url_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn load(
    State(engine): State<Arc<Engine>>,
    Query(p): Query<Params>,
    req: Request,
) -> ApiResult<Response<Body>> {
    let store = engine.images.clone();
    let reader = body_reader(req.into_body());
    let loaded = tokio::task::spawn_blocking(move || {
        let mut reader = SyncIoBridge::new(reader);
        store.load(&mut reader)
    })
    .await
    .map_err(blocking_err)??;
    for line in &loaded {
        engine.events.image("load", "", line);
    }
    let quiet = flag(&p, "quiet");
    let lines: Vec<Value> = loaded
        .into_iter()
        .map(|l| json!({"stream": format!("{l}\n")}))
        .collect();
    let _ = quiet;
    Ok(json_lines(futures::stream::iter(lines)))
}

async fn save_many(
    State(engine): State<Arc<Engine>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response<Body>> {
    let names = multi_query(raw.as_deref())
        .remove("names")
        .unwrap_or_default();
    if names.is_empty() {
        return Err(ApiError::bad_request("no images named"));
    }
    save(engine, names).await
}

/// Streams `docker save` output through a pipe while the store writes it.
async fn save(engine: Arc<Engine>, names: Vec<String>) -> ApiResult<Response<Body>> {
    // Resolve first so a missing image is a 404, not a broken stream.
    let store = engine.images.clone();
    let n2 = names.clone();
    tokio::task::spawn_blocking(move || n2.iter().try_for_each(|n| store.resolve(n).map(|_| ())))
        .await
        .map_err(blocking_err)??;
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let store = engine.images.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = SyncIoBridge::new(writer);
        if let Err(e) = store.save(&names, &mut w) {
            tracing::warn!("save {names:?}: {e}");
        }
        let _ = std::io::Write::flush(&mut w);
        let _ = w.shutdown();
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(ReaderStream::new(reader)))
        .expect("static response"))
}

async fn remove(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let force = flag(&p, "force");
    // A container made ahead of demand must not hold the image's layers.
    let (store, n) = (engine.images.clone(), name.clone());
    if let Ok(Ok(img)) = tokio::task::spawn_blocking(move || store.resolve(&n)).await {
        engine.warm.drain_image(&engine, &img.id).await;
    }
    drop(engine.purges.write().await);
    let store = engine.images.clone();
    let e2 = engine.clone();
    let actions = tokio::task::spawn_blocking(move || {
        store.remove(&name, force, &|id| e2.containers.image_in_use(id))
    })
    .await
    .map_err(blocking_err)??;
    let rows: Vec<Value> = actions
        .into_iter()
        .map(|a| match a {
            image::RemoveAction::Untagged(t) => {
                engine.events.image("untag", "", &t);
                json!({"Untagged": t})
            }
            image::RemoveAction::Deleted(id) => {
                engine.events.image("delete", &id, "");
                json!({"Deleted": id})
            }
        })
        .collect();
    Ok(Json(rows))
}

async fn prune(
    State(engine): State<Arc<Engine>>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let filters = crate::container_inspect::parse_filters(p.get("filters").map(String::as_str))?;
    let all = filters
        .get("dangling")
        .is_some_and(|v| v.iter().any(|x| x == "false" || x == "0"));
    engine.warm.drain(&engine).await;
    drop(engine.purges.write().await);
    let store = engine.images.clone();
    let e2 = engine.clone();
    let report =
        tokio::task::spawn_blocking(move || store.prune(all, &|id| e2.containers.image_in_use(id)))
            .await
            .map_err(blocking_err)??;
    let deleted: Vec<Value> = report
        .deleted
        .into_iter()
        .map(|a| match a {
            image::RemoveAction::Untagged(t) => json!({"Untagged": t}),
            image::RemoveAction::Deleted(id) => json!({"Deleted": id}),
        })
        .collect();
    Ok(Json(
        json!({"ImagesDeleted": deleted, "SpaceReclaimed": report.space_reclaimed}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_query_keys_are_kept() {
        let q = multi_query(Some(
            "names=busybox%3Alatest&names=alpine&changes=CMD+%5B%22sh%22%5D",
        ));
        assert_eq!(q["names"], vec!["busybox:latest", "alpine"]);
        assert_eq!(q["changes"], vec!["CMD [\"sh\"]"]);
    }

    #[test]
    fn progress_lines_look_like_docker() {
        let p = image::Progress {
            id: "abc".into(),
            status: "Downloading".into(),
            current: Some(500),
            total: Some(1000),
        };
        let v = progress_json(&p);
        assert_eq!(v["progressDetail"]["total"], 1000);
        assert!(v["progress"].as_str().unwrap().contains("500B/1kB"));
    }
}
