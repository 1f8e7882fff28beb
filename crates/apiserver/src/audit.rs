//! The audit log (`--audit-log-path`, `--audit-level`): one `audit.k8s.io/v1` Event per
//! request, as JSON lines, like kube-apiserver's log backend with a one-rule policy.
//!
//! Stages: `ResponseComplete` for ordinary requests; long-running ones (watches, exec, logs)
//! get `ResponseStarted` when the response begins and `ResponseComplete` when its body
//! ends. Levels: `Metadata` (who, what, when, the answer's code), `Request` (plus the
//! request body) and `RequestResponse` (plus the response body). Secrets, ConfigMaps,
//! TokenReviews and ServiceAccount tokens are always logged at `Metadata` at most, as
//! upstream's example policies do: their bodies hold credentials.
//!
//! Writing never blocks a request: events go through a bounded queue to a writer thread,
//! and when the queue is full (the disk stalls) the event is dropped and counted in
//! `apiserver_audit_error_total{plugin="log"}`, as upstream's batching backend drops. A
//! blocking log would let a slow disk stop the API; losing events under that pressure is
//! the lesser harm, and the counter makes it visible.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use chrono::SecondsFormat;
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};

use crate::auth::User;
use crate::metrics::Metrics;
use crate::request_info::RequestInfo;

/// Events waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Bodies larger than this are left out of events (upstream truncates large events too).
const MAX_LOGGED_BODY: usize = 256 * 1024;

/// How much of each request is logged (upstream's audit levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        [
            Level::None,
            Level::Metadata,
            Level::Request,
            Level::RequestResponse,
        ]
        .into_iter()
        .find(|l| l.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            format!(
                "unknown audit level {s:?}: expected None, Metadata, Request or RequestResponse"
            )
        })
    }
}

/// Where and how much to log.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// A file (appended to, created mode 0600), or `-` for standard output.
    pub path: PathBuf,
    pub level: Level,
}

/// The running audit log. Share it behind an `Arc`.
pub struct AuditLog {
    level: Level,
    tx: SyncSender<String>,
    metrics: Arc<Metrics>,
}

impl AuditLog {
    /// Opens the log and starts its writer thread; `None` at level `None`.
    pub fn start(config: &AuditConfig, metrics: Arc<Metrics>) -> std::io::Result<Option<Self>> {
        if config.level == Level::None {
            return Ok(None);
        }
        let out: Box<dyn Write + Send> = if config.path == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            Box::new(open_append(&config.path)?)
        };
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let writer_metrics = metrics.clone();
        let path = config.path.clone();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                while let Ok(line) = rx.recv() {
                    let mut result = writeln!(out, "{line}");
                    // Flush once the queue is empty: batches under load, prompt when idle.
                    while let Ok(line) = rx.try_recv() {
                        result = result.and_then(|()| writeln!(out, "{line}"));
                    }
                    if let Err(e) = result.and_then(|()| out.flush()) {
                        writer_metrics.audit_error();
                        tracing::warn!("write audit log {}: {e}", path.display());
                    }
                }
            })?;
        Ok(Some(AuditLog {
            level: config.level,
            tx,
            metrics,
        }))
    }

    /// Starts the event of `request`; at level Request and above keeps its body (the
    /// body is already buffered, so reading it here costs no I/O).
    pub async fn begin(&self, request: Request, info: &RequestInfo) -> (Request, Pending) {
        let level = self.level.min(max_level(info));
        let mut ev = Pending {
            id: uuid::Uuid::new_v4().to_string(),
            level,
            received: now(),
            event: Map::new(),
        };
        let (verb, object_ref) = match info {
            RequestInfo::Resource(r) => {
                let mut o = Map::new();
                for (k, v) in [
                    ("resource", &r.resource),
                    ("namespace", &r.namespace),
                    ("name", &r.name),
                    ("apiGroup", &r.group),
                    ("apiVersion", &r.version),
                    ("subresource", &r.subresource),
                ] {
                    if !v.is_empty() || k == "apiVersion" {
                        o.insert(k.into(), v.clone().into());
                    }
                }
                (r.verb.clone(), Some(Value::Object(o)))
            }
            RequestInfo::NonResource { verb, .. } => (verb.clone(), None),
        };
        let e = &mut ev.event;
        e.insert("requestURI".into(), request.uri().to_string().into());
        e.insert("verb".into(), verb.into());
        e.insert(
            "sourceIPs".into(),
            source_ips(request.headers(), request.extensions().get()).into(),
        );
        if let Some(agent) = header_str(request.headers(), header::USER_AGENT) {
            e.insert("userAgent".into(), agent.into());
        }
        if let Some(o) = object_ref {
            e.insert("objectRef".into(), o);
        }
        if level < Level::Request {
            return (request, ev);
        }
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if let Some(obj) = decode_body(&parts.headers, &bytes) {
            ev.event.insert("requestObject".into(), obj);
        }
        (Request::from_parts(parts, Body::from(bytes)), ev)
    }

    /// Logs the response: now for ordinary requests (with the body at RequestResponse);
    /// for long-running ones `ResponseStarted` now and `ResponseComplete` when the body
    /// ends. Adds upstream's `Audit-Id` header.
    pub async fn finish(
        self: &Arc<Self>,
        mut ev: Pending,
        mut response: Response,
        long_running: bool,
    ) -> Response {
        let user = match response.extensions().get::<User>() {
            Some(u) => json!({"username": u.name, "groups": u.groups}),
            None => json!({}),
        };
        ev.event.insert("user".into(), user);
        ev.event.insert(
            "responseStatus".into(),
            json!({"metadata": {}, "code": response.status().as_u16()}),
        );
        if let Ok(id) = ev.id.parse() {
            response.headers_mut().insert("audit-id", id);
        }
        if long_running {
            self.emit(&ev, "ResponseStarted");
            let done = Complete(Some((self.clone(), ev)));
            return response.map(|body| {
                Body::new(body.map_frame(move |f| {
                    let _keep = &done;
                    f
                }))
            });
        }
        if ev.level == Level::RequestResponse {
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if let Some(obj) = decode_body(&parts.headers, &bytes) {
                ev.event.insert("responseObject".into(), obj);
            }
            response = Response::from_parts(parts, Body::from(bytes));
        }
        self.emit(&ev, "ResponseComplete");
        response
    }

    fn emit(&self, ev: &Pending, stage: &str) {
        let mut e = Map::with_capacity(ev.event.len() + 7);
        e.insert("kind".into(), "Event".into());
        e.insert("apiVersion".into(), "audit.k8s.io/v1".into());
        e.insert("level".into(), ev.level.as_str().into());
        e.insert("auditID".into(), ev.id.clone().into());
        e.insert("stage".into(), stage.into());
        e.extend(ev.event.iter().map(|(k, v)| (k.clone(), v.clone())));
        e.insert(
            "requestReceivedTimestamp".into(),
            ev.received.clone().into(),
        );
        e.insert("stageTimestamp".into(), now().into());
        let line = Value::Object(e).to_string();
        match self.tx.try_send(line) {
            Ok(()) => self.metrics.audit_event(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.audit_error()
            }
        }
    }
}

/// An event being put together while its request runs.
pub struct Pending {
    id: String,
    level: Level,
    received: String,
    event: Map<String, Value>,
}

/// Emits `ResponseComplete` of a long-running request when its body is dropped.
struct Complete(Option<(Arc<AuditLog>, Pending)>);

impl Drop for Complete {
    fn drop(&mut self) {
        if let Some((log, ev)) = self.0.take() {
            log.emit(&ev, "ResponseComplete");
        }
    }
}

/// The most a request's kind may be logged at: credentials never reach the log.
fn max_level(info: &RequestInfo) -> Level {
    match info {
        RequestInfo::Resource(r)
            if matches!(
                r.resource.as_str(),
                "secrets" | "configmaps" | "tokenreviews"
            ) || (r.resource == "serviceaccounts" && r.subresource == "token") =>
        {
            Level::Metadata
        }
        _ => Level::RequestResponse,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `X-Forwarded-For` hops, then `X-Real-Ip`, then the peer, as upstream lists them.
fn source_ips(
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<std::net::SocketAddr>>,
) -> Vec<String> {
    let mut ips: Vec<String> =
        header_str(headers, header::HeaderName::from_static("x-forwarded-for"))
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
            .map(String::from)
            .collect();
    if let Some(ip) = header_str(headers, header::HeaderName::from_static("x-real-ip")) {
        if ip.parse::<std::net::IpAddr>().is_ok() && !ips.iter().any(|i| i == ip) {
            ips.push(ip.to_string());
        }
    }
    if let Some(ConnectInfo(addr)) = peer {
        let ip = addr.ip().to_string();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// A JSON, YAML or protobuf body as a value; huge or undecodable bodies are left out.
fn decode_body(headers: &HeaderMap, bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() || bytes.len() > MAX_LOGGED_BODY {
        return None;
    }
    let ct = header_str(headers, header::CONTENT_TYPE).unwrap_or("application/json");
    if ct.contains("json") {
        serde_json::from_slice(bytes).ok()
    } else if ct.contains("yaml") {
        serde_yaml_ng::from_slice(bytes).ok()
    } else if ct.starts_with("application/vnd.kubernetes.protobuf") {
        crate::protobuf::decode(bytes).ok()
    } else {
        None
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn levels_parse_and_secrets_are_capped() {
        assert_eq!("requestresponse".parse(), Ok(Level::RequestResponse));
        assert_eq!("None".parse(), Ok(Level::None));
        assert!("Everything".parse::<Level>().is_err());
        let secret = RequestInfo::parse(&Method::POST, "/api/v1/namespaces/a/secrets", "");
        assert_eq!(max_level(&secret), Level::Metadata);
        let token = RequestInfo::parse(
            &Method::POST,
            "/api/v1/namespaces/a/serviceaccounts/default/token",
            "",
        );
        assert_eq!(max_level(&token), Level::Metadata);
        let pods = RequestInfo::parse(&Method::POST, "/api/v1/namespaces/a/pods", "");
        assert_eq!(max_level(&pods), Level::RequestResponse);
    }

    #[test]
    fn source_ips_list_forwarded_hops_then_the_peer() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "10.0.0.1, bogus, 10.0.0.2".parse().unwrap(),
        );
        let peer = ConnectInfo("127.0.0.1:5000".parse().unwrap());
        assert_eq!(
            source_ips(&h, Some(&peer)),
            ["10.0.0.1", "10.0.0.2", "127.0.0.1"]
        );
    }
}
