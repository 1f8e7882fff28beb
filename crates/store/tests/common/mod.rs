//! What the store's integration tests share: a store of each backend, a real etcd per
//! test, and watch helpers.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use store::{EtcdStore, EtcdTls, Event, SqliteStore, Store, Watch, WatchBatch};
use tempfile::TempDir;

/// Where Debian's etcd-server puts etcd. CI installs it; without it the etcd tests fail.
pub const ETCD: &str = "/usr/bin/etcd";

/// A store under test, and what must live as long as it.
pub struct Backend {
    pub store: Arc<dyn Store>,
    _guard: Guard,
}

enum Guard {
    Sqlite(TempDir),
    Etcd(EtcdServer),
}

/// A fresh SQLite store in a temporary directory.
pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("store.db")).expect("open sqlite store");
    Backend {
        store,
        _guard: Guard::Sqlite(dir),
    }
}

/// A store on a fresh etcd of its own.
pub async fn etcd() -> Backend {
    let server = EtcdServer::start(&[]);
    let store = EtcdStore::connect(std::slice::from_ref(&server.endpoint), None)
        .await
        .expect("connect to etcd");
    Backend {
        store,
        _guard: Guard::Etcd(server),
    }
}

/// A real etcd on loopback with free ports and a data directory of its own (on tmpfs when
/// there is one: fsyncs there cost nothing). Killed when dropped.
pub struct EtcdServer {
    child: Child,
    _dir: TempDir,
    /// `http://127.0.0.1:PORT` (`https://` with TLS flags).
    pub endpoint: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

impl EtcdServer {
    /// Starts etcd; `tls_flags` (cert and key flags) switch its client URL to https.
    pub fn start(tls_flags: &[String]) -> EtcdServer {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: the etcd tests need a real etcd (Debian package etcd-server)"
        );
        let mut last_log = String::new();
        // A port picked as free can be taken by another test before etcd binds it: retry.
        for _ in 0..5 {
            match Self::try_start(tls_flags) {
                Ok(server) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("etcd did not start; its last log:\n{last_log}");
    }

    fn try_start(tls_flags: &[String]) -> Result<EtcdServer, String> {
        let base = if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let dir = tempfile::Builder::new()
            .prefix("cloudlet-etcd-")
            .tempdir_in(base)
            .map_err(|e| e.to_string())?;
        let (client, peer) = (free_port(), free_port());
        let scheme = if tls_flags.is_empty() {
            "http"
        } else {
            "https"
        };
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_path = dir.path().join("etcd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let child = Command::new(ETCD)
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            // A one-member cluster elects itself; short ticks make that take milliseconds.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=50")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .args(tls_flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {ETCD}: {e}"))?;
        let mut server = EtcdServer {
            child,
            _dir: dir,
            endpoint: client_url,
        };
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("etcd exited ({status}):\n{}", read_log()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", client)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("etcd did not listen in time:\n{}", read_log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next batch with events (progress notifications are skipped), within 10 s.
pub async fn next_batch(watch: &mut Watch) -> anyhow::Result<WatchBatch> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let item = tokio::time::timeout_at(deadline, watch.next())
            .await
            .context("no watch event within 10 s")?;
        match item {
            None => bail!("the watch ended"),
            Some(Err(e)) => return Err(e).context("watch failed"),
            Some(Ok(batch)) if batch.events.is_empty() => continue,
            Some(Ok(batch)) => return Ok(batch),
        }
    }
}

/// The next `n` events, whatever batches they come in.
pub async fn next_events(watch: &mut Watch, n: usize) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    while events.len() < n {
        events.extend(next_batch(watch).await?.events);
    }
    Ok(events)
}

/// Asserts that no event arrives for a little while.
pub async fn assert_quiet(watch: &mut Watch) -> anyhow::Result<()> {
    match tokio::time::timeout(Duration::from_millis(300), watch.next()).await {
        Err(_) => Ok(()),
        Ok(Some(Ok(b))) if b.events.is_empty() => Ok(()),
        Ok(other) => bail!("expected no event, got {other:?}"),
    }
}

/// PEM files of a CA, a server certificate for 127.0.0.1 and a client certificate.
pub struct TestPki {
    pub dir: TempDir,
}

impl TestPki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn client_tls(&self) -> EtcdTls {
        EtcdTls {
            ca: Some(self.path("ca.pem")),
            cert: Some(self.path("client.pem")),
            key: Some(self.path("client-key.pem")),
        }
    }
}
