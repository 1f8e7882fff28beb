//! The HA backend: etcd v3 over gRPC (`etcd-client`). Revisions are etcd's own.
//!
//! Mapping onto etcd:
//! - `txn`: one etcd transaction. Its compares guard every op (create: `create_revision
//!   == 0`; update or delete with an expected revision: `mod_revision == expected`; without
//!   one: `version > 0`, the key exists). If they hold, the puts and deletes run with
//!   `prev_kv` (for the create revision of updated keys and the values of deleted ones).
//!   If not, the failure branch reads every key in the same etcd transaction, and the
//!   first op that those values refuse gives the error, exactly as the SQLite backend
//!   would have reported it.
//! - `range`: a range request at the revision, `[start, prefix_end)` where start is the
//!   prefix or `start_after + "\0"`; with a start key, the whole range's count comes from a
//!   second, count-only request at the same revision.
//! - `watch`: a watch with `start_revision = after + 1`, `prev_kv` and progress
//!   notifications; `watch` returns once etcd has confirmed it (so a write after it
//!   returns is always seen). A compacted start gives [`Error::Compacted`] as first item.
//! - `compact`: a *physical* compaction: it returns once etcd has removed the history from
//!   its database, so space is reclaimable then and every member refuses older reads.
//!   Compacting at or below the compacted revision is a no-op.
//! - `compacted_revision`: etcd has no call for it. A read at revision 1 succeeds when
//!   nothing is compacted; otherwise a watch from revision 1 is cancelled by etcd with the
//!   compacted revision, which is the answer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions,
    EventType, GetOptions, Identity, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions, WatchResponse,
};
use tokio::sync::mpsc;

use crate::check::{check_op, prefix_end, validate_range, validate_txn};
use crate::{
    Error, Event, KeyValue, Op, RangeRequest, RangeResponse, Result, Revision, Store, Watch,
    WatchBatch, WriteResponse,
};

/// TLS for the connection to etcd: PEM files. With TLS, endpoints without a scheme are
/// reached over `https://`.
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// CA bundle that signed etcd's server certificate (the system roots are not used).
    pub ca: Option<PathBuf>,
    /// Client certificate, for etcd's `--client-cert-auth`; needs `key`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A store on an etcd cluster. Connect with [`EtcdStore::connect`].
pub struct EtcdStore {
    client: Client,
}

/// A key no one writes, for requests that only want a response header.
const PROBE_KEY: &[u8] = b"\0cloudlet-store-probe";

/// How long `connect` and the confirmation of a new watch may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

impl EtcdStore {
    /// A KV client that takes responses of any size: the default 4 MiB gRPC limit makes a
    /// LIST of a few thousand objects fail (kube-apiserver lifts it the same way).
    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(i32::MAX as usize)
            .max_encoding_message_size(i32::MAX as usize)
    }

    /// Connects to the cluster at `endpoints` (`host:port` or URLs) and checks that it
    /// answers.
    pub async fn connect<E: AsRef<str>>(
        endpoints: &[E],
        tls: Option<EtcdTls>,
    ) -> Result<Arc<EtcdStore>> {
        let names: Vec<&str> = endpoints.iter().map(|e| e.as_ref()).collect();
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some(tls) = tls {
            options = options.with_tls(tls_options(&tls)?);
        }
        let what = || format!("etcd {}", names.join(","));
        let client = Client::connect(&names, Some(options))
            .await
            .map_err(|e| Error::Backend(format!("connect to {}: {e}", what())))?;
        let store = EtcdStore { client };
        match tokio::time::timeout(ANSWER_TIMEOUT, store.revision()).await {
            Ok(Ok(_)) => Ok(Arc::new(store)),
            Ok(Err(e)) => Err(Error::Backend(format!("{}: {e}", what()))),
            Err(_) => Err(Error::Backend(format!(
                "{}: no answer in {ANSWER_TIMEOUT:?}",
                what()
            ))),
        }
    }

    /// Learns the compacted revision from a watch at revision 1, which etcd cancels with
    /// it (only called once a read showed that revision 1 is compacted).
    async fn probe_compaction(&self) -> Result<Revision> {
        let opts = WatchOptions::new().with_start_revision(1);
        let mut stream = self
            .client
            .watch_client()
            .watch(PROBE_KEY, Some(opts))
            .await
            .map_err(backend)?;
        let probe = async {
            loop {
                match stream.message().await.map_err(backend)? {
                    Some(resp) if resp.compact_revision() > 0 => return Ok(resp.compact_revision()),
                    Some(resp) if resp.canceled() => {
                        return Err(Error::Backend(format!("etcd: {}", resp.cancel_reason())))
                    }
                    Some(_) => continue,
                    None => return Err(Error::Backend("etcd closed the watch stream".into())),
                }
            }
        };
        tokio::time::timeout(ANSWER_TIMEOUT, probe)
            .await
            .map_err(|_| Error::Backend("etcd did not report its compacted revision".into()))?
    }

    /// Maps an error of a read at `requested`.
    async fn read_error(&self, e: etcd_client::Error, requested: Revision) -> Error {
        if is_compacted(&e) {
            match self.compacted_revision().await {
                Ok(compacted) => Error::Compacted {
                    requested,
                    compacted,
                },
                Err(e) => e,
            }
        } else if is_future(&e) {
            match self.revision().await {
                Ok(current) => Error::FutureRevision { requested, current },
                Err(e) => e,
            }
        } else {
            backend(e)
        }
    }

    async fn count(&self, start: Vec<u8>, end: Vec<u8>, revision: Revision) -> Result<i64> {
        let opts = GetOptions::new()
            .with_range(end)
            .with_revision(revision)
            .with_count_only();
        match self.kv().get(start, Some(opts)).await {
            Ok(resp) => Ok(resp.count()),
            Err(e) => Err(self.read_error(e, revision).await),
        }
    }
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| Error::Invalid(format!("etcd tls: read {}: {e}", p.display())))
    };
    let mut options = TlsOptions::new();
    if let Some(ca) = &tls.ca {
        options = options.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            options = options.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Invalid(
                "etcd tls: a client certificate needs its key".into(),
            ))
        }
    }
    Ok(options)
}

fn backend(e: etcd_client::Error) -> Error {
    Error::Backend(format!("etcd: {e}"))
}

fn grpc_message(e: &etcd_client::Error) -> &str {
    match e {
        etcd_client::Error::GRpcStatus(status) => status.message(),
        _ => "",
    }
}

fn is_compacted(e: &etcd_client::Error) -> bool {
    grpc_message(e).contains("required revision has been compacted")
}

fn is_future(e: &etcd_client::Error) -> bool {
    grpc_message(e).contains("required revision is a future revision")
}

/// The key range of `prefix` as etcd wants it: (key, range_end), where range_end "\0"
/// means "every key from key on".
fn key_range(prefix: &str, start_after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let end = prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0]);
    let start = match start_after {
        Some(after) => {
            let mut start = after.as_bytes().to_vec();
            start.push(0);
            start
        }
        // etcd refuses an empty key; "\0" is the first key there is.
        None if prefix.is_empty() => vec![0],
        None => prefix.as_bytes().to_vec(),
    };
    (start, end)
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: String::from_utf8(kv.key().to_vec())
            .map_err(|e| Error::Backend(format!("etcd: key is not utf-8: {e}")))?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| Error::Backend("etcd: response without header".into()))
}

#[async_trait]
impl Store for EtcdStore {
    async fn revision(&self) -> Result<Revision> {
        let opts = GetOptions::new().with_count_only();
        let resp = self
            .client
            .kv_client()
            .get(PROBE_KEY, Some(opts))
            .await
            .map_err(backend)?;
        header_revision(resp.header())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        let opts = GetOptions::new().with_count_only().with_revision(1);
        match self.kv().get(PROBE_KEY, Some(opts)).await {
            Ok(_) => Ok(0),
            Err(e) if is_compacted(&e) => self.probe_compaction().await,
            Err(e) => Err(backend(e)),
        }
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>> {
        if revision < 0 {
            return Err(Error::Invalid(format!("negative revision {revision}")));
        }
        let opts = GetOptions::new().with_revision(revision);
        match self.kv().get(key, Some(opts)).await {
            Ok(resp) => resp.kvs().first().map(convert_kv).transpose(),
            Err(e) => Err(self.read_error(e, revision).await),
        }
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        validate_range(&req)?;
        let (start, end) = key_range(&req.prefix, req.start_after.as_deref());
        let mut opts = GetOptions::new()
            .with_range(end.clone())
            .with_revision(req.revision);
        if req.count_only {
            opts = opts.with_count_only();
        }
        if req.limit > 0 {
            opts = opts.with_limit(req.limit as i64);
        }
        let mut resp = match self.kv().get(start, Some(opts)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.read_error(e, req.revision).await),
        };
        let revision = if req.revision == 0 {
            header_revision(resp.header())?
        } else {
            req.revision
        };
        // Moved out, not copied: a LIST of every pod carries megabytes.
        let kvs = resp
            .take_kvs()
            .into_iter()
            .map(|kv| {
                let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
                let (key, value) = kv.into_key_value();
                Ok(KeyValue {
                    key: String::from_utf8(key)
                        .map_err(|e| Error::Backend(format!("etcd: key is not utf-8: {e}")))?,
                    value,
                    create_revision,
                    mod_revision,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let count = if req.start_after.is_some() {
            let (start, end) = key_range(&req.prefix, None);
            self.count(start, end, revision).await?
        } else {
            resp.count()
        };
        Ok(RangeResponse {
            kvs,
            revision,
            more: resp.more(),
            count,
        })
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<WriteResponse> {
        validate_txn(&ops)?;
        let mut compares = Vec::with_capacity(ops.len());
        let mut writes = Vec::with_capacity(ops.len());
        let mut reads = Vec::with_capacity(ops.len());
        for op in &ops {
            let key = op.key().as_bytes().to_vec();
            let (compare, write) = match op {
                Op::Create { value, .. } => (
                    Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                    TxnOp::put(key.clone(), value.clone(), None),
                ),
                Op::Update {
                    value, expected, ..
                } => (
                    exists_at(key.clone(), *expected),
                    TxnOp::put(
                        key.clone(),
                        value.clone(),
                        Some(PutOptions::new().with_prev_key()),
                    ),
                ),
                Op::Delete { expected, .. } => (
                    exists_at(key.clone(), *expected),
                    TxnOp::delete(key.clone(), Some(DeleteOptions::new().with_prev_key())),
                ),
            };
            compares.push(compare);
            writes.push(write);
            reads.push(TxnOp::get(key, None));
        }
        let txn = Txn::new().when(compares).and_then(writes).or_else(reads);
        let resp = self.kv().txn(txn).await.map_err(backend)?;
        let revision = header_revision(resp.header())?;
        let responses = resp.op_responses();
        if !resp.succeeded() {
            // The reads ran in the same etcd transaction: they show why the compares failed.
            for (op, read) in ops.iter().zip(&responses) {
                let TxnOpResponse::Get(read) = read else {
                    continue;
                };
                check_op(op, read.kvs().first().map(|kv| kv.mod_revision()))?;
            }
            return Err(Error::Backend(
                "etcd: transaction refused, but every key checks out".into(),
            ));
        }
        let mut kvs = Vec::with_capacity(ops.len());
        for (op, response) in ops.into_iter().zip(responses) {
            let kv = match (op, response) {
                (Op::Create { key, value }, TxnOpResponse::Put(_)) => KeyValue {
                    key,
                    value,
                    create_revision: revision,
                    mod_revision: revision,
                },
                (Op::Update { key, value, .. }, TxnOpResponse::Put(put)) => {
                    let create_revision = put
                        .prev_key()
                        .map(|p| p.create_revision())
                        .unwrap_or(revision);
                    KeyValue {
                        key,
                        value,
                        create_revision,
                        mod_revision: revision,
                    }
                }
                (Op::Delete { key, .. }, TxnOpResponse::Delete(del)) => {
                    let prev = del.prev_kvs().first().ok_or_else(|| {
                        Error::Backend(format!(
                            "etcd: delete of {key:?} returned no previous value"
                        ))
                    })?;
                    KeyValue {
                        key,
                        value: prev.value().to_vec(),
                        create_revision: prev.create_revision(),
                        mod_revision: revision,
                    }
                }
                (op, _) => {
                    return Err(Error::Backend(format!(
                        "etcd: unexpected response for {:?}",
                        op.key()
                    )))
                }
            };
            kvs.push(kv);
        }
        Ok(WriteResponse { revision, kvs })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        if after < 0 {
            return Err(Error::Invalid(format!("negative revision {after}")));
        }
        let (start, end) = key_range(prefix, None);
        let mut opts = WatchOptions::new()
            .with_range(end)
            .with_prev_key()
            .with_progress_notify();
        if after > 0 {
            opts = opts.with_start_revision(after + 1);
        }
        let mut stream = self
            .client
            .watch_client()
            .max_decoding_message_size(i32::MAX as usize)
            .watch(start, Some(opts))
            .await
            .map_err(backend)?;
        // Wait for etcd to confirm: from then on, every write is seen.
        let created = tokio::time::timeout(ANSWER_TIMEOUT, stream.message())
            .await
            .map_err(|_| Error::Backend("etcd did not confirm the watch".into()))?
            .map_err(backend)?
            .ok_or_else(|| Error::Backend("etcd closed the watch stream".into()))?;
        let (tx, rx) = mpsc::channel(64);
        let first = if created.created() && created.events().is_empty() && !created.canceled() {
            None
        } else {
            Some(created)
        };
        tokio::spawn(async move {
            if let Some(resp) = first {
                if !forward(resp, after, &tx).await {
                    return;
                }
            }
            loop {
                let msg = tokio::select! {
                    msg = stream.message() => msg,
                    _ = tx.closed() => return,
                };
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => {
                        let end = Error::Backend("etcd closed the watch stream".into());
                        let _ = tx.send(Err(end)).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(backend(e))).await;
                        return;
                    }
                };
                if !forward(resp, after, &tx).await {
                    return;
                }
            }
        });
        Ok(Watch::new(rx))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Ok(());
        }
        let opts = CompactionOptions::new().with_physical();
        match self.kv().compact(revision, Some(opts)).await {
            Ok(_) => Ok(()),
            // Already compacted at or past it: nothing to do.
            Err(e) if is_compacted(&e) => Ok(()),
            Err(e) if is_future(&e) => Err(Error::FutureRevision {
                requested: revision,
                current: self.revision().await?,
            }),
            Err(e) => Err(backend(e)),
        }
    }
}

/// The compare for an update or delete: the key exists, at `expected` if that is set.
fn exists_at(key: Vec<u8>, expected: Revision) -> Compare {
    if expected == 0 {
        Compare::version(key, CompareOp::Greater, 0)
    } else {
        Compare::mod_revision(key, CompareOp::Equal, expected)
    }
}

/// Passes one watch response on; false when the watch is over (ended by etcd, failed, or
/// no longer wanted).
async fn forward(
    resp: WatchResponse,
    after: Revision,
    tx: &mpsc::Sender<Result<WatchBatch>>,
) -> bool {
    let batch = if resp.compact_revision() > 0 {
        Err(Error::Compacted {
            requested: after + 1,
            compacted: resp.compact_revision(),
        })
    } else if resp.canceled() {
        Err(Error::Backend(format!(
            "etcd cancelled the watch: {}",
            resp.cancel_reason()
        )))
    } else {
        match convert_events(&resp) {
            Ok(events) => match events.last() {
                Some(e) => {
                    let revision = e.kv().mod_revision;
                    Ok(WatchBatch { events, revision })
                }
                // A progress notification: everything up to the header's revision is seen.
                None => match header_revision(resp.header()) {
                    Ok(revision) => Ok(WatchBatch { events, revision }),
                    Err(e) => Err(e),
                },
            },
            Err(e) => Err(e),
        }
    };
    let end = batch.is_err();
    tx.send(batch).await.is_ok() && !end
}

fn convert_events(resp: &WatchResponse) -> Result<Vec<Event>> {
    let missing = || Error::Backend("etcd: watch event without a key".into());
    resp.events()
        .iter()
        .map(|e| {
            let kv = convert_kv(e.kv().ok_or_else(missing)?)?;
            let prev = e.prev_kv().map(convert_kv).transpose()?;
            Ok(match e.event_type() {
                EventType::Put => Event::Put { kv, prev },
                EventType::Delete => Event::Delete {
                    kv: KeyValue {
                        value: Vec::new(),
                        create_revision: 0,
                        ..kv
                    },
                    prev,
                },
            })
        })
        .collect()
}
