//! What only the SQLite backend has: its files, its locking, its compaction schedule, its
//! group commit and its watch catch-up.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use store::{Error, Op, RangeRequest, SqliteOptions, SqliteStore, Store};

use common::{next_batch, next_events};

fn open(dir: &tempfile::TempDir, options: SqliteOptions) -> Arc<SqliteStore> {
    SqliteStore::open_with(dir.path().join("store.db"), options).unwrap()
}

fn history_rows(dir: &tempfile::TempDir) -> i64 {
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))
        .unwrap()
}

/// The same few keys updated many thousands of times, with the background compactor on:
/// the database and its WAL must stay small (without compaction this load writes ~25 MB
/// of history).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_use_stays_bounded_under_steady_updates() -> Result<()> {
    const BOUND: u64 = 12 * 1024 * 1024;
    let dir = tempfile::tempdir()?;
    let store = open(&dir, SqliteOptions::default());
    let compactor = store.spawn_compactor(Duration::from_millis(50), 1_000);
    for k in 0..8 {
        store.create(&format!("/steady/{k}"), vec![0; 1024]).await?;
    }
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut peak = 0;
                for i in 0..750u32 {
                    let value = vec![(i % 251) as u8; 1024];
                    store
                        .update(&format!("/steady/{}", t % 8), value, 0)
                        .await?;
                    if i % 50 == 0 {
                        peak = peak.max(store.disk_usage());
                    }
                }
                anyhow::Ok(peak)
            })
        })
        .collect();
    let mut peak = 0;
    for task in tasks {
        peak = peak.max(task.await??);
    }
    ensure!(store.revision().await? >= 24_000);
    ensure!(peak < BOUND, "disk use reached {peak} bytes");
    // The compactor keeps up: little history is left.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let compacted = store.compacted_revision().await?;
    ensure!(
        compacted >= store.revision().await? - 2_000,
        "compacted only to {compacted}"
    );
    ensure!(
        history_rows(&dir) < 3_000,
        "{} history rows kept",
        history_rows(&dir)
    );
    store.verify().await?;
    compactor.abort();
    Ok(())
}

#[tokio::test]
async fn compaction_keeps_only_what_reads_and_watches_need() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir, SqliteOptions::default());
    let mut last = store.create("/k", b"0".to_vec()).await?;
    for i in 1..100 {
        last = store.update("/k", format!("{i}").into_bytes(), 0).await?;
    }
    store.create("/gone", b"g".to_vec()).await?;
    store.delete("/gone", 0).await?;
    let now = store.create("/j", b"j".to_vec()).await?.mod_revision;
    store.compact(now).await?;
    // "/k": its last version (before `now`); "/gone": nothing; "/j": its one version.
    ensure!(
        history_rows(&dir) == 2,
        "{} history rows",
        history_rows(&dir)
    );
    ensure!(store.get("/k", 0).await? == Some(last.clone()));
    ensure!(store.get("/k", now).await? == Some(last));
    ensure!(store.get("/gone", now).await?.is_none());
    store.verify().await?;
    Ok(())
}

#[tokio::test]
async fn reopen_keeps_revisions_history_and_compaction() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (r1, r2, compacted) = {
        let store = open(&dir, SqliteOptions::default());
        let r0 = store.create("/a", b"0".to_vec()).await?.mod_revision;
        let r1 = store.update("/a", b"1".to_vec(), 0).await?.mod_revision;
        let r2 = store.create("/b", b"b".to_vec()).await?.mod_revision;
        store.delete("/b", r2).await?;
        store.compact(r1).await?;
        ensure!(r0 < r1);
        (r1, r2, r1)
    };
    let store = open(&dir, SqliteOptions::default());
    ensure!(store.revision().await? == r2 + 1);
    let raw = rusqlite::Connection::open(dir.path().join("store.db"))?;
    let mode: String = raw.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    ensure!(mode == "wal");
    let vacuum: i64 = raw.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    ensure!(vacuum == 2, "auto_vacuum is {vacuum}, not incremental");
    ensure!(store.compacted_revision().await? == compacted);
    ensure!(store.get("/a", 0).await?.unwrap().value == b"1");
    ensure!(store.get("/b", r2).await?.unwrap().value == b"b");
    ensure!(store.get("/b", 0).await?.is_none());
    ensure!(matches!(
        store.get("/a", r1 - 1).await,
        Err(Error::Compacted { .. })
    ));
    let next = store.create("/c", vec![]).await?;
    ensure!(next.mod_revision == r2 + 2);
    store.verify().await?;
    Ok(())
}

#[tokio::test]
async fn a_second_open_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = open(&dir, SqliteOptions::default());
    let second = SqliteStore::open(dir.path().join("store.db"));
    ensure!(
        matches!(second, Err(Error::Backend(_))),
        "a second open succeeded"
    );
    drop(first);
    SqliteStore::open(dir.path().join("store.db"))?;
    Ok(())
}

/// Many transactions on one key at once: the writer groups them, and a failing one in a
/// group must not disturb the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_inside_a_group_stay_alone() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir, SqliteOptions::default());
    let base = store.create("/g/counter", b"0".to_vec()).await?;
    let start = store.revision().await?;
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let ops = vec![
                    Op::Create {
                        key: format!("/g/mine/{t}"),
                        value: vec![],
                    },
                    // Only one of these can see the base revision.
                    Op::Update {
                        key: "/g/counter".into(),
                        value: vec![t],
                        expected: base.mod_revision,
                    },
                ];
                store.txn(ops).await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await? {
            Ok(_) => won += 1,
            Err(Error::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    ensure!(won == 1, "{won} transactions won");
    ensure!(store.revision().await? == start + 1);
    let mine = store
        .range(RangeRequest {
            prefix: "/g/mine/".into(),
            ..Default::default()
        })
        .await?;
    ensure!(mine.count == 1, "losers left {} keys", mine.count - 1);
    store.verify().await?;
    Ok(())
}

/// A consumer that does not read while thousands of writes happen: its watch falls
/// behind the broadcast, catches up from history, and still sees every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_catches_up_from_history() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let options = SqliteOptions {
        watch_buffer: 4,
        ..Default::default()
    };
    let store = open(&dir, options);
    let start = store.revision().await?;
    let mut w = store.watch("/slow/", 0).await?;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    store.create(&format!("/slow/{t}/{i}"), vec![]).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let events = next_events(&mut w, 2000).await?;
    let revs: Vec<i64> = events.iter().map(|e| e.kv().mod_revision).collect();
    ensure!(
        revs == (start + 1..=start + 2000).collect::<Vec<_>>(),
        "gap or duplicate"
    );

    // Behind again, and this time what it missed is compacted: it ends with Compacted.
    for i in 0..500 {
        store.create(&format!("/slow/late/{i}"), vec![]).await?;
    }
    store.compact(store.revision().await?).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await? {
            Some(Ok(_)) => continue,
            Some(Err(Error::Compacted { .. })) => break,
            other => anyhow::bail!("expected Compacted, got {other:?}"),
        }
    }
    ensure!(
        w.next().await.is_none(),
        "the watch goes on after Compacted"
    );
    Ok(())
}

#[tokio::test]
async fn an_idle_watch_gets_progress() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let options = SqliteOptions {
        progress_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let store = open(&dir, options);
    let mut w = store.watch("/quiet/", 0).await?;
    let r = store.create("/busy/a", vec![]).await?.mod_revision;
    let batch = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await?
        .unwrap()?;
    ensure!(
        batch.events.is_empty() && batch.revision == r,
        "got {batch:?}"
    );
    let e = store.create("/quiet/a", vec![]).await?;
    ensure!(next_batch(&mut w).await?.revision == e.mod_revision);
    Ok(())
}

#[tokio::test]
async fn dropping_the_store_ends_its_watches() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir, SqliteOptions::default());
    let mut w = store.watch("/", 0).await?;
    drop(store);
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await?;
    ensure!(end.is_none(), "got {end:?}");
    Ok(())
}
