//! Acknowledged means durable: a writer process is killed with SIGKILL in the middle of
//! many concurrent writes, and every write it had been answered for must be there after
//! the store is reopened.
//!
//! The writer is this test binary run again with [`CHILD_ENV`] set (only the
//! `crash_child` test does anything then). It prints `ack KEY REVISION` as soon as each
//! write returns; the parent reads those lines, kills it, and checks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use store::{RangeRequest, SqliteStore, Store};

const CHILD_ENV: &str = "CLOUDLET_STORE_CRASH_CHILD";

/// The writer (does nothing unless run by [`kill_9_loses_no_acknowledged_write`]).
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = SqliteStore::open(&path).unwrap();
        let round: u32 = std::env::var("CRASH_ROUND").unwrap().parse().unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/crash/{round}/{t}/{i}");
                        let kv = store.create(&key, key.clone().into_bytes()).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {key} {}", kv.mod_revision).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    // Several rounds on the same database: recovery after recovery.
    for round in 0..3u32 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .env("CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let kill_after = 300 + 200 * round as usize;
        let mut this_round = 0;
        let mut lines = stdout.lines();
        // Read acks until enough, then kill while writes are in flight, then read what was
        // acknowledged before the kill (still in the pipe).
        for line in lines.by_ref() {
            if record(&line.unwrap(), &mut acked) {
                this_round += 1;
                if this_round == kill_after {
                    child.kill().unwrap();
                    break;
                }
            }
        }
        for line in lines {
            let Ok(line) = line else { break };
            record(&line, &mut acked);
        }
        let status = child.wait().unwrap();
        eprintln!(
            "round {round}: {this_round} writes acknowledged before the kill, {} in all",
            acked.len()
        );
        assert!(!status.success(), "the writer was not killed: {status}");

        let store: Arc<SqliteStore> = SqliteStore::open(&path).unwrap();
        store
            .verify()
            .await
            .expect("the store is consistent after a kill -9");
        let revision = store.revision().await.unwrap();
        let max_acked = acked.values().copied().max().unwrap();
        assert!(
            revision >= max_acked,
            "revision {revision} < acknowledged {max_acked}"
        );
        let all = store
            .range(RangeRequest {
                prefix: "/crash/".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let found: BTreeMap<&str, &store::KeyValue> =
            all.kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
        for (key, rev) in &acked {
            let kv = found
                .get(key.as_str())
                .unwrap_or_else(|| panic!("acknowledged {key} is lost"));
            assert_eq!(kv.mod_revision, *rev, "{key}");
            assert_eq!(kv.value, key.as_bytes(), "{key}");
        }
        // History is intact: reading at an acknowledged revision shows the key.
        let (key, rev) = acked.iter().nth(acked.len() / 2).unwrap();
        assert!(store.get(key, *rev).await.unwrap().is_some());
        // Unacknowledged writes may have landed too, but nothing beyond the revision.
        assert!(all.kvs.iter().all(|kv| kv.mod_revision <= revision));
    }
}

fn record(line: &str, acked: &mut BTreeMap<String, i64>) -> bool {
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("ack"), Some(key), Some(rev)) => {
            acked.insert(key.to_string(), rev.parse().unwrap());
            true
        }
        _ => false,
    }
}
