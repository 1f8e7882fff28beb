//! Secrets encrypted at rest: a [`Store`] in front of the real one that encrypts the values
//! of Secret objects on their way in and decrypts them on their way out (reads, write
//! responses and watch events), with the cluster's AES-GCM key ring (`pki::secrets`), bound
//! to the storage key as kube-apiserver binds them. Everything else passes through, and so
//! does a Secret written before encryption was on (it has no `k8s:enc:` prefix).

use std::sync::Arc;

use async_trait::async_trait;
use pki::Pki;
use store::{
    Error, Event, KeyValue, Op, RangeRequest, RangeResponse, Result, Revision, Store, Watch,
    WatchBatch, WriteResponse,
};

/// Where Secrets live (see [`crate::keys`]).
const SECRETS: &str = "/registry/core/secrets/";

pub struct SecretsAtRest {
    inner: Arc<dyn Store>,
    pki: Arc<Pki>,
}

impl SecretsAtRest {
    pub fn wrap(inner: Arc<dyn Store>, pki: Arc<Pki>) -> Arc<dyn Store> {
        Arc::new(SecretsAtRest { inner, pki })
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

    fn open(&self, mut kv: KeyValue) -> Result<KeyValue> {
        if kv.key.starts_with(SECRETS) && !kv.value.is_empty() {
            kv.value = self
                .pki
                .secrets()
                .decrypt_with_context(&kv.value, kv.key.as_bytes())
                .map_err(|e| Error::Backend(format!("decrypt {}: {e}", kv.key)))?;
        }
        Ok(kv)
    }

    fn open_event(&self, e: Event) -> Result<Event> {
        let open_prev = |p: Option<KeyValue>| p.map(|p| self.open(p)).transpose();
        Ok(match e {
            Event::Put { kv, prev } => Event::Put {
                kv: self.open(kv)?,
                prev: open_prev(prev)?,
            },
            Event::Delete { kv, prev } => Event::Delete {
                kv: self.open(kv)?,
                prev: open_prev(prev)?,
            },
        })
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
        let this = SecretsAtRest {
            inner: self.inner.clone(),
            pki: self.pki.clone(),
        };
        tokio::spawn(async move {
            while let Some(item) = inner.next().await {
                let item = item.and_then(|b| {
                    let events = b
                        .events
                        .into_iter()
                        .map(|e| this.open_event(e))
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
        let s = SecretsAtRest::wrap(raw.clone(), pki);
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
