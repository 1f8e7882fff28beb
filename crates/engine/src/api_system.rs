//! `_ping`, `version`, `info`, `events`, `system df`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Response, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::api_containers::Params;
use crate::container::Status;
use crate::error::ApiResult;
use crate::Engine;

pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/events", get(events))
        .route("/system/df", get(df))
}

async fn ping() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("API-Version", crate::API_VERSION)
        .header("Docker-Experimental", "false")
        .header("OSType", "linux")
        .header("Builder-Version", "1")
        .header(header::CACHE_CONTROL, "no-cache, no-store, must-revalidate")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from("OK"))
        .expect("static response")
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn version() -> Json<Value> {
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": {"Name": "cloudlet"},
        "Components": [{"Name": "Engine", "Version": v, "Details": {
            "ApiVersion": crate::API_VERSION, "MinAPIVersion": crate::MIN_API_VERSION,
            "Os": "linux", "Arch": "amd64", "KernelVersion": kernel(),
        }}],
        "Version": v,
        "ApiVersion": crate::API_VERSION,
        "MinAPIVersion": crate::MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "n/a (rust)",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": kernel(),
        "BuildTime": "",
    }))
}

fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

async fn info(State(engine): State<Arc<Engine>>) -> ApiResult<Json<Value>> {
    let all = engine.containers.all();
    let count = |f: &dyn Fn(Status) -> bool| all.iter().filter(|e| f(e.get().state.status)).count();
    let images = {
        let store = engine.images.clone();
        tokio::task::spawn_blocking(move || store.list())
            .await
            .map_err(|e| crate::ApiError::internal(e.to_string()))??
    };
    let uts = nix::sys::utsname::uname().ok();
    let name = uts
        .as_ref()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into());
    Ok(Json(json!({
        "ID": engine.started.timestamp().to_string(),
        "Containers": all.len(),
        "ContainersRunning": count(&|s| s == Status::Running),
        "ContainersPaused": count(&|s| s == Status::Paused),
        "ContainersStopped": count(&|s| !s.is_running()),
        "Images": images.len(),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {"Volume": ["local"], "Network": ["null", "host"], "Log": ["json-file"]},
        "MemoryLimit": true, "SwapLimit": true, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "CPUSet": true, "PidsLimit": true, "OomKillDisable": false,
        "IPv4Forwarding": true, "Debug": false, "NFd": 0, "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel(),
        "OperatingSystem": os,
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": "x86_64",
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "IndexConfigs": {},
            "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"],
            "Mirrors": [],
        },
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "DockerRootDir": engine.config.data_dir.display().to_string(),
        "Name": name,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"libcontainer": {"path": "built-in (youki libcontainer)"}, "runc": {"path": "runc"}, "crun": {"path": "crun"}},
        "DefaultRuntime": "libcontainer",
        "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "docker-init",
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
        "Warnings": [],
    })))
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(secs) = s.parse::<f64>() {
        return chrono::DateTime::from_timestamp(secs as i64, ((secs.fract()) * 1e9) as u32);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// `GET /events`: past events since `since`, then live ones until `until` (or forever).
async fn events(
    State(engine): State<Arc<Engine>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response<Body>> {
    let since = q.get("since").and_then(|s| parse_time(s));
    let until = q.get("until").and_then(|s| parse_time(s));
    let filters = crate::container_inspect::parse_filters(q.get("filters").map(String::as_str))?;
    let (past, rx) = engine.events.subscribe();
    let keep = move |m: &bollard_stubs::models::EventMessage| -> bool {
        let t = m.time_nano.unwrap_or(0);
        if since.is_some_and(|s| t < s.timestamp_nanos_opt().unwrap_or(0)) {
            return false;
        }
        if until.is_some_and(|u| t > u.timestamp_nanos_opt().unwrap_or(i64::MAX)) {
            return false;
        }
        event_matches(m, &filters)
    };
    let keep2 = keep.clone();
    let past: Vec<_> = if since.is_some() {
        past.into_iter().filter(|m| keep(m)).collect()
    } else {
        Vec::new()
    };
    let past = futures::stream::iter(past);
    let live = tokio_stream_from(rx).filter(move |m| futures::future::ready(keep2(m)));
    let stream = past.chain(live);
    let stream: futures::stream::BoxStream<'static, _> = match until {
        Some(u) => {
            let wait = (u - chrono::Utc::now()).to_std().unwrap_or_default();
            stream
                .take_until(Box::pin(tokio::time::sleep(wait)))
                .boxed()
        }
        None => stream.boxed(),
    };
    let body = stream.map(|m| {
        let mut line = serde_json::to_vec(&m).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::io::Error>(bytes::Bytes::from(line))
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .expect("static response"))
}

fn event_matches(
    m: &bollard_stubs::models::EventMessage,
    filters: &HashMap<String, Vec<String>>,
) -> bool {
    let attrs = m
        .actor
        .as_ref()
        .and_then(|a| a.attributes.clone())
        .unwrap_or_default();
    let id = m
        .actor
        .as_ref()
        .and_then(|a| a.id.clone())
        .unwrap_or_default();
    filters.iter().all(|(k, vals)| match k.as_str() {
        "type" => vals
            .iter()
            .any(|v| Some(v.as_str()) == m.typ.map(|t| t.as_ref_str())),
        "event" => vals.iter().any(|v| {
            m.action
                .as_deref()
                .is_some_and(|a| a == v || a.starts_with(&format!("{v}:")))
        }),
        "container" => vals
            .iter()
            .any(|v| id.starts_with(v.as_str()) || attrs.get("name") == Some(v)),
        "image" => vals
            .iter()
            .any(|v| attrs.get("image") == Some(v) || attrs.get("name") == Some(v)),
        "label" => vals.iter().all(|v| match v.split_once('=') {
            Some((k, val)) => attrs.get(k).is_some_and(|x| x == val),
            None => attrs.contains_key(v.as_str()),
        }),
        _ => true,
    })
}

trait TypeName {
    fn as_ref_str(&self) -> &'static str;
}
impl TypeName for bollard_stubs::models::EventMessageTypeEnum {
    fn as_ref_str(&self) -> &'static str {
        use bollard_stubs::models::EventMessageTypeEnum as T;
        match self {
            T::CONTAINER => "container",
            T::IMAGE => "image",
            T::NETWORK => "network",
            T::VOLUME => "volume",
            T::DAEMON => "daemon",
            _ => "",
        }
    }
}

fn tokio_stream_from(
    rx: tokio::sync::broadcast::Receiver<bollard_stubs::models::EventMessage>,
) -> impl futures::Stream<Item = bollard_stubs::models::EventMessage> {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(m) => return Some((m, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    })
}

async fn df(
    State(engine): State<Arc<Engine>>,
    _h: HeaderMap,
    Query(_p): Query<Params>,
) -> ApiResult<Json<Value>> {
    let store = engine.images.clone();
    let images = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(|e| crate::ApiError::internal(e.to_string()))??;
    let now = chrono::Utc::now();
    let containers: Vec<Value> = engine
        .containers
        .all()
        .iter()
        .map(|e| {
            let c = e.get();
            let mut v = serde_json::to_value(crate::container_inspect::summary(&c, now))
                .unwrap_or_default();
            v["SizeRw"] = json!(crate::container_remove::dir_size(&e.paths.upper()));
            v
        })
        .collect();
    let image_rows: Vec<Value> = images
        .iter()
        .map(|i| {
            let used = engine.containers.all().iter().filter(|e| e.get().image_id == i.id).count();
            json!({
                "Id": i.id, "ParentId": "", "RepoTags": i.repo_tags, "RepoDigests": i.repo_digests,
                "Created": i.created.as_deref().and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()).map(|t| t.timestamp()).unwrap_or(0),
                "Size": i.size, "SharedSize": -1, "VirtualSize": i.size, "Labels": {}, "Containers": used,
            })
        })
        .collect();
    let layers: u64 = images.iter().map(|i| i.size).sum();
    Ok(Json(json!({
        "LayersSize": layers,
        "Images": image_rows,
        "Containers": containers,
        "Volumes": [],
        "BuildCache": [],
    })))
}
