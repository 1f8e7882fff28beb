//! Checkpoints: copying the WAL back into the database file, and keeping the WAL small.
//!
//! SQLite's automatic checkpoint runs inside a commit once the WAL holds 1000 pages; done
//! there, the copy and the fsync of the database file stall writes for many milliseconds,
//! every few groups under load. So the automatic one is off (a WAL hook replaces it), and:
//! - a background thread runs PASSIVE checkpoints shortly after commits. PASSIVE never
//!   blocks the writer or readers, and does the bulk of the copying;
//! - the writer, once the WAL has grown past [`SOFT_PAGES`], runs one PASSIVE checkpoint
//!   itself right after a commit. Little is left to copy by then, and it is the only
//!   moment when nothing is being appended, so the copy can complete, which lets the next
//!   write restart the WAL from its beginning (the file stays at its size instead of
//!   growing);
//! - readers on old snapshots keep a checkpoint from completing (it cannot overwrite pages
//!   they may still read). If they overlap without a pause while writes go on, the WAL
//!   would grow without end; past [`HARD_PAGES`] the writer runs a RESTART checkpoint,
//!   which waits (through the busy timeout) for those readers to finish. Readers that start
//!   meanwhile read the database file and do not hold it up.
//!
//! The writer and the background thread take turns through a lock, so neither finds the
//! other's checkpoint in the way.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::{db, schema};
use crate::{Error, Result};

/// Least time between two background checkpoints: each one fsyncs the database file.
const PAUSE: Duration = Duration::from_millis(20);
/// WAL size (pages of 4 KiB) from which the writer finishes a checkpoint itself.
const SOFT_PAGES: i64 = 1000;
/// WAL size from which the writer waits for old readers to get the WAL restarted.
const HARD_PAGES: i64 = 16 * 1024;

/// The writer's side.
pub(super) struct Checkpointer {
    nudge: SyncSender<()>,
    turn: Arc<Mutex<()>>,
    /// Pages in the WAL after the last commit (set by the WAL hook).
    wal_pages: Arc<AtomicI64>,
    /// WAL size at which the writer next checkpoints.
    next_at: i64,
}

impl Checkpointer {
    /// Installs the WAL hook on the writer's connection (which turns SQLite's automatic
    /// checkpoint off) and starts the background thread; it ends with the writer.
    pub(super) fn start(path: &Path, writer: &mut Connection) -> Result<Checkpointer> {
        let wal_pages = Arc::new(AtomicI64::new(0));
        let pages = wal_pages.clone();
        writer
            .wal_hook(Some(
                move |_: &mut rusqlite::hooks::Wal, n: std::ffi::c_int| {
                    pages.store(i64::from(n), Ordering::Relaxed);
                    Ok(())
                },
            ))
            .map_err(db("set wal hook"))?;
        let conn = schema::open_checkpointer(path)?;
        let turn = Arc::new(Mutex::new(()));
        let (nudge, nudged) = sync_channel(1);
        let background_turn = turn.clone();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || background(conn, nudged, background_turn))
            .map_err(|e| Error::Backend(format!("start checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            nudge,
            turn,
            wal_pages,
            next_at: SOFT_PAGES,
        })
    }

    /// Called by the writer after each commit.
    pub(super) fn committed(&mut self, writer: &Connection) {
        // Full means a checkpoint is already due.
        let _ = self.nudge.try_send(());
        let pages = self.wal_pages.load(Ordering::Relaxed);
        if pages < SOFT_PAGES {
            // The WAL restarted.
            self.next_at = SOFT_PAGES;
            return;
        }
        if pages < self.next_at {
            return;
        }
        // If old readers hold it up, try again once the WAL has grown some more.
        self.next_at = pages + SOFT_PAGES;
        let mode = if pages >= HARD_PAGES {
            "RESTART"
        } else {
            "PASSIVE"
        };
        if let Err(e) = self.run(writer, mode) {
            tracing::warn!("store checkpoint ({mode}, WAL of {pages} pages): {e}");
        }
    }

    /// Runs a checkpoint on the writer's connection, in turn with the background thread.
    /// Returns whether readers kept it from completing.
    pub(super) fn run(&self, writer: &Connection, mode: &str) -> Result<bool> {
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let busy: i64 = writer
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(0))
            .map_err(db("wal checkpoint"))?;
        Ok(busy != 0)
    }
}

fn background(conn: Connection, nudged: Receiver<()>, turn: Arc<Mutex<()>>) {
    while nudged.recv().is_ok() {
        {
            let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) =
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
            {
                tracing::debug!("store background checkpoint: {e}");
            }
        }
        std::thread::sleep(PAUSE);
    }
}
