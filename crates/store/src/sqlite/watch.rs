//! Watches: history replay, then the live broadcast, with no gap and no duplicate.
//!
//! The order of the steps is what makes it exact:
//! 1. subscribe to the broadcast of committed groups;
//! 2. replay the history table up to the revision found there. The writer publishes a
//!    group only after committing it, so any group published before step 1 is in the
//!    snapshot, and any group not in the snapshot is published after step 1 and received;
//! 3. forward live groups, skipping events at or below the revision already sent.
//!
//! A watcher whose consumer is slow blocks only its own task; the broadcast then drops
//! the oldest groups for it (`Lagged`), and it goes back to step 2 from the last revision
//! it handled. If compaction removed what it needs meanwhile, it ends with `Compacted`,
//! which the caller handles by listing again. Writers never wait for watchers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};

use super::read::{replay, with_reader};
use super::{Committed, Shared};
use crate::{Error, Result, Revision, Watch, WatchBatch};

/// Batches a watch holds for its consumer before it stops reading the broadcast.
const WATCH_CHANNEL: usize = 64;

/// Starts a watch of `prefix` for every event after `after` (0: after now).
/// `live` must be subscribed before this is called.
pub(super) fn start(
    shared: &Arc<Shared>,
    live: broadcast::Receiver<Arc<Committed>>,
    prefix: &str,
    after: Revision,
) -> Result<Watch> {
    if after < 0 {
        return Err(Error::Invalid(format!("negative revision {after}")));
    }
    // Read after subscribing: every group above this revision is published after the
    // subscription, so it reaches us.
    let current = shared.revision.load(Ordering::SeqCst);
    let compacted = shared.compacted.load(Ordering::SeqCst);
    if after > 0 && after + 1 < compacted {
        return Err(Error::Compacted {
            requested: after + 1,
            compacted,
        });
    }
    let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
    let watcher = Watcher {
        shared: shared.clone(),
        prefix: prefix.to_string(),
        last: if after == 0 { current } else { after },
        reported: if after == 0 { current } else { after },
        tx,
    };
    let replay_first = after > 0 && after < current;
    tokio::spawn(watcher.run(live, replay_first));
    Ok(Watch::new(rx))
}

struct Watcher {
    shared: Arc<Shared>,
    prefix: String,
    /// Every event up to this revision has been handled (sent, or not ours).
    last: Revision,
    /// The highest revision the consumer has been told about.
    reported: Revision,
    tx: mpsc::Sender<Result<WatchBatch>>,
}

/// Why the watch task stops.
enum Stop {
    /// The consumer dropped the watch.
    Gone,
    /// An error was sent as the watch's last item.
    Failed,
}

impl Watcher {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<Committed>>, replay_first: bool) {
        if replay_first && self.catch_up().await.is_err() {
            return;
        }
        let mut progress = tokio::time::interval(self.shared.progress_interval);
        progress.reset();
        loop {
            let step = tokio::select! {
                msg = live.recv() => match msg {
                    Ok(group) => self.forward(&group).await,
                    Err(RecvError::Lagged(_)) => self.catch_up().await,
                    // The store is gone: end the watch.
                    Err(RecvError::Closed) => return,
                },
                _ = self.tx.closed() => return,
                _ = progress.tick() => self.report_progress().await,
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn send(&mut self, batch: Result<WatchBatch>) -> Result<(), Stop> {
        let failed = batch.is_err();
        if let Ok(b) = &batch {
            self.reported = self.reported.max(b.revision);
        }
        self.tx.send(batch).await.map_err(|_| Stop::Gone)?;
        if failed {
            Err(Stop::Failed)
        } else {
            Ok(())
        }
    }

    /// Sends the events of a live group that are ours and new.
    async fn forward(&mut self, group: &Committed) -> Result<(), Stop> {
        if group.last <= self.last {
            return Ok(());
        }
        let last = self.last;
        let events: Vec<_> = group
            .events
            .iter()
            .filter(|e| e.kv().mod_revision > last && e.kv().key.starts_with(&self.prefix))
            .cloned()
            .collect();
        self.last = group.last;
        match events.last() {
            Some(e) => {
                let revision = e.kv().mod_revision;
                self.send(Ok(WatchBatch { events, revision })).await
            }
            None => Ok(()),
        }
    }

    /// Replays history from `last` until it reaches the current revision.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let prefix = self.prefix.clone();
            let after = self.last;
            let step = with_reader(&self.shared, move |conn| replay(conn, &prefix, after)).await;
            match step {
                Err(e) => return self.send(Err(e)).await,
                Ok(replayed) => {
                    self.last = replayed.through;
                    if let Some(e) = replayed.events.last() {
                        let revision = e.kv().mod_revision;
                        self.send(Ok(WatchBatch {
                            events: replayed.events,
                            revision,
                        }))
                        .await?;
                    }
                    if replayed.caught_up {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Tells an idle consumer how far the store has gone (a bookmark).
    async fn report_progress(&mut self) -> Result<(), Stop> {
        if self.last > self.reported {
            let revision = self.last;
            self.send(Ok(WatchBatch {
                events: Vec::new(),
                revision,
            }))
            .await
        } else {
            Ok(())
        }
    }
}
