//! What the store's integration tests share: a store of each backend, a real etcd per
//! test, and watch helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use store::{EtcdStore, EtcdTls, Event, SqliteStore, Store, Watch, WatchBatch};
use tempfile::TempDir;

// Also used by the cloudlet binary's tests (`#[path]`), so that one etcd launcher serves.
mod etcd_server;
pub use etcd_server::EtcdServer;

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
