//! The embedded backend: one SQLite database (bundled SQLite, WAL mode).
//!
//! Layout of the work:
//! - **Writes** go to one writer thread (`sqlite/writer.rs`) that owns the only writing
//!   connection and commits *groups* of transactions: whatever queued up while the previous
//!   group was being made durable is applied in one SQLite transaction and made durable
//!   with one fsync. Each store transaction still gets its own revision and is checked on
//!   its own against the state left by the ones before it in the group, so a failing one
//!   changes nothing and costs no revision. Callers are answered only after the group
//!   committed.
//! - **Reads** run on a small pool of read-only connections on tokio's blocking threads
//!   (`sqlite/read.rs`). In WAL mode a reader works on a snapshot and never waits for the
//!   writer.
//! - **Watches** (`sqlite/watch.rs`) subscribe to an in-process broadcast of committed
//!   groups, then replay the history table up to the revision they find, then forward only
//!   newer live events. A watcher that falls behind the broadcast re-reads from the history
//!   table; writers never wait for watchers.
//! - **Compaction** deletes superseded history (in steps, between write groups), and a
//!   background task ([`SqliteStore::spawn_compactor`]) does it on a schedule together with
//!   giving free pages back and truncating the WAL, so the files stay bounded.
//! - **Checkpoints** (`sqlite/checkpoint.rs`) copy the WAL back into the database in a
//!   background thread, so commits do not stall on them and the WAL stays small.
//!
//! Durability: WAL mode with `synchronous=FULL`, so an acknowledged write survives a
//! kill -9 of the process and also an OS crash or power loss; the group commit keeps that
//! to one fsync per group. The schema and the reasons for it are in `sqlite/schema.rs`.

mod checkpoint;
mod read;
mod schema;
mod watch;
mod writer;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use nix::fcntl::{Flock, FlockArg};
use tokio::sync::{broadcast, oneshot};

use crate::check::{validate_range, validate_txn};
use crate::{
    Error, Event, KeyValue, Op, RangeRequest, RangeResponse, Result, Revision, Store, Watch,
    WriteResponse,
};
use writer::Command;

/// Tuning knobs; [`Default`] is what production uses.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Most store transactions committed in one SQLite transaction (one fsync).
    pub max_batch: usize,
    /// Idle read connections kept open (more are opened under load and closed after).
    pub readers: usize,
    /// Committed groups the live broadcast holds for watchers; a watcher further behind
    /// catches up from the history table instead. Kept small: a stuck watcher pins this
    /// many groups (values included) in memory.
    pub watch_buffer: usize,
    /// How often an idle watch reports progress (an empty [`crate::WatchBatch`]) when the
    /// store moved on without events for it.
    pub progress_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_batch: 512,
            readers: 4,
            watch_buffer: 128,
            progress_interval: Duration::from_secs(10),
        }
    }
}

/// One committed write group, as the watchers get it.
#[derive(Debug)]
struct Committed {
    /// The group's last revision.
    last: Revision,
    /// Every event of the group, in revision order.
    events: Vec<Event>,
}

/// What the store handle, the writer thread, readers and watch tasks share.
struct Shared {
    /// Revision of the last durable commit (updated before callers are answered).
    revision: AtomicI64,
    compacted: AtomicI64,
    readers: read::Pool,
    progress_interval: Duration,
}

/// The SQLite store. Open it with [`SqliteStore::open`].
pub struct SqliteStore {
    path: PathBuf,
    shared: Arc<Shared>,
    /// The live feed of committed groups. Only the store and the writer hold a sender, so
    /// it closes, and the watches end, when the store is dropped.
    events: broadcast::Sender<Arc<Committed>>,
    /// `None` only while dropping: closing it stops the writer thread.
    writer: Option<std::sync::mpsc::Sender<Command>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Held for the store's life: one process at a time owns a database, since the revision
    /// and the watch broadcast live in this process.
    _lock: Flock<File>,
}

/// How far one compaction step goes, in revisions. A step runs on the writer thread
/// between write groups, so steps bound how long a compaction holds up writes.
const COMPACT_STEP: Revision = 5_000;

impl SqliteStore {
    /// Opens (or creates) the database at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<SqliteStore>> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (or creates) the database at `path`. Fails if another process has it open.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Arc<SqliteStore>> {
        let path = path.as_ref().to_path_buf();
        let lock = lock_file(&path)?;
        let mut conn = schema::open_writer(&path)?;
        let (revision, compacted) = schema::load_meta(&conn)?;
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            readers: read::Pool::new(path.clone(), options.readers),
            progress_interval: options.progress_interval,
        });
        let checkpointer = checkpoint::Checkpointer::start(&path, &mut conn)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = writer::Writer::new(
            conn,
            revision,
            compacted,
            shared.clone(),
            events.clone(),
            checkpointer,
            options.max_batch,
        );
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Backend(format!("start writer thread: {e}")))?;
        Ok(Arc::new(SqliteStore {
            path,
            shared,
            events,
            writer: Some(tx),
            thread: Some(thread),
            _lock: lock,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes on disk: the database file plus its WAL.
    pub fn disk_usage(&self) -> u64 {
        let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        size(self.path.clone()) + size(PathBuf::from(wal))
    }

    /// Gives free pages back to the file system (when many are free) and truncates the
    /// WAL. The background compactor calls this after each compaction.
    pub async fn maintain(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Maintain(tx))?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Checks the database's consistency: SQLite's own integrity check, no history beyond
    /// the revision, and the `current` table equal to the latest history of every key.
    /// For tests and for `cloudlet` diagnostics; it reads everything, so it is slow.
    pub async fn verify(&self) -> Result<()> {
        let shared = self.shared.clone();
        read::with_reader(&shared, read::verify).await
    }

    /// Starts compacting in the background: every `interval`, history older than the last
    /// `keep_revisions` revisions is compacted away, free pages are released and the WAL is
    /// truncated. The task stops when the store is dropped. Needs a tokio runtime.
    pub fn spawn_compactor(
        self: &Arc<Self>,
        interval: Duration,
        keep_revisions: Revision,
    ) -> tokio::task::JoinHandle<()> {
        let weak: Weak<SqliteStore> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                let target = store.shared.revision.load(Ordering::SeqCst) - keep_revisions;
                if target > store.shared.compacted.load(Ordering::SeqCst) {
                    if let Err(e) = store.compact(target).await {
                        tracing::warn!("store compaction to revision {target}: {e}");
                        continue;
                    }
                    if let Err(e) = store.maintain().await {
                        tracing::warn!("store maintenance: {e}");
                    }
                }
            }
        })
    }

    fn send(&self, cmd: Command) -> Result<()> {
        self.writer
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(cmd)
            .map_err(|_| writer_gone())
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer after the group it is committing; waiting
        // for it means the database is closed (and its lock free) once the store is gone.
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn writer_gone() -> Error {
    Error::Backend("the store's writer thread has stopped".into())
}

/// Takes the exclusive lock on `<path>-lock`. A separate file, because SQLite's own POSIX
/// locks on the database would be dropped when any other descriptor of it is closed.
fn lock_file(path: &Path) -> Result<Flock<File>> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push("-lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Backend(format!("open {}: {e}", Path::new(&lock_path).display())))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        Error::Backend(format!(
            "lock {}: {errno} (is another cloudlet using it?)",
            path.display()
        ))
    })
}

/// Maps a SQLite error to the store's backend error, naming what was being done.
fn db(what: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::Backend(format!("sqlite {what}: {e}"))
}

#[async_trait]
impl Store for SqliteStore {
    async fn revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::SeqCst))
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<Option<KeyValue>> {
        if revision < 0 {
            return Err(Error::Invalid(format!("negative revision {revision}")));
        }
        let key = key.to_string();
        read::with_reader(&self.shared, move |conn| read::get(conn, &key, revision)).await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        validate_range(&req)?;
        read::with_reader(&self.shared, move |conn| read::range(conn, &req)).await
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<WriteResponse> {
        validate_txn(&ops)?;
        let (tx, rx) = oneshot::channel();
        self.send(Command::Txn(ops, tx))?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        watch::start(&self.shared, self.events.subscribe(), prefix, after)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.shared.revision.load(Ordering::SeqCst);
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        // In steps, so that writes queued meanwhile go between them.
        loop {
            let compacted = self.shared.compacted.load(Ordering::SeqCst);
            if revision <= compacted {
                return Ok(());
            }
            let step = revision.min(compacted.max(1) + COMPACT_STEP);
            let (tx, rx) = oneshot::channel();
            self.send(Command::Compact(step, tx))?;
            rx.await.map_err(|_| writer_gone())??;
        }
    }
}
