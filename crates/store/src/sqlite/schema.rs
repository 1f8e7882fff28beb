//! The database: schema, connection settings and durability.
//!
//! Tables:
//! - `meta`: one row, the current revision and the compacted revision. It is updated in
//!   the same SQLite transaction as the writes, so after a crash it always matches them.
//! - `history`: one row per key per revision (puts and deletes). Its rowid is
//!   `revision << 20 | op index`, so the table itself is in revision order: appends are
//!   cheap and a watch replays a revision range with a rowid range scan. The index
//!   `history_key (key, rev, deleted)` finds a key's versions; "the latest version of each
//!   key under a prefix as of revision R" is a covering scan of it (see [`super::read`]).
//!   `prev_rev` points at the version a write replaced, which the watch needs as `prev`.
//! - `current`: the latest value of each live key. A copy of what `history` says, kept so
//!   that reads at the current revision, which are nearly all reads (LIST, GET, the
//!   writer's checks), are one ordered index scan or one lookup. A rowid table with a
//!   unique index on `key`, not a table clustered by key: new rows are appended (a group
//!   commit writes fewer pages), rows of a few KiB fit a page without overflow pages, and
//!   counting a key range reads only the small index.
//!
//! Keys are stored as BLOBs so that the prefix bounds (`key >= prefix AND key <
//! prefix_end`) compare bytes exactly as etcd does, whatever the bytes of the end bound.
//!
//! Durability: `journal_mode=WAL` with `synchronous=FULL`. In WAL mode, `NORMAL` would
//! already survive a kill -9 of this process (the WAL write reached the kernel), but not an
//! OS crash or power loss: the last commits would be lost although they were acknowledged.
//! `FULL` fsyncs the WAL on every commit, so an acknowledged write survives both; the
//! writer's group commit makes that one fsync per group of transactions, not per write.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::db;
use crate::{Error, Result, Revision};

/// Bumped when the schema changes; a newer database is refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS current (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    rev INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS history_key ON history (key, rev, deleted);
INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (1, 1, 0);
";

/// Bits of a history rowid below the revision: room for the op index in a transaction.
pub(super) const OP_BITS: u32 = 20;

/// The history rowid of op `seq` of revision `rev`.
pub(super) fn history_id(rev: Revision, seq: usize) -> i64 {
    (rev << OP_BITS) | seq as i64
}

/// A revision's first history rowid.
pub(super) fn first_id(rev: Revision) -> i64 {
    rev << OP_BITS
}

/// Opens the writing connection, creating the schema on a new database.
pub(super) fn open_writer(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Backend(format!("open {}: {e}", path.display())))?;
    // Only readers on old snapshots can make the writer wait (in a WAL checkpoint); never
    // let that hold up writes for long.
    conn.busy_timeout(Duration::from_millis(100))
        .map_err(db("set busy timeout"))?;
    // Before the first table exists; on an existing database this changes nothing.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(db("set auto_vacuum"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db("set journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend(format!(
            "{}: journal mode {mode}, not wal",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db("set synchronous"))?;
    // After a checkpoint that resets it, the WAL file is cut back to this size.
    conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)
        .map_err(db("set journal_size_limit"))?;
    conn.pragma_update(None, "cache_size", -32 * 1024)
        .map_err(db("set cache_size"))?;
    conn.set_prepared_statement_cache_capacity(32);

    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db("read user_version"))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "{}: schema version {version} is newer than this cloudlet's {SCHEMA_VERSION}",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .map_err(db("create schema"))?;
    Ok(conn)
}

/// Opens a connection for the read pool. It may only read (`query_only`), and works on
/// WAL snapshots, so it never waits for the writer.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Backend(format!("open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(db("set busy timeout"))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(db("set query_only"))?;
    conn.pragma_update(None, "cache_size", -16 * 1024)
        .map_err(db("set cache_size"))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Opens the background checkpointer's connection. It never waits for a lock: a busy
/// checkpoint is simply tried again after the next commit.
pub(super) fn open_checkpointer(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Backend(format!("open {}: {e}", path.display())))
}

/// The current and compacted revisions, as recorded.
pub(super) fn load_meta(conn: &Connection) -> Result<(Revision, Revision)> {
    conn.prepare_cached("SELECT revision, compacted FROM meta WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db("read meta"))?
        .ok_or_else(|| Error::Backend("sqlite: the meta row is missing".into()))
}
