//! Choosing the backend from `--datastore-endpoint`, as k3s does: unset means the embedded
//! SQLite database in the data directory, `etcd://host:port[,host:port…]` (or `http://` /
//! `https://` endpoints) an etcd cluster.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::{Error, EtcdStore, EtcdTls, Result, SqliteStore, Store};

/// How often old revisions are compacted away, and how many are kept (kube-apiserver and
/// k3s compact every 5 minutes; watches from older revisions get 410 Gone and re-list).
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(300);
pub const COMPACT_KEEP: i64 = 10_000;

/// Opens the store `endpoint` names (None: SQLite at `data_dir/db/state.db`) and starts its
/// compaction schedule. Must be called inside a tokio runtime.
pub async fn open(
    endpoint: Option<&str>,
    data_dir: &Path,
    tls: Option<EtcdTls>,
) -> Result<Arc<dyn Store>> {
    let Some(endpoint) = endpoint.filter(|e| !e.is_empty()) else {
        let dir = data_dir.join("db");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Backend(format!("create {}: {e}", dir.display())))?;
        let s = SqliteStore::open(dir.join("state.db"))?;
        s.spawn_compactor(COMPACT_INTERVAL, COMPACT_KEEP);
        return Ok(s as Arc<dyn Store>);
    };
    let endpoints = etcd_endpoints(endpoint)?;
    let s = EtcdStore::connect(&endpoints, tls).await?;
    let weak = Arc::downgrade(&s);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(COMPACT_INTERVAL).await;
            let Some(s) = weak.upgrade() else { return };
            match s.revision().await {
                Ok(rev) if rev > COMPACT_KEEP => {
                    if let Err(e) = s.compact(rev - COMPACT_KEEP).await {
                        tracing::warn!("compact etcd: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("compact etcd: {e}"),
            }
        }
    });
    Ok(s as Arc<dyn Store>)
}

/// `etcd://a:2379,b:2379` → `["http://a:2379", "http://b:2379"]`; http(s) URLs pass through.
pub fn etcd_endpoints(endpoint: &str) -> Result<Vec<String>> {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some(("etcd", rest)) => ("http", rest),
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        _ => {
            return Err(Error::Invalid(format!(
                "datastore endpoint {endpoint:?}: expected etcd://host:port[,host:port...]"
            )))
        }
    };
    let hosts: Vec<String> = rest
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{}", h.trim_end_matches('/')))
        .collect();
    if hosts.is_empty() {
        return Err(Error::Invalid(format!(
            "datastore endpoint {endpoint:?} names no host"
        )));
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_like_k3s() {
        assert_eq!(
            etcd_endpoints("etcd://127.0.0.1:2379,10.0.0.2:2379").unwrap(),
            ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(
            etcd_endpoints("https://e:2379").unwrap(),
            ["https://e:2379"]
        );
        assert!(etcd_endpoints("mysql://x").is_err());
        assert!(etcd_endpoints("etcd://").is_err());
    }
}
