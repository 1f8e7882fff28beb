//! The API server: configuration, the router, authentication and authorization around
//! every request, the HTTPS listener (HTTP/2 and HTTP/1.1 over rustls), the admin
//! kubeconfig and the default namespaces.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pki::{Pki, San};
use serde_json::json;
use store::Store;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::audit::{AuditConfig, AuditLog};
use crate::auth::{self, AllowMasters, Authorizer, Decision, PeerIdentity, User};
use crate::catalog::Catalog;
use crate::discovery;
use crate::encrypt::{self, SecretsAtRest};
use crate::metrics::{self, Metrics};
use crate::objects::Objects;
use crate::openapi;
use crate::request_info::RequestInfo;
use crate::rest::{self, AppState};
use crate::status::ApiError;

/// Where `cloudlet server` writes the admin kubeconfig unless told otherwise (k3s keeps
/// its at `/etc/rancher/k3s/k3s.yaml`).
pub const DEFAULT_KUBECONFIG: &str = "/etc/cloudlet/cloudlet.yaml";
/// The namespaces every cluster has.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pki")]
    Pki(#[from] pki::Error),
    #[error("bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listener address")]
    LocalAddr(#[source] std::io::Error),
    #[error("create {name}: {error}")]
    Bootstrap { name: String, error: ApiError },
    #[error("open audit log {}", path.display())]
    AuditLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("service CIDR {cidr:?}: {reason}")]
    ServiceCidr { cidr: String, reason: String },
}

/// k3s' default `--service-cidr`.
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";

/// How to run the API server. [`Config::new`] fills in the defaults.
pub struct Config {
    pub store: Arc<dyn Store>,
    pub pki: Arc<Pki>,
    /// Default `0.0.0.0:6443`.
    pub bind: SocketAddr,
    /// Extra names and addresses for the serving certificate (`--tls-san`).
    pub tls_sans: Vec<San>,
    /// Where Service ClusterIPs come from (`--service-cidr`, IPv4).
    pub service_cidr: String,
    /// Where to write the admin kubeconfig (mode 0600); `None` writes none.
    pub kubeconfig: Option<PathBuf>,
    /// Default [`AllowMasters`]; [`crate::Rbac`] authorizes by the cluster's RBAC objects.
    pub authorizer: Arc<dyn Authorizer>,
    /// A bearer token must be for one of these audiences.
    pub audiences: Vec<String>,
    pub catalog: Arc<Catalog>,
    /// The audit log (`--audit-log-path`, `--audit-level`); `None` logs nothing.
    pub audit: Option<AuditConfig>,
}

impl Config {
    pub fn new(store: Arc<dyn Store>, pki: Arc<Pki>) -> Config {
        Config {
            store,
            pki,
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 6443),
            tls_sans: Vec::new(),
            service_cidr: DEFAULT_SERVICE_CIDR.to_string(),
            kubeconfig: Some(PathBuf::from(DEFAULT_KUBECONFIG)),
            authorizer: Arc::new(AllowMasters),
            audiences: vec![pki::DEFAULT_ISSUER.to_string(), "k3s".to_string()],
            catalog: Arc::new(Catalog::builtin()),
            audit: None,
        }
    }
}

/// The names the serving certificate covers: what in-cluster and local clients use,
/// the host name, the bind address, and the configured extras.
fn serving_sans(config: &Config) -> Vec<San> {
    let mut sans: Vec<San> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "127.0.0.1",
        "::1",
    ]
    .into_iter()
    .map(San::parse)
    .collect();
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        if !host.trim().is_empty() {
            sans.push(San::parse(host.trim()));
        }
    }
    if !config.bind.ip().is_unspecified() {
        sans.push(San::Ip(config.bind.ip()));
    }
    sans.extend(config.tls_sans.iter().cloned());
    sans
}

/// A configured API server, ready to serve.
pub struct ApiServer {
    state: Arc<AppState>,
    observe: Arc<Observe>,
    secrets: Arc<SecretsAtRest>,
    /// The revision the CRDs were loaded at: where watching them starts.
    crds_at: store::Revision,
    tls: TlsAcceptor,
    bind: SocketAddr,
    kubeconfig: Option<PathBuf>,
}

impl ApiServer {
    /// Loads or issues the serving certificate and creates the default namespaces.
    /// Secrets are encrypted at rest with the cluster's key ring.
    pub async fn new(config: Config) -> Result<ApiServer, Error> {
        let cert = config.pki.server_cert(&serving_sans(&config))?;
        let tls = config.pki.rustls_server_config(&cert)?;
        let secrets = SecretsAtRest::new(config.store.clone(), config.pki.clone());
        let store: Arc<dyn store::Store> = secrets.clone();
        let metrics = Arc::new(Metrics::new());
        let audit = match &config.audit {
            Some(audit) => AuditLog::start(audit, metrics.clone())
                .map_err(|source| Error::AuditLog {
                    path: audit.path.clone(),
                    source,
                })?
                .map(Arc::new),
            None => None,
        };
        let services =
            crate::services::ServiceRanges::parse(&config.service_cidr).map_err(|reason| {
                Error::ServiceCidr {
                    cidr: config.service_cidr.clone(),
                    reason,
                }
            })?;
        let state = Arc::new(AppState {
            services,
            objects: Objects::new(store, config.catalog.clone()),
            pki: config.pki.clone(),
            authorizer: config.authorizer.clone(),
            audiences: config.audiences.clone(),
        });
        bootstrap(&state.objects).await?;
        crate::rbac::bootstrap(&state.objects)
            .await
            .map_err(|error| Error::Bootstrap {
                name: "rbac bootstrap policy".into(),
                error,
            })?;
        let crds_at = crate::crd::load(&state.objects)
            .await
            .map_err(|error| Error::Bootstrap {
                name: "custom resource definitions".into(),
                error,
            })?;
        let observe = Arc::new(Observe {
            metrics,
            audit,
            objects: state.objects.clone(),
        });
        Ok(ApiServer {
            state,
            observe,
            secrets,
            crds_at,
            tls: TlsAcceptor::from(Arc::new(tls)),
            bind: config.bind,
            kubeconfig: config.kubeconfig,
        })
    }

    /// The HTTP application without TLS. Requests need a [`PeerIdentity`] extension to
    /// be authenticated by certificate (the TLS layer adds it); for in-process tests.
    pub fn router(&self) -> Router {
        router(
            self.state.clone(),
            self.observe.clone(),
            self.secrets.clone(),
        )
    }

    /// Binds the configured address.
    pub async fn bind(&self) -> Result<TcpListener, Error> {
        TcpListener::bind(self.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: self.bind,
                source,
            })
    }

    /// Binds, writes the kubeconfig and serves until the process ends.
    pub async fn run(self) -> Result<(), Error> {
        let listener = self.bind().await?;
        self.serve(listener).await
    }

    /// Serves on `listener` until the process ends.
    pub async fn serve(self, listener: TcpListener) -> Result<(), Error> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Writes the admin kubeconfig (for `https://<listener address>`, 127.0.0.1 when it
    /// listens on every address) and serves until `shutdown` completes. Connections
    /// open at shutdown are dropped.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let local = listener.local_addr().map_err(Error::LocalAddr)?;
        if let Some(path) = &self.kubeconfig {
            self.state
                .pki
                .write_admin_kubeconfig(path, &server_url(local))?;
            tracing::info!("wrote admin kubeconfig to {}", path.display());
        }
        tracing::info!("kubernetes api listening on https://{local}");
        let app = self.router();
        let crds = tokio::spawn(crate::crd::sync(self.state.objects.clone(), self.crds_at));
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off rather than spin.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            while connections.try_join_next().is_some() {}
            connections.spawn(serve_connection(self.tls.clone(), app.clone(), tcp, peer));
        }
        connections.abort_all();
        crds.abort();
        Ok(())
    }
}

/// The URL clients on this host use to reach a server listening on `local`.
pub fn server_url(local: SocketAddr) -> String {
    let ip = if local.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        local.ip()
    };
    format!("https://{}", SocketAddr::new(ip, local.port()))
}

async fn serve_connection(
    tls: TlsAcceptor,
    app: Router,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("tls handshake with {peer}: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("tls handshake with {peer}: timed out");
            return;
        }
    };
    let identity = PeerIdentity(pki::identity_from_peer(
        stream.get_ref().1.peer_certificates(),
    ));
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(identity.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("connection from {peer}: {e}");
    }
}

fn router(state: Arc<AppState>, observe: Arc<Observe>, secrets: Arc<SecretsAtRest>) -> Router {
    Router::new()
        .route("/version", get(discovery::version))
        .route("/healthz", get(discovery::health))
        .route("/livez", get(discovery::health))
        .route("/readyz", get(discovery::health))
        .route("/healthz/{*check}", get(discovery::health))
        .route("/livez/{*check}", get(discovery::health))
        .route("/readyz/{*check}", get(discovery::health))
        .route("/api", get(discovery::api))
        .route("/api/", get(discovery::api))
        .route("/apis", get(discovery::apis))
        .route("/apis/", get(discovery::apis))
        .route("/api/{version}", get(discovery::core_version))
        .route("/apis/{group}", get(discovery::group))
        .route("/apis/{group}/{version}", get(discovery::group_version))
        .route("/openapi/v3", get(openapi::root))
        .route("/openapi/v3/api/{version}", get(openapi::core))
        .route("/openapi/v3/apis/{group}/{version}", get(openapi::group))
        .route("/openapi/v2", get(openapi::v2))
        .route("/metrics", get(serve_metrics).with_state(observe.clone()))
        .route(
            "/v1-cloudlet/encrypt/status",
            get(encrypt::status_handler).with_state(secrets.clone()),
        )
        .route(
            "/v1-cloudlet/encrypt/rotate",
            post(encrypt::rotate_handler).with_state(secrets),
        )
        .fallback(rest::dispatch)
        .layer(middleware::from_fn_with_state(state.clone(), authn_authz))
        .layer(middleware::from_fn_with_state(observe, observe_request))
        .layer(middleware::from_fn(crate::request::buffer_body))
        .with_state(state)
}

/// What the observing middleware needs: metrics, the audit log, and the objects to count.
struct Observe {
    metrics: Arc<Metrics>,
    audit: Option<Arc<AuditLog>>,
    objects: Objects,
}

async fn serve_metrics(State(observe): State<Arc<Observe>>) -> Response {
    let text = observe.metrics.render(&observe.objects).await;
    ([(http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

/// Counts and times every request and writes its audit event. It runs outside
/// authentication so that refused requests are counted and audited too; the user comes
/// back on the response (see [`authn_authz`]).
async fn observe_request(
    State(observe): State<Arc<Observe>>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let query = request.uri().query().unwrap_or("").to_string();
    let info = RequestInfo::parse(request.method(), request.uri().path(), &query);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str());
    let labels = metrics::labels(
        &info,
        request.method(),
        request.headers(),
        &query,
        route,
        &observe.objects.catalog,
    );
    let long_running = metrics::is_long_running(&info);
    let read_only = matches!(
        *request.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    let in_flight = (!long_running).then(|| observe.metrics.in_flight(!read_only));
    let (request, pending) = match &observe.audit {
        Some(log) => {
            let (request, pending) = log.begin(request, &info).await;
            (request, Some(pending))
        }
        None => (request, None),
    };
    let response = next.run(request).await;
    drop(in_flight);
    let elapsed = (!long_running).then(|| start.elapsed());
    observe
        .metrics
        .record(labels, response.status().as_u16(), elapsed);
    match (&observe.audit, pending) {
        (Some(log), Some(pending)) => log.finish(pending, response, long_running).await,
        _ => response,
    }
}

/// Authenticates, works out what the request is about, and asks the authorizer; the
/// handlers get the [`User`] and [`RequestInfo`] as extensions, and the response carries
/// the [`User`] back out for the audit log.
async fn authn_authz(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<PeerIdentity>()
        .cloned()
        .unwrap_or_default();
    let objects = state.objects.clone();
    let user = auth::authenticate(
        &peer,
        request.headers(),
        state.pki.service_accounts(),
        &state.audiences,
        |ns, name, uid| async move { service_account_exists(&objects, &ns, &name, &uid).await },
    )
    .await;
    let path = request.uri().path().to_string();
    let info = RequestInfo::parse(request.method(), &path, request.uri().query().unwrap_or(""));
    let user = match user {
        Ok(Some(user)) => user,
        Ok(None) if auth::is_public_path(&path) => User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        },
        Ok(None) | Err(_) => return ApiError::unauthorized().into_response(),
    };
    if !auth::is_public_path(&path) {
        if let Decision::Deny(reason) = state.authorizer.authorize(&user, &info).await {
            tracing::debug!("denied {} {path} to {}", info.verb(), user.name);
            let mut response = auth::forbidden(&user, &info, &reason).into_response();
            response.extensions_mut().insert(user);
            return response;
        }
    }
    request.extensions_mut().insert(info);
    request.extensions_mut().insert(user.clone());
    let mut response = next.run(request).await;
    response.extensions_mut().insert(user);
    response
}

async fn service_account_exists(objects: &Objects, ns: &str, name: &str, uid: &str) -> bool {
    let Some(res) = objects.catalog.lookup("", "v1", "serviceaccounts") else {
        return false;
    };
    match objects.get_opt(&res, ns, name).await {
        Ok(Some(sa)) => uid.is_empty() || crate::meta::uid(&sa) == uid,
        _ => false,
    }
}

/// Creates the default namespaces that are missing.
async fn bootstrap(objects: &Objects) -> Result<(), Error> {
    let Some(res) = objects.catalog.lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    for name in DEFAULT_NAMESPACES {
        let fail = |error| Error::Bootstrap {
            name: format!("namespace {name}"),
            error,
        };
        if objects
            .get_opt(&res, "", name)
            .await
            .map_err(fail)?
            .is_some()
        {
            continue;
        }
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": crate::meta::new_uid(),
                "creationTimestamp": crate::meta::now(),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        match objects.create(&res, &obj).await {
            Ok(_) => tracing::info!("created namespace {name}"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(())
}
