//! Secrets encrypted at rest: a [`Store`] in front of the real one that encrypts the values
//! of Secret objects on their way in and decrypts them on their way out (reads, write
//! responses and watch events), with the cluster's AES-GCM key ring (`pki::secrets`), bound
//! to the storage key as kube-apiserver binds them. Everything else passes through, and so
//! does a Secret written before encryption was on (it has no `k8s:enc:` prefix).
//!
//! Key rotation runs inside the server (`POST /v1-cloudlet/encrypt/rotate`, which
//! `cloudlet secrets-encrypt rotate` calls, as k3s' CLI calls its server): only the process
//! that writes Secrets can know that no write sealed with the old key is still in flight,
//! so only it can drop the old key safely. A CLI writing the store and the key file behind
//! a running server's back could not (and the SQLite store has a single writer).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pki::Pki;
use serde::Serialize;
use store::{
    Error, Event, KeyValue, Op, RangeRequest, RangeResponse, Result, Revision, Store, Watch,
    WatchBatch, WriteResponse,
};

use crate::status::ApiError;

/// Where Secrets live (see [`crate::keys`]).
const SECRETS: &str = "/registry/core/secrets/";
/// Secrets read per page while re-encrypting.
const PAGE: usize = 500;

pub struct SecretsAtRest {
    inner: Arc<dyn Store>,
    pki: Arc<Pki>,
    /// Held shared by every write of a Secret from sealing to commit, and exclusively while
    /// the encrypting key changes: after `rotate` no value sealed with the old key is
    /// still on its way to the store.
    writes: tokio::sync::RwLock<()>,
    /// One rotation at a time.
    rotation: tokio::sync::Mutex<()>,
}

/// What `status` reports.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionStatus {
    /// The key ring, the encrypting key first.
    pub keys: Vec<String>,
    pub current_key: String,
    pub secrets: usize,
    /// Secrets per key name; `identity` counts unencrypted ones.
    pub secrets_by_key: BTreeMap<String, usize>,
    /// Every Secret is encrypted with the current key.
    pub all_current: bool,
}

/// What `rotate` did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    pub new_key: String,
    pub reencrypted: usize,
    pub removed_keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("store")]
    Store(#[from] Error),
    #[error("key ring")]
    Pki(#[from] pki::Error),
    #[error("{0} secrets are still under old keys; the old keys were kept")]
    Incomplete(usize),
}

fn open_kv(pki: &Pki, mut kv: KeyValue) -> Result<KeyValue> {
    if kv.key.starts_with(SECRETS) && !kv.value.is_empty() {
        kv.value = pki
            .secrets()
            .decrypt_with_context(&kv.value, kv.key.as_bytes())
            .map_err(|e| Error::Backend(format!("decrypt {}: {e}", kv.key)))?;
    }
    Ok(kv)
}

fn open_event(pki: &Pki, e: Event) -> Result<Event> {
    let open_prev = |p: Option<KeyValue>| p.map(|p| open_kv(pki, p)).transpose();
    Ok(match e {
        Event::Put { kv, prev } => Event::Put {
            kv: open_kv(pki, kv)?,
            prev: open_prev(prev)?,
        },
        Event::Delete { kv, prev } => Event::Delete {
            kv: open_kv(pki, kv)?,
            prev: open_prev(prev)?,
        },
    })
}

impl SecretsAtRest {
    pub fn new(inner: Arc<dyn Store>, pki: Arc<Pki>) -> Arc<SecretsAtRest> {
        Arc::new(SecretsAtRest {
            inner,
            pki,
            writes: tokio::sync::RwLock::new(()),
            rotation: tokio::sync::Mutex::new(()),
        })
    }

    fn seal(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>> {
        if !key.starts_with(SECRETS) {
            return Ok(value);
        }
        self.pki
            .secrets()
            .encrypt_with_context(&value, key.as_bytes())
            .map_err(|e| Error::Backend(format!("encrypt {key}: {e}")))
    }

    fn open(&self, kv: KeyValue) -> Result<KeyValue> {
        open_kv(&self.pki, kv)
    }

    /// Every stored Secret as it is on disk (still sealed), page by page.
    async fn for_each_sealed(&self, mut f: impl FnMut(KeyValue)) -> Result<()> {
        let mut after = None;
        loop {
            let page = self
                .inner
                .range(RangeRequest {
                    prefix: SECRETS.into(),
                    limit: PAGE,
                    start_after: after.take(),
                    ..Default::default()
                })
                .await?;
            after = page.kvs.last().map(|kv| kv.key.clone());
            page.kvs.into_iter().for_each(&mut f);
            if !page.more || after.is_none() {
                return Ok(());
            }
        }
    }

    /// The key ring and which keys the stored Secrets are under.
    pub async fn status(&self) -> Result<EncryptionStatus> {
        let ring = self.pki.secrets();
        let keys = ring.key_names();
        let mut by_key = BTreeMap::new();
        let mut secrets = 0;
        let mut stale = 0;
        self.for_each_sealed(|kv| {
            secrets += 1;
            stale += usize::from(ring.needs_reencryption(&kv.value));
            *by_key.entry(key_name(&kv.value)).or_insert(0) += 1;
        })
        .await?;
        Ok(EncryptionStatus {
            current_key: keys[0].clone(),
            keys,
            secrets,
            secrets_by_key: by_key,
            all_current: stale == 0,
        })
    }

    /// Adds a new key and encrypts with it from now on, re-encrypts every Secret with it
    /// (each a guarded update through this store, so a concurrent write wins and is
    /// already under the new key), checks that none is left under an old key, and drops
    /// the old keys.
    pub async fn rotate(&self) -> Result<Rotation, RotateError> {
        let _one = self.rotation.lock().await;
        let new_key = {
            let _no_writes = self.writes.write().await;
            self.pki.secrets().rotate()?
        };
        let mut stale = Vec::new();
        let ring = self.pki.secrets();
        self.for_each_sealed(|kv| {
            if ring.needs_reencryption(&kv.value) {
                stale.push(kv);
            }
        })
        .await?;
        let mut reencrypted = 0;
        for mut kv in stale {
            loop {
                let plain = self.open(kv.clone())?.value;
                match self.update(&kv.key, plain, kv.mod_revision).await {
                    Ok(_) => reencrypted += 1,
                    Err(Error::Conflict { .. }) => match self.inner.get(&kv.key, 0).await? {
                        Some(now) if ring.needs_reencryption(&now.value) => {
                            kv = now;
                            continue;
                        }
                        _ => {}
                    },
                    Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                break;
            }
        }
        let status = self.status().await?;
        if !status.all_current {
            let left = status.secrets - status.secrets_by_key.get(&new_key).unwrap_or(&0);
            return Err(RotateError::Incomplete(left));
        }
        let removed_keys = self.pki.secrets().prune_old_keys()?;
        tracing::info!(
            key = %new_key,
            reencrypted,
            removed = ?removed_keys,
            "secrets re-encrypted with a new key"
        );
        Ok(Rotation {
            new_key,
            reencrypted,
            removed_keys,
        })
    }
}

/// The key a stored value names (`identity`: unencrypted).
fn key_name(stored: &[u8]) -> String {
    stored
        .strip_prefix(b"k8s:enc:aesgcm:v1:")
        .and_then(|rest| rest.split(|b| *b == b':').next())
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .unwrap_or_else(|| {
            if stored.starts_with(pki::ENCRYPTION_PREFIX.as_bytes()) {
                "unknown".into()
            } else {
                "identity".into()
            }
        })
}

/// `GET /v1-cloudlet/encrypt/status`.
pub async fn status_handler(State(s): State<Arc<SecretsAtRest>>) -> Response {
    match s.status().await {
        Ok(status) => Json(status).into_response(),
        Err(e) => ApiError::internal(format!("secrets encryption status: {e}")).into_response(),
    }
}

/// `POST /v1-cloudlet/encrypt/rotate`.
pub async fn rotate_handler(State(s): State<Arc<SecretsAtRest>>) -> Response {
    match s.rotate().await {
        Ok(r) => Json(r).into_response(),
        Err(e) => {
            let mut msg = format!("rotate secrets encryption key: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            ApiError::internal(msg).into_response()
        }
    }
}

#[async_trait]
impl Store for SecretsAtRest {
    async fn revision(&self) -> Result<Revision> {
        self.inner.revision().await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>> {
        self.inner
            .get(key, revision)
            .await?
            .map(|kv| self.open(kv))
            .transpose()
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let mut r = self.inner.range(req).await?;
        r.kvs = r
            .kvs
            .into_iter()
            .map(|kv| self.open(kv))
            .collect::<Result<_>>()?;
        Ok(r)
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<WriteResponse> {
        let _sealing = if ops.iter().any(|op| op.key().starts_with(SECRETS)) {
            Some(self.writes.read().await)
        } else {
            None
        };
        let ops = ops
            .into_iter()
            .map(|op| {
                Ok(match op {
                    Op::Create { key, value } => {
                        let value = self.seal(&key, value)?;
                        Op::Create { key, value }
                    }
                    Op::Update {
                        key,
                        value,
                        expected,
                    } => {
                        let value = self.seal(&key, value)?;
                        Op::Update {
                            key,
                            value,
                            expected,
                        }
                    }
                    op @ Op::Delete { .. } => op,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut r = self.inner.txn(ops).await?;
        r.kvs = r
            .kvs
            .into_iter()
            .map(|kv| self.open(kv))
            .collect::<Result<_>>()?;
        Ok(r)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        let mut inner = self.inner.watch(prefix, after).await?;
        if !SECRETS.starts_with(prefix) && !prefix.starts_with(SECRETS) {
            return Ok(inner);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let pki = self.pki.clone();
        tokio::spawn(async move {
            while let Some(item) = inner.next().await {
                let item = item.and_then(|b| {
                    let events = b
                        .events
                        .into_iter()
                        .map(|e| open_event(&pki, e))
                        .collect::<Result<_>>()?;
                    Ok(WatchBatch {
                        events,
                        revision: b.revision,
                    })
                });
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Watch::new(rx))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn secrets_are_sealed_in_the_store_and_open_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Store> = store::SqliteStore::open(dir.path().join("db")).unwrap();
        let pki = Arc::new(Pki::load_or_create(&dir.path().join("pki")).unwrap());
        let s = SecretsAtRest::new(raw.clone(), pki);
        let key = format!("{SECRETS}default/token");
        let mut w = s.watch(SECRETS, 0).await.unwrap();
        s.create(&key, b"{\"data\":\"hunter2\"}".to_vec())
            .await
            .unwrap();
        s.create("/registry/core/configmaps/default/c", b"plain".to_vec())
            .await
            .unwrap();

        let sealed = raw.get(&key, 0).await.unwrap().unwrap().value;
        assert!(sealed.starts_with(b"k8s:enc:aesgcm:v1:"), "{sealed:?}");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        let plain = raw.get("/registry/core/configmaps/default/c", 0).await;
        assert_eq!(plain.unwrap().unwrap().value, b"plain");

        assert_eq!(
            s.get(&key, 0).await.unwrap().unwrap().value,
            b"{\"data\":\"hunter2\"}"
        );
        let batch = w.next().await.unwrap().unwrap();
        assert_eq!(batch.events[0].kv().value, b"{\"data\":\"hunter2\"}");
        // Bound to its key: the same bytes under another key do not decrypt.
        let other = format!("{SECRETS}default/moved");
        raw.create(&other, sealed).await.unwrap();
        assert!(s.get(&other, 0).await.is_err());
    }
}
