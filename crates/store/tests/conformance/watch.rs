//! Conformance: watches.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use store::{Error, Event, KeyValue, Op, Store};

use crate::common::{assert_quiet, next_batch, next_events};

fn tombstone(key: &str, revision: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Vec::new(),
        create_revision: 0,
        mod_revision: revision,
    }
}

pub async fn watch_from_now(s: Arc<dyn Store>) -> Result<()> {
    let old = s.create("/w/old", b"before".to_vec()).await?;
    let mut w = s.watch("/w/", 0).await?;
    let c = s.create("/w/a", b"1".to_vec()).await?;
    s.create("/w", b"not under the prefix".to_vec()).await?;
    s.create("/wx/a", b"nor this".to_vec()).await?;
    let u = s.update("/w/a", b"2".to_vec(), c.mod_revision).await?;
    let d = s.delete("/w/a", 0).await?;
    let o = s.delete("/w/old", 0).await?;

    let events = next_events(&mut w, 4).await?;
    ensure!(
        events[0]
            == Event::Put {
                kv: c.clone(),
                prev: None
            },
        "got {:?}",
        events[0]
    );
    ensure!(
        events[1]
            == Event::Put {
                kv: u.clone(),
                prev: Some(c)
            },
        "got {:?}",
        events[1]
    );
    ensure!(
        events[2]
            == Event::Delete {
                kv: tombstone("/w/a", d.mod_revision),
                prev: Some(u)
            },
        "got {:?}",
        events[2]
    );
    ensure!(
        events[3]
            == Event::Delete {
                kv: tombstone("/w/old", o.mod_revision),
                prev: Some(old)
            }
    );
    assert_quiet(&mut w).await?;
    Ok(())
}

pub async fn watch_replays_then_goes_live(s: Arc<dyn Store>) -> Result<()> {
    let a = s.create("/v/a", b"a".to_vec()).await?;
    let b = s.create("/v/b", b"b".to_vec()).await?;
    let b2 = s.update("/v/b", b"b2".to_vec(), 0).await?;
    s.create("/v2/x", b"outside".to_vec()).await?;
    let gone = s.create("/v/gone", b"g".to_vec()).await?;
    let d = s.delete("/v/gone", 0).await?;

    let mut w = s.watch("/v/", a.mod_revision).await?;
    let replayed = next_events(&mut w, 4).await?;
    let expected = vec![
        Event::Put {
            kv: b.clone(),
            prev: None,
        },
        Event::Put {
            kv: b2.clone(),
            prev: Some(b),
        },
        Event::Put {
            kv: gone.clone(),
            prev: None,
        },
        Event::Delete {
            kv: tombstone("/v/gone", d.mod_revision),
            prev: Some(gone),
        },
    ];
    ensure!(replayed == expected, "replayed {replayed:?}");

    let c = s.create("/v/c", b"c".to_vec()).await?;
    let da = s.delete("/v/a", a.mod_revision).await?;
    let live = next_events(&mut w, 2).await?;
    ensure!(live[0] == Event::Put { kv: c, prev: None });
    ensure!(
        live[1]
            == Event::Delete {
                kv: tombstone("/v/a", da.mod_revision),
                prev: Some(a)
            }
    );
    assert_quiet(&mut w).await?;

    // A watch from the current revision sees only what comes next.
    let mut w = s.watch("/v/", s.revision().await?).await?;
    assert_quiet(&mut w).await?;
    let e = s.create("/v/e", b"e".to_vec()).await?;
    ensure!(next_events(&mut w, 1).await? == vec![Event::Put { kv: e, prev: None }]);
    Ok(())
}

/// Watches started while writes stream in: one replays from a past revision, one starts
/// "now". Each must see every later revision exactly once, in order.
pub async fn watch_start_races_writes(s: Arc<dyn Store>) -> Result<()> {
    const N: i64 = 300;
    let start = s.revision().await?;
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..N {
                s.create(&format!("/race/{i:03}"), vec![1; 32]).await?;
            }
            anyhow::Ok(())
        })
    };
    while s.revision().await? < start + 40 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let after = start + 20;
    let mut replaying = s.watch("/race/", after).await?;
    let mut from_now = s.watch("/race/", 0).await?;
    writer.await??;

    let events = next_events(&mut replaying, (N - 20) as usize).await?;
    let revs: Vec<i64> = events.iter().map(|e| e.kv().mod_revision).collect();
    let expected: Vec<i64> = (after + 1..=start + N).collect();
    ensure!(revs == expected, "replaying watch: gap or duplicate");
    ensure!(events
        .iter()
        .enumerate()
        .all(|(i, e)| e.kv().key == format!("/race/{:03}", i + 20)));
    assert_quiet(&mut replaying).await?;

    // The live one starts somewhere; from there on, every revision up to the last write.
    let mut revs = Vec::new();
    while revs.last() != Some(&(start + N)) {
        revs.extend(
            next_batch(&mut from_now)
                .await?
                .events
                .iter()
                .map(|e| e.kv().mod_revision),
        );
    }
    let first = revs[0];
    ensure!(
        first > after,
        "the live watch saw revision {first}, before it started"
    );
    ensure!(
        revs == (first..=start + N).collect::<Vec<_>>(),
        "live watch: gap or duplicate"
    );
    assert_quiet(&mut from_now).await?;
    Ok(())
}

pub async fn watch_multi_key_txn(s: Arc<dyn Store>) -> Result<()> {
    let mut w = s.watch("/mk/", 0).await?;
    let t = s
        .txn(
            ["/mk/a", "/mk/b", "/mk/c"]
                .map(|k| Op::Create {
                    key: k.into(),
                    value: k.into(),
                })
                .to_vec(),
        )
        .await?;
    let t2 = s
        .txn(vec![
            Op::Update {
                key: "/mk/a".into(),
                value: b"a2".to_vec(),
                expected: t.revision,
            },
            Op::Delete {
                key: "/mk/b".into(),
                expected: 0,
            },
            Op::Create {
                key: "/other/x".into(),
                value: vec![],
            },
        ])
        .await?;

    // One revision is never split across batches.
    let batch = next_batch(&mut w).await?;
    let first: Vec<&Event> = batch
        .events
        .iter()
        .filter(|e| e.kv().mod_revision == t.revision)
        .collect();
    ensure!(
        first.len() == 3,
        "the transaction's events came split: {batch:?}"
    );
    ensure!(batch.revision >= t.revision);
    let created: Vec<Event> = t
        .kvs
        .iter()
        .map(|kv| Event::Put {
            kv: kv.clone(),
            prev: None,
        })
        .collect();
    let mut events = batch.events.clone();
    while events.len() < 5 {
        events.extend(next_batch(&mut w).await?.events);
    }
    ensure!(events[..3] == created[..]);
    ensure!(
        events[3..]
            == [
                Event::Put {
                    kv: t2.kvs[0].clone(),
                    prev: Some(t.kvs[0].clone())
                },
                Event::Delete {
                    kv: tombstone("/mk/b", t2.revision),
                    prev: Some(t.kvs[1].clone())
                },
            ],
        "got {:?}",
        &events[3..]
    );
    assert_quiet(&mut w).await?;
    Ok(())
}

pub async fn watch_compacted_revision(s: Arc<dyn Store>) -> Result<()> {
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(s.create(&format!("/cw/{i}"), vec![i]).await?.mod_revision);
    }
    let compact_at = revs[5];
    s.compact(compact_at).await?;

    // Events after revs[2] start at revs[3], which is gone.
    match s.watch("/cw/", revs[2]).await {
        Err(Error::Compacted { compacted, .. }) => ensure!(compacted == compact_at),
        Err(e) => bail!("expected Compacted, got {e:?}"),
        Ok(mut w) => match tokio::time::timeout(Duration::from_secs(10), w.next()).await? {
            Some(Err(Error::Compacted { compacted, .. })) => ensure!(compacted == compact_at),
            other => bail!("expected Compacted as the first item, got {other:?}"),
        },
    }

    // From just before the compacted revision, everything is still there.
    let mut w = s.watch("/cw/", compact_at - 1).await?;
    let events = next_events(&mut w, 5).await?;
    let got: Vec<i64> = events.iter().map(|e| e.kv().mod_revision).collect();
    ensure!(got == revs[5..], "got {got:?}");
    let more = s.create("/cw/more", vec![]).await?;
    ensure!(
        next_events(&mut w, 1).await?
            == vec![Event::Put {
                kv: more,
                prev: None
            }]
    );
    Ok(())
}
