//! The test cluster the kubectl acceptance suites share: a server on 127.0.0.1 (an
//! ephemeral port) with a PKI in a temp dir, and the real kubectl (1.32) pointed at the
//! admin kubeconfig the server writes. kubectl is required: these tests fail, saying so,
//! when it is missing. The store is SQLite in the temp dir, or a fresh real etcd with
//! `CLOUDLET_TEST_DATASTORE=etcd`; `make test` runs the suites both ways.
#![allow(dead_code)]

// The store crate's etcd launcher, so that one serves every suite.
#[path = "../../../store/tests/common/etcd_server.rs"]
mod etcd_server;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use apiserver::audit::{AuditConfig, Level};
use apiserver::{ApiServer, Config};
use serde_json::Value;
use tokio::process::Command;

/// The audit log, under the cluster's temp dir.
const AUDIT_LOG: &str = "audit/audit.log";

/// How a test cluster differs from the default (AllowMasters, no audit log).
#[derive(Debug, Default)]
pub struct Options {
    /// Authorize with RBAC instead of AllowMasters.
    pub rbac: bool,
    /// Write an audit log at this level (read it back with [`Cluster::audit_events`]).
    pub audit: Option<Level>,
}

pub struct Cluster {
    /// The etcd the store is on, when the suite runs on etcd (killed on drop).
    _etcd: Option<etcd_server::EtcdServer>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub url: String,
    pub pki: Arc<pki::Pki>,
    pub store: Arc<dyn store::Store>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn kubectl_path() -> Result<PathBuf> {
    let found = std::env::var_os("PATH").map(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("kubectl"))
            .find(|k| k.is_file())
    });
    match found.flatten() {
        Some(k) => Ok(k),
        None => bail!("kubectl is not installed (or not on PATH): these acceptance tests need the real kubectl 1.32"),
    }
}

/// The store a test cluster runs on: SQLite in `dir`, or a fresh etcd when
/// `CLOUDLET_TEST_DATASTORE=etcd`.
pub async fn test_store(
    dir: &Path,
) -> Result<(Arc<dyn store::Store>, Option<etcd_server::EtcdServer>)> {
    match std::env::var("CLOUDLET_TEST_DATASTORE").as_deref() {
        Ok("etcd") => {
            let etcd = etcd_server::EtcdServer::start(&[]);
            let endpoint = etcd.endpoint.trim_start_matches("http://").to_string();
            let store = store::EtcdStore::connect(&[endpoint], None).await?;
            Ok((store, Some(etcd)))
        }
        Ok("sqlite") | Err(_) => Ok((store::SqliteStore::open(dir.join("state.db"))?, None)),
        Ok(other) => bail!("CLOUDLET_TEST_DATASTORE={other}: want sqlite or etcd"),
    }
}

impl Cluster {
    pub async fn start() -> Result<Cluster> {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Result<Cluster> {
        kubectl_path()?;
        let dir = tempfile::tempdir()?;
        let pki = Arc::new(pki::Pki::load_or_create(&dir.path().join("pki"))?);
        let (store, etcd) = test_store(dir.path()).await?;
        let kubeconfig = dir.path().join("kubeconfig");
        let mut config = Config::new(store.clone(), pki.clone());
        if options.rbac {
            config.authorizer = Arc::new(apiserver::Rbac::new(store.clone()));
        }
        config.audit = options.audit.map(|level| AuditConfig {
            path: dir.path().join(AUDIT_LOG),
            level,
        });
        config.bind = "127.0.0.1:0".parse()?;
        config.kubeconfig = Some(kubeconfig.clone());
        let server = ApiServer::new(config).await?;
        let listener = server.bind().await?;
        let url = apiserver::server_url(listener.local_addr()?);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = ready_tx.send(());
            if let Err(e) = server.serve(listener).await {
                eprintln!("server: {e}");
            }
        });
        ready_rx.await?;
        // The kubeconfig is written as serving starts.
        for _ in 0..250 {
            if kubeconfig.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Cluster {
            _etcd: etcd,
            dir,
            kubeconfig,
            url,
            pki,
            store,
            server: task,
        })
    }

    /// kubectl with the given kubeconfig, not yet started.
    pub fn command_as(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        // Own HOME: kubectl caches discovery and OpenAPI under ~/.kube.
        cmd.env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--request-timeout=20s")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl with the given kubeconfig, whatever its exit status.
    pub async fn run_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<Output> {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            self.command_as(kubeconfig, args).output(),
        )
        .await
        .with_context(|| format!("kubectl {args:?} timed out"))??;
        Ok(out)
    }

    /// Runs kubectl as admin, whatever its exit status.
    pub async fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_as(&self.kubeconfig, args).await
    }

    /// Runs kubectl as admin; fails unless it succeeds; returns stdout.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args).await?;
        ensure!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Runs kubectl as admin; fails unless it succeeds; returns stderr (warnings).
    pub async fn kubectl_stderr(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args).await?;
        ensure!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stderr)?)
    }

    /// Runs kubectl as admin, expecting it to fail; returns stderr.
    pub async fn kubectl_fails(&self, args: &[&str]) -> Result<String> {
        self.kubectl_fails_as(&self.kubeconfig, args).await
    }

    /// Runs kubectl with the given kubeconfig, expecting it to fail; returns stderr.
    pub async fn kubectl_fails_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<String> {
        let out = self.run_as(kubeconfig, args).await?;
        ensure!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(String::from_utf8(out.stderr)?)
    }

    /// Runs kubectl as admin with `-o json`; returns the parsed output.
    pub async fn json(&self, args: &[&str]) -> Result<Value> {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl(&args).await?)?)
    }

    /// A GET over HTTPS without a client certificate, with an optional bearer token.
    pub async fn raw_get(&self, path: &str, token: Option<&str>) -> Result<(u16, Value)> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", &**a)).collect();
        let (code, body) = self.https_get(None, path, &headers).await?;
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok((code, value))
    }

    /// A GET over HTTPS as a system:masters client with the given Accept header.
    pub async fn admin_get(&self, path: &str, accept: &str) -> Result<(u16, Vec<u8>)> {
        let cert = self.pki.client_cert("test-admin", &["system:masters"])?;
        self.https_get(Some(&cert), path, &[("accept", accept)])
            .await
    }

    async fn https_get(
        &self,
        cert: Option<&pki::ClientCert>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>)> {
        let mut tls = self.pki.rustls_client_config(cert)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let authority = self.url.trim_start_matches("https://").to_string();
        let tcp = tokio::net::TcpStream::connect(&authority).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::get(path).header("host", authority);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = sender
            .send_request(req.body(http_body_util::Empty::<bytes::Bytes>::new())?)
            .await?;
        let code = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await?
            .to_bytes();
        Ok((code, body.to_vec()))
    }

    /// Writes `text` to `name` in the cluster's temp dir; returns its path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Where the audit log is written (with `Options::audit` set).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join(AUDIT_LOG)
    }

    /// The audit log's events so far.
    pub fn audit_events(&self) -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(self.audit_log())?;
        text.lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("audit line {l}")))
            .collect()
    }
}
