//! The writer thread: group commit, compaction and maintenance, in that one thread.
//!
//! One thread owns the only writing connection, so there is never lock contention inside
//! SQLite and the revision counter needs no coordination. It takes the first queued
//! command, then drains every transaction queued behind it (up to `max_batch`) and applies
//! them in one SQLite transaction: while one group waits for its fsync, the next one
//! queues, so the group size grows with the load and each fsync serves many writes.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use super::checkpoint::Checkpointer;
use super::schema::{first_id, history_id};
use super::{db, Committed, Shared};
use crate::check::check_op;
use crate::{Error, Event, KeyValue, Op, Result, Revision, WriteResponse};

pub(super) enum Command {
    Txn(Vec<Op>, oneshot::Sender<Result<WriteResponse>>),
    /// One compaction step (to a revision at most `COMPACT_STEP` past the compacted one).
    Compact(Revision, oneshot::Sender<Result<()>>),
    Maintain(oneshot::Sender<Result<()>>),
}

pub(super) struct Writer {
    conn: Connection,
    revision: Revision,
    compacted: Revision,
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<Committed>>,
    checkpointer: Checkpointer,
    max_batch: usize,
}

/// A key's latest value, as the `current` table has it.
struct Stored {
    create_rev: Revision,
    mod_rev: Revision,
    value: Vec<u8>,
}

type Reply = oneshot::Sender<Result<WriteResponse>>;

impl Writer {
    pub(super) fn new(
        conn: Connection,
        revision: Revision,
        compacted: Revision,
        shared: Arc<Shared>,
        events: broadcast::Sender<Arc<Committed>>,
        checkpointer: Checkpointer,
        max_batch: usize,
    ) -> Writer {
        let max_batch = max_batch.max(1);
        Writer {
            conn,
            revision,
            compacted,
            shared,
            events,
            checkpointer,
            max_batch,
        }
    }

    /// Serves commands until every sender is gone.
    pub(super) fn run(mut self, rx: Receiver<Command>) {
        let mut next: Option<Command> = None;
        loop {
            let cmd = match next.take() {
                Some(cmd) => cmd,
                None => match rx.recv() {
                    Ok(cmd) => cmd,
                    Err(_) => return,
                },
            };
            match cmd {
                Command::Txn(ops, reply) => {
                    let mut group = vec![(ops, reply)];
                    while group.len() < self.max_batch {
                        match rx.try_recv() {
                            Ok(Command::Txn(ops, reply)) => group.push((ops, reply)),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_group(group);
                }
                Command::Compact(revision, reply) => {
                    let _ = reply.send(self.compact(revision));
                }
                Command::Maintain(reply) => {
                    let _ = reply.send(self.maintain());
                }
            }
        }
    }

    /// Applies a group of transactions in one SQLite transaction, publishes the events and
    /// answers each caller, in that order: an answer means durable, and by then watchers
    /// can see the write.
    fn commit_group(&mut self, group: Vec<(Vec<Op>, Reply)>) {
        let (txns, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let mut events = Vec::new();
        match self.apply_group(txns, &mut events) {
            Ok((revision, outcomes)) => {
                if revision != self.revision {
                    self.revision = revision;
                    self.shared.revision.store(revision, Ordering::SeqCst);
                    // No receivers is fine: a watch that subscribes later replays history.
                    let _ = self.events.send(Arc::new(Committed {
                        last: revision,
                        events,
                    }));
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                // After answering: this may take a while.
                self.checkpointer.committed(&self.conn);
            }
            Err(e) => {
                tracing::error!(
                    "store write group of {} transactions failed: {e}",
                    replies.len()
                );
                for reply in replies {
                    let _ = reply.send(Err(Error::Backend(e.to_string())));
                }
            }
        }
    }

    /// Returns the new revision and each transaction's outcome. An `Err` means the SQLite
    /// transaction failed as a whole and nothing of the group was applied.
    fn apply_group(
        &mut self,
        txns: Vec<Vec<Op>>,
        events: &mut Vec<Event>,
    ) -> Result<(Revision, Vec<Result<WriteResponse>>)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin write"))?;
        let mut revision = self.revision;
        let mut outcomes = Vec::with_capacity(txns.len());
        for ops in txns {
            // Check every op against the state so far (earlier transactions of this group
            // included) before writing any: a failing transaction writes nothing.
            let mut prevs = Vec::with_capacity(ops.len());
            let mut failed = None;
            for op in &ops {
                let stored = lookup(&tx, op.key())?;
                if let Err(e) = check_op(op, stored.as_ref().map(|s| s.mod_rev)) {
                    failed = Some(e);
                    break;
                }
                prevs.push(stored);
            }
            if let Some(e) = failed {
                outcomes.push(Err(e));
                continue;
            }
            revision += 1;
            outcomes.push(Ok(apply_txn(&tx, revision, ops, prevs, events)?));
        }
        if revision != self.revision {
            tx.prepare_cached("UPDATE meta SET revision = ?1 WHERE id = 1")
                .and_then(|mut s| s.execute([revision]))
                .map_err(db("write meta"))?;
        }
        tx.commit().map_err(db("commit"))?;
        Ok((revision, outcomes))
    }

    /// One compaction step: forgets history before `target`, keeping for each key its
    /// latest version before `target` (unless that is a delete) and everything after.
    ///
    /// That keeps one version more than reads need (reads at `target` and later only need
    /// the latest version as of `target`): a watch may still start right at `target`, and
    /// its events there need the version they replaced as `prev`.
    ///
    /// Only keys written since the last compaction can have anything to forget (every
    /// other key has at most one live version older than that), so a step reads the rows
    /// of its revision range and deletes the older versions of the keys it finds.
    fn compact(&mut self, target: Revision) -> Result<()> {
        if target > self.revision {
            return Err(Error::FutureRevision {
                requested: target,
                current: self.revision,
            });
        }
        if target <= self.compacted {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin compaction"))?;
        {
            let mut touched = tx
                .prepare_cached(
                    "SELECT key, MAX(rev), deleted FROM history \
                     WHERE id >= ?1 AND id < ?2 GROUP BY key",
                )
                .map_err(db("prepare compaction"))?;
            let mut forget = tx
                .prepare_cached("DELETE FROM history WHERE key = ?1 AND rev < ?2")
                .map_err(db("prepare compaction"))?;
            let mut rows = touched
                .query(params![first_id(self.compacted.max(0)), first_id(target)])
                .map_err(db("compaction scan"))?;
            while let Some(row) = rows.next().map_err(db("compaction scan"))? {
                let key: Vec<u8> = row.get(0).map_err(db("compaction scan"))?;
                let latest: Revision = row.get(1).map_err(db("compaction scan"))?;
                let deleted: bool = row.get(2).map_err(db("compaction scan"))?;
                // A delete is forgotten too: before `target` the key simply did not exist.
                let below = if deleted { latest + 1 } else { latest };
                forget
                    .execute(params![key, below])
                    .map_err(db("compaction delete"))?;
            }
        }
        tx.prepare_cached("UPDATE meta SET compacted = ?1 WHERE id = 1")
            .and_then(|mut s| s.execute([target]))
            .map_err(db("write meta"))?;
        tx.commit().map_err(db("commit compaction"))?;
        self.compacted = target;
        self.shared.compacted.store(target, Ordering::SeqCst);
        Ok(())
    }

    /// Keeps the files small: when more than a quarter of the pages are free (after big
    /// deletes or compactions), gives most of them back; then checkpoints and truncates the
    /// WAL. Free pages left over are reused by later writes, so under a steady load the
    /// database stops growing once compaction keeps up.
    fn maintain(&mut self) -> Result<()> {
        let pragma = |name: &str| -> Result<i64> {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .map_err(db("read pragma"))
        };
        let pages = pragma("page_count")?;
        let free = pragma("freelist_count")?;
        if free * 4 > pages {
            let release = free - pages / 10;
            let mut stmt = self
                .conn
                .prepare(&format!("PRAGMA incremental_vacuum({release})"))
                .map_err(db("incremental vacuum"))?;
            let mut rows = stmt.query([]).map_err(db("incremental vacuum"))?;
            while rows.next().map_err(db("incremental vacuum"))?.is_some() {}
        }
        // Busy (a reader on an old snapshot) is not an error: the next run truncates.
        if self.checkpointer.run(&self.conn, "TRUNCATE")? {
            tracing::debug!("store wal checkpoint: readers busy, WAL not truncated");
        }
        Ok(())
    }
}

fn lookup(tx: &Transaction<'_>, key: &str) -> Result<Option<Stored>> {
    tx.prepare_cached("SELECT create_rev, mod_rev, value FROM current WHERE key = ?1")
        .and_then(|mut s| {
            s.query_row([key.as_bytes()], |r| {
                Ok(Stored {
                    create_rev: r.get(0)?,
                    mod_rev: r.get(1)?,
                    value: r.get(2)?,
                })
            })
            .optional()
        })
        .map_err(db("read current"))
}

/// Writes one checked transaction at `rev`; `prevs` are the keys' values before it.
fn apply_txn(
    tx: &Transaction<'_>,
    rev: Revision,
    ops: Vec<Op>,
    prevs: Vec<Option<Stored>>,
    events: &mut Vec<Event>,
) -> Result<WriteResponse> {
    let mut history = tx
        .prepare_cached(
            "INSERT INTO history (id, key, rev, create_rev, prev_rev, deleted, value) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(db("prepare history insert"))?;
    let mut kvs = Vec::with_capacity(ops.len());
    for (seq, (op, prev)) in ops.into_iter().zip(prevs).enumerate() {
        let id = history_id(rev, seq);
        let prev_kv = |key: &str, p: &Stored| KeyValue {
            key: key.to_string(),
            value: p.value.clone(),
            create_revision: p.create_rev,
            mod_revision: p.mod_rev,
        };
        match (op, prev) {
            (Op::Create { key, value }, None) => {
                tx.prepare_cached(
                    "INSERT INTO current (key, create_rev, mod_rev, value) VALUES (?1, ?2, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![key.as_bytes(), rev, value]))
                .map_err(db("insert current"))?;
                history
                    .execute(params![id, key.as_bytes(), rev, rev, 0, false, value])
                    .map_err(db("insert history"))?;
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: rev,
                    mod_revision: rev,
                };
                events.push(Event::Put {
                    kv: kv.clone(),
                    prev: None,
                });
                kvs.push(kv);
            }
            (Op::Update { key, value, .. }, Some(p)) => {
                tx.prepare_cached("UPDATE current SET mod_rev = ?2, value = ?3 WHERE key = ?1")
                    .and_then(|mut s| s.execute(params![key.as_bytes(), rev, value]))
                    .map_err(db("update current"))?;
                history
                    .execute(params![
                        id,
                        key.as_bytes(),
                        rev,
                        p.create_rev,
                        p.mod_rev,
                        false,
                        value
                    ])
                    .map_err(db("insert history"))?;
                let prev = prev_kv(&key, &p);
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: p.create_rev,
                    mod_revision: rev,
                };
                events.push(Event::Put {
                    kv: kv.clone(),
                    prev: Some(prev),
                });
                kvs.push(kv);
            }
            (Op::Delete { key, .. }, Some(p)) => {
                tx.prepare_cached("DELETE FROM current WHERE key = ?1")
                    .and_then(|mut s| s.execute([key.as_bytes()]))
                    .map_err(db("delete current"))?;
                history
                    .execute(params![
                        id,
                        key.as_bytes(),
                        rev,
                        0,
                        p.mod_rev,
                        true,
                        &[] as &[u8]
                    ])
                    .map_err(db("insert history"))?;
                let prev = prev_kv(&key, &p);
                let tombstone = KeyValue {
                    key: key.clone(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: rev,
                };
                events.push(Event::Delete {
                    kv: tombstone,
                    prev: Some(prev),
                });
                kvs.push(KeyValue {
                    key,
                    value: p.value,
                    create_revision: p.create_rev,
                    mod_revision: rev,
                });
            }
            (op, _) => {
                // check_op lets through only the combinations above.
                return Err(Error::Backend(format!(
                    "internal: unchecked op on {:?}",
                    op.key()
                )));
            }
        }
    }
    Ok(WriteResponse { revision: rev, kvs })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;
    use std::time::Duration;

    use super::*;
    use crate::sqlite::{read, schema};

    fn create(key: &str) -> Op {
        Op::Create {
            key: key.into(),
            value: key.into(),
        }
    }

    fn update(key: &str, expected: Revision) -> Op {
        Op::Update {
            key: key.into(),
            value: b"new".to_vec(),
            expected,
        }
    }

    /// Transactions queued together are committed as one group, and each is checked
    /// against the ones before it in the group: a failing one writes nothing and takes no
    /// revision, and the ones after it are unaffected.
    #[test]
    fn a_group_checks_each_transaction_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = schema::open_writer(&path).unwrap();
        let checkpointer = Checkpointer::start(&path, &mut conn).unwrap();
        let (events, mut live) = broadcast::channel(16);
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(1),
            compacted: AtomicI64::new(0),
            readers: read::Pool::new(path.clone(), 1),
            progress_interval: Duration::from_secs(10),
        });
        let writer = Writer::new(conn, 1, 0, shared.clone(), events, checkpointer, 16);

        let (tx, rx) = std::sync::mpsc::channel();
        let mut replies = Vec::new();
        for ops in [
            vec![create("/a")],
            vec![create("/a")],
            vec![create("/b"), update("/a", 2)],
            vec![create("/c"), update("/a", 2)],
            vec![update("/a", 3)],
        ] {
            let (reply, answer) = oneshot::channel();
            tx.send(Command::Txn(ops, reply)).unwrap();
            replies.push(answer);
        }
        drop(tx);
        // Everything is queued before the writer starts: one group, then the channel ends.
        writer.run(rx);

        let answers: Vec<_> = replies
            .into_iter()
            .map(|r| r.blocking_recv().unwrap())
            .collect();
        assert_eq!(answers[0].as_ref().unwrap().revision, 2);
        assert!(matches!(&answers[1], Err(Error::AlreadyExists(k)) if k == "/a"));
        assert_eq!(answers[2].as_ref().unwrap().revision, 3);
        assert!(matches!(
            answers[3],
            Err(Error::Conflict {
                expected: 2,
                current: 3,
                ..
            })
        ));
        assert_eq!(answers[4].as_ref().unwrap().revision, 4);
        assert_eq!(shared.revision.load(Ordering::SeqCst), 4);

        let group = live.try_recv().unwrap();
        assert_eq!(group.last, 4);
        let revs: Vec<_> = group
            .events
            .iter()
            .map(|e| (e.kv().key.as_str(), e.kv().mod_revision))
            .collect();
        assert_eq!(revs, [("/a", 2), ("/b", 3), ("/a", 3), ("/a", 4)]);
        assert!(live.try_recv().is_err(), "more than one group");

        let conn = schema::open_reader(&path).unwrap();
        assert_eq!(schema::load_meta(&conn).unwrap(), (4, 0));
        let keys: Vec<Vec<u8>> = conn
            .prepare("SELECT key FROM current ORDER BY key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            keys,
            [b"/a".to_vec(), b"/b".to_vec()],
            "the failed transaction left /c"
        );
    }
}
