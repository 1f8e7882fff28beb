//! A revisioned key-value store with watch, as etcd defines one, behind one trait.
//!
//! The Kubernetes API server keeps every object under a key (`/registry/pods/ns/name`) and
//! uses the store's revision as the object's `resourceVersion`, so the semantics here are
//! etcd's: one global revision that every successful write bumps by exactly one, per-key
//! create and modification revisions, watches that replay every event after a revision,
//! and compaction that forgets history before a revision (watches and reads from before
//! it fail with [`Error::Compacted`]).
//!
//! Backends: [`sqlite`] (embedded, the default) and [`etcd`] (HA). Both pass the one
//! conformance suite in `tests/`.

use async_trait::async_trait;

mod check;
pub mod endpoint;
pub mod etcd;
pub mod sqlite;

pub use etcd::{EtcdStore, EtcdTls};
pub use sqlite::{SqliteOptions, SqliteStore};

/// The store's global revision: every write transaction adds exactly one. A new store is
/// at revision 1, so its first write makes 2 (etcd's numbering; the SQLite backend follows
/// it).
pub type Revision = i64;

/// One key at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since it last did not exist).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// What a watch reports. Events come in revision order; one revision may carry several
/// events (a transaction over several keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A create or an update. `prev` is the value before, if the key existed.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A delete. `kv.mod_revision` is the revision of the delete; `kv.value` is empty;
    /// `prev` is the last value the key had.
    Delete {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
}

impl Event {
    pub fn kv(&self) -> &KeyValue {
        match self {
            Event::Put { kv, .. } | Event::Delete { kv, .. } => kv,
        }
    }
}

/// A range read: every key starting with `prefix`, in key order.
#[derive(Debug, Clone, Default)]
pub struct RangeRequest {
    pub prefix: String,
    /// Read as of this revision (0 = the current one). Fails with [`Error::Compacted`] if
    /// it is below the compacted revision, [`Error::FutureRevision`] if above current.
    pub revision: Revision,
    /// At most this many keys (0 = no limit); `more` tells whether keys were left out.
    pub limit: usize,
    /// Start strictly after this key (for pagination; must start with `prefix`).
    pub start_after: Option<String>,
    /// Return only the count, not the keys.
    pub count_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// The revision the read was served at.
    pub revision: Revision,
    /// Keys in the range after the last one returned (`limit` cut it).
    pub more: bool,
    /// Number of keys in the whole range at that revision (ignoring limit and start_after).
    pub count: i64,
}

/// One write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create `key`; fails if it exists.
    Create { key: String, value: Vec<u8> },
    /// Replace `key`'s value if its mod_revision is `expected` (fails with Conflict
    /// otherwise, NotFound if it does not exist). `expected` 0 means "whatever it is".
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    /// Delete `key` if its mod_revision is `expected` (0 = unconditionally).
    Delete { key: String, expected: Revision },
}

impl Op {
    /// The key this op writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// What a successful write returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResponse {
    /// The revision this write made.
    pub revision: Revision,
    /// For each op, in order: the key as written (for deletes: the deleted value, with
    /// `mod_revision` = the delete's revision and the old value kept in `value`).
    pub kvs: Vec<KeyValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A guarded write found another revision: `current` is the key's mod_revision now.
    #[error("key {key:?} was modified: expected revision {expected}, found {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// The revision asked for was compacted away; `compacted` is the oldest kept.
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (current: {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend itself failed (I/O, connection, corruption).
    #[error("store backend: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A live watch. Dropping it cancels the watch.
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<WatchBatch>>,
}

/// Events of one or more revisions, delivered together (a revision's events are never
/// split across batches), with `revision` the last event's; or, with no events, a progress
/// notification saying the watcher has seen everything up to `revision` (for bookmarks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    pub events: Vec<Event>,
    pub revision: Revision,
}

impl Watch {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<WatchBatch>>) -> Self {
        Watch { rx }
    }

    /// The next batch; `None` when the store closed the watch. An `Err(Compacted)` ends it.
    pub async fn next(&mut self) -> Option<Result<WatchBatch>> {
        self.rx.recv().await
    }
}

/// The revisioned key-value store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current revision.
    async fn revision(&self) -> Result<Revision>;

    /// The oldest revision still readable: reads and watches from before it fail.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// One key, as of `revision` (0 = now).
    async fn get(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>> {
        let r = self
            .range(RangeRequest {
                prefix: key.to_string(),
                revision,
                limit: 0,
                ..Default::default()
            })
            .await?;
        Ok(r.kvs.into_iter().find(|kv| kv.key == key))
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse>;

    /// Apply every op atomically at one new revision, or none (the first failing op's error).
    /// [`Error::Invalid`] for an empty transaction, an empty key, a key written twice, or
    /// more than 128 ops (etcd's default limit).
    async fn txn(&self, ops: Vec<Op>) -> Result<WriteResponse>;

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let r = self
            .txn(vec![Op::Create {
                key: key.to_string(),
                value,
            }])
            .await?;
        Ok(r.kvs.into_iter().next().expect("one op, one kv"))
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let r = self
            .txn(vec![Op::Update {
                key: key.to_string(),
                value,
                expected,
            }])
            .await?;
        Ok(r.kvs.into_iter().next().expect("one op, one kv"))
    }

    /// Delete and return the last value (with `mod_revision` = the delete's revision).
    async fn delete(&self, key: &str, expected: Revision) -> Result<KeyValue> {
        let r = self
            .txn(vec![Op::Delete {
                key: key.to_string(),
                expected,
            }])
            .await?;
        Ok(r.kvs.into_iter().next().expect("one op, one kv"))
    }

    /// Watch every key under `prefix`, with every event after revision `after` (0 = from
    /// now on: every write that completes after `watch` returned is seen). Fails with
    /// Compacted (at once, or as the first item) when events after `after` were compacted
    /// away (`after + 1 < compacted_revision`).
    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch>;

    /// Forget the history before `revision` (values as of `revision` and later stay).
    /// Compacting at or below the compacted revision does nothing; beyond the current
    /// revision fails with [`Error::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<()>;
}
