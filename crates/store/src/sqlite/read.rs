//! Reads: a pool of read connections, range reads at a revision, and history replay.
//!
//! Every read runs in one read transaction, i.e. one WAL snapshot: the revision it reports,
//! the compaction check and the rows all come from the same moment.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::schema::{self, first_id};
use super::{db, Shared};
use crate::check::prefix_end;
use crate::{Error, Event, KeyValue, RangeRequest, RangeResponse, Result, Revision};

/// Idle read connections. Connections are opened on demand, so readers never wait for
/// each other; at most `max_idle` are kept for reuse.
pub(super) struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl Pool {
    pub(super) fn new(path: PathBuf, max_idle: usize) -> Pool {
        Pool {
            path,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    fn take(&self) -> Result<Connection> {
        let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match conn {
            Some(conn) => Ok(conn),
            None => schema::open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

/// Runs `f` with a read connection on a blocking thread.
pub(super) async fn with_reader<T, F>(shared: &Arc<Shared>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
{
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = shared.readers.take()?;
        let out = f(&mut conn);
        shared.readers.give_back(conn);
        out
    })
    .await
    .map_err(|e| Error::Backend(format!("read task: {e}")))?
}

/// The recorded (current, compacted) revisions, in the snapshot of `tx`.
fn meta(tx: &Transaction<'_>) -> Result<(Revision, Revision)> {
    schema::load_meta(tx)
}

/// The revision a read at `requested` (0: current) is served at, or why it cannot be.
fn read_revision(requested: Revision, current: Revision, compacted: Revision) -> Result<Revision> {
    if requested == 0 {
        return Ok(current);
    }
    if requested > current {
        return Err(Error::FutureRevision { requested, current });
    }
    if requested < compacted {
        return Err(Error::Compacted {
            requested,
            compacted,
        });
    }
    Ok(requested)
}

/// The bytes of the upper bound of the keys under `prefix`. Keys are UTF-8, which never
/// contains the byte 0xFF, so `[0xFF]` is above every key.
fn upper_bound(prefix: &str) -> Vec<u8> {
    prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0xFF])
}

fn key_string(bytes: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

/// The rows of `history` that are the live value of their key as of revision ?3, for keys
/// in [?1, ?2). The scan walks the index `history_key (key, rev, deleted)` in key order,
/// and keeps a version if it is the latest at or before ?3 (one more index lookup) and not
/// a delete: no sort and no temporary table, so a page of a paginated read stops after its
/// last row, and only the rows returned are read from the table.
macro_rules! as_of {
    () => {
        "FROM history AS h \
         WHERE h.key >= ?1 AND h.key < ?2 AND h.rev <= ?3 AND h.deleted = 0 \
           AND h.rev = (SELECT MAX(x.rev) FROM history AS x WHERE x.key = h.key AND x.rev <= ?3)"
    };
}

/// At most ?4 (-1: all) keys as of a past revision, in key order.
const RANGE_AS_OF: &str = concat!(
    "SELECT h.key, h.create_rev, h.rev, h.value ",
    as_of!(),
    " ORDER BY h.key LIMIT ?4"
);
/// How many keys there are as of a past revision.
const COUNT_AS_OF: &str = concat!("SELECT COUNT(*) ", as_of!());

/// One key at `revision` (0: current).
pub(super) fn get(
    conn: &mut Connection,
    key: &str,
    revision: Revision,
) -> Result<Option<KeyValue>> {
    let tx = conn.transaction().map_err(db("begin read"))?;
    let (current, compacted) = meta(&tx)?;
    let rev = read_revision(revision, current, compacted)?;
    let row = if rev == current {
        tx.prepare_cached("SELECT create_rev, mod_rev, value FROM current WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row([key.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(db("read current"))?
    } else {
        tx.prepare_cached(
            "SELECT create_rev, rev, value, deleted FROM history \
             WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![key.as_bytes(), rev], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, bool>(3)?))
            })
            .optional()
        })
        .map_err(db("read history"))?
        .filter(|row| !row.3)
        .map(|(c, m, v, _)| (c, m, v))
    };
    Ok(row.map(|(create_revision, mod_revision, value)| KeyValue {
        key: key.to_string(),
        value,
        create_revision,
        mod_revision,
    }))
}

/// The keys under `req.prefix` as of `req.revision`.
///
/// At the current revision this reads the `current` table (an ordered scan of its key
/// index). At an older one it reads `history` through [`RANGE_AS_OF`].
pub(super) fn range(conn: &mut Connection, req: &RangeRequest) -> Result<RangeResponse> {
    let tx = conn.transaction().map_err(db("begin read"))?;
    let (current, compacted) = meta(&tx)?;
    let rev = read_revision(req.revision, current, compacted)?;
    let lo = req.prefix.as_bytes();
    let hi = upper_bound(&req.prefix);
    let start = match &req.start_after {
        Some(after) => {
            let mut start = after.as_bytes().to_vec();
            start.push(0);
            start
        }
        None => lo.to_vec(),
    };
    let at_current = rev == current;

    let mut kvs = Vec::new();
    let mut more = false;
    if !req.count_only {
        // One more than asked, to learn whether there are more.
        let limit = if req.limit == 0 {
            -1
        } else {
            req.limit as i64 + 1
        };
        let row = |r: &rusqlite::Row<'_>| {
            Ok(KeyValue {
                key: key_string(r.get(0)?)?,
                create_revision: r.get(1)?,
                mod_revision: r.get(2)?,
                value: r.get(3)?,
            })
        };
        let read = if at_current {
            tx.prepare_cached(
                "SELECT key, create_rev, mod_rev, value FROM current \
                 WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
            )
            .and_then(|mut s| s.query_map(params![start, hi, limit], row)?.collect())
        } else {
            tx.prepare_cached(RANGE_AS_OF)
                .and_then(|mut s| s.query_map(params![start, hi, rev, limit], row)?.collect())
        };
        kvs = read.map_err(db("range read"))?;
        if req.limit > 0 && kvs.len() > req.limit {
            kvs.truncate(req.limit);
            more = true;
        }
    }

    let count = if !req.count_only && req.limit == 0 && req.start_after.is_none() {
        kvs.len() as i64
    } else if at_current {
        tx.prepare_cached("SELECT COUNT(*) FROM current WHERE key >= ?1 AND key < ?2")
            .and_then(|mut s| s.query_row(params![lo, hi], |r| r.get(0)))
            .map_err(db("range count"))?
    } else {
        tx.prepare_cached(COUNT_AS_OF)
            .and_then(|mut s| s.query_row(params![lo, hi, rev], |r| r.get(0)))
            .map_err(db("range count"))?
    };
    Ok(RangeResponse {
        kvs,
        revision: rev,
        more,
        count,
    })
}

/// What one replay step found.
pub(super) struct Replayed {
    pub(super) events: Vec<Event>,
    /// Every event up to this revision has been read.
    pub(super) through: Revision,
    /// `through` is the current revision (of the snapshot).
    pub(super) caught_up: bool,
}

/// Most revisions one replay step reads, so that a watch replaying a long history holds
/// neither a snapshot nor memory for long.
const REPLAY_STEP: Revision = 2_000;

/// The events under `prefix` in the revisions after `after` (at most [`REPLAY_STEP`] of
/// them), from the history table. Fails with Compacted when some of them are gone.
pub(super) fn replay(conn: &mut Connection, prefix: &str, after: Revision) -> Result<Replayed> {
    let tx = conn.transaction().map_err(db("begin read"))?;
    let (current, compacted) = meta(&tx)?;
    if after + 1 < compacted {
        return Err(Error::Compacted {
            requested: after + 1,
            compacted,
        });
    }
    let through = current.min(after + REPLAY_STEP);
    if through <= after {
        return Ok(Replayed {
            events: Vec::new(),
            through: after,
            caught_up: true,
        });
    }
    let mut stmt = tx
        .prepare_cached(
            "SELECT h.key, h.rev, h.create_rev, h.deleted, h.value, h.prev_rev, p.create_rev, p.value \
             FROM history AS h \
             LEFT JOIN history AS p ON p.key = h.key AND p.rev = h.prev_rev \
             WHERE h.id >= ?1 AND h.id < ?2 AND h.key >= ?3 AND h.key < ?4 \
             ORDER BY h.id",
        )
        .map_err(db("prepare replay"))?;
    let events = stmt
        .query_map(
            params![
                first_id(after + 1),
                first_id(through + 1),
                prefix.as_bytes(),
                upper_bound(prefix)
            ],
            |r| {
                let key = key_string(r.get(0)?)?;
                let rev: Revision = r.get(1)?;
                let deleted: bool = r.get(3)?;
                let prev_rev: Revision = r.get(5)?;
                let prev_create: Option<Revision> = r.get(6)?;
                let prev = match prev_create {
                    Some(create_revision) => Some(KeyValue {
                        key: key.clone(),
                        value: r.get(7)?,
                        create_revision,
                        mod_revision: prev_rev,
                    }),
                    None => None,
                };
                let kv = KeyValue {
                    key,
                    value: r.get(4)?,
                    create_revision: r.get(2)?,
                    mod_revision: rev,
                };
                Ok(if deleted {
                    Event::Delete { kv, prev }
                } else {
                    Event::Put { kv, prev }
                })
            },
        )
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(db("replay"))?;
    Ok(Replayed {
        events,
        through,
        caught_up: through == current,
    })
}

/// See [`super::SqliteStore::verify`].
pub(super) fn verify(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction().map_err(db("begin read"))?;
    let integrity: String = tx
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(db("integrity check"))?;
    if integrity != "ok" {
        return Err(Error::Backend(format!(
            "sqlite integrity check: {integrity}"
        )));
    }
    let (current, compacted) = meta(&tx)?;
    let count = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<i64> {
        tx.query_row(sql, args, |r| r.get(0)).map_err(db("verify"))
    };
    let beyond = count(
        "SELECT COUNT(*) FROM history WHERE rev > ?1 OR id >> 20 != rev",
        &[&current],
    )?;
    if beyond > 0 {
        return Err(Error::Backend(format!(
            "{beyond} history rows beyond revision {current} or misplaced"
        )));
    }
    if compacted > current {
        return Err(Error::Backend(format!(
            "compacted revision {compacted} beyond revision {current}"
        )));
    }
    // Every current row is its key's latest history row, and vice versa.
    let stale_current = count(
        "SELECT COUNT(*) FROM current AS c \
         WHERE NOT EXISTS (SELECT 1 FROM history AS h WHERE h.key = c.key AND h.rev = c.mod_rev \
                           AND h.deleted = 0 AND h.create_rev = c.create_rev AND h.value = c.value) \
            OR EXISTS (SELECT 1 FROM history AS h WHERE h.key = c.key AND h.rev > c.mod_rev)",
        &[],
    )?;
    let missing_current = count(
        "SELECT COUNT(*) FROM (SELECT key, MAX(rev) AS rev, deleted FROM history GROUP BY key) AS m \
         WHERE m.deleted = 0 AND NOT EXISTS (SELECT 1 FROM current AS c WHERE c.key = m.key)",
        &[],
    )?;
    if stale_current + missing_current > 0 {
        return Err(Error::Backend(format!(
            "current table disagrees with history: {stale_current} stale, {missing_current} missing"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_revisions() {
        assert_eq!(read_revision(0, 10, 4).unwrap(), 10);
        assert_eq!(read_revision(4, 10, 4).unwrap(), 4);
        assert_eq!(read_revision(10, 10, 4).unwrap(), 10);
        assert!(matches!(
            read_revision(3, 10, 4),
            Err(Error::Compacted {
                requested: 3,
                compacted: 4
            })
        ));
        assert!(matches!(
            read_revision(11, 10, 4),
            Err(Error::FutureRevision {
                requested: 11,
                current: 10
            })
        ));
    }

    #[test]
    fn upper_bounds() {
        assert_eq!(upper_bound("/a/"), b"/a0".to_vec());
        // Above every UTF-8 key, the longest and highest included.
        assert_eq!(upper_bound(""), vec![0xFF]);
        assert!(upper_bound("").as_slice() > "\u{10FFFF}\u{10FFFF}".as_bytes());
        assert!(upper_bound("é").as_slice() > "éé".as_bytes());
    }
}
