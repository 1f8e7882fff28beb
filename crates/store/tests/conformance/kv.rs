//! Conformance: writes, transactions, revisions, ranges, compaction.

use std::sync::Arc;

use anyhow::{ensure, Result};
use store::{Error, Op, RangeRequest, Store};

fn create(key: &str, value: &str) -> Op {
    Op::Create {
        key: key.into(),
        value: value.into(),
    }
}

fn update(key: &str, value: &str, expected: i64) -> Op {
    Op::Update {
        key: key.into(),
        value: value.into(),
        expected,
    }
}

fn prefix(prefix: &str) -> RangeRequest {
    RangeRequest {
        prefix: prefix.into(),
        ..Default::default()
    }
}

fn keys(kvs: &[store::KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

pub async fn create_and_already_exists(s: Arc<dyn Store>) -> Result<()> {
    let before = s.revision().await?;
    let kv = s.create("/c/a", b"one".to_vec()).await?;
    ensure!(kv.key == "/c/a" && kv.value == b"one");
    ensure!(kv.mod_revision == before + 1 && kv.create_revision == kv.mod_revision);
    ensure!(s.revision().await? == kv.mod_revision);
    let err = s.create("/c/a", b"two".to_vec()).await.unwrap_err();
    ensure!(
        matches!(&err, Error::AlreadyExists(k) if k == "/c/a"),
        "got {err:?}"
    );
    ensure!(
        s.revision().await? == kv.mod_revision,
        "a failed create moved the revision"
    );
    ensure!(s.get("/c/a", 0).await?.unwrap().value == b"one");
    ensure!(s.get("/c/missing", 0).await?.is_none());
    Ok(())
}

pub async fn update_with_expected_revision(s: Arc<dyn Store>) -> Result<()> {
    let v1 = s.create("/u/a", b"1".to_vec()).await?;
    let v2 = s.update("/u/a", b"2".to_vec(), v1.mod_revision).await?;
    ensure!(v2.mod_revision == v1.mod_revision + 1);
    ensure!(v2.create_revision == v1.create_revision && v2.value == b"2");

    let err = s
        .update("/u/a", b"stale".to_vec(), v1.mod_revision)
        .await
        .unwrap_err();
    ensure!(
        matches!(&err, Error::Conflict { key, expected, current }
            if key == "/u/a" && *expected == v1.mod_revision && *current == v2.mod_revision),
        "got {err:?}"
    );
    ensure!(s.revision().await? == v2.mod_revision);

    // Expected 0: whatever the key is at.
    let v3 = s.update("/u/a", b"3".to_vec(), 0).await?;
    ensure!(v3.mod_revision == v2.mod_revision + 1 && v3.create_revision == v1.create_revision);
    ensure!(s.get("/u/a", 0).await? == Some(v3.clone()));

    for expected in [0, v3.mod_revision] {
        let err = s
            .update("/u/missing", b"x".to_vec(), expected)
            .await
            .unwrap_err();
        ensure!(
            matches!(&err, Error::NotFound(k) if k == "/u/missing"),
            "got {err:?}"
        );
    }
    ensure!(s.revision().await? == v3.mod_revision);
    Ok(())
}

pub async fn delete_guarded_and_not(s: Arc<dyn Store>) -> Result<()> {
    let a = s.create("/d/a", b"a".to_vec()).await?;
    let a2 = s.update("/d/a", b"a2".to_vec(), 0).await?;
    let err = s.delete("/d/a", a.mod_revision).await.unwrap_err();
    ensure!(
        matches!(&err, Error::Conflict { expected, current, .. }
            if *expected == a.mod_revision && *current == a2.mod_revision),
        "got {err:?}"
    );
    let gone = s.delete("/d/a", a2.mod_revision).await?;
    ensure!(gone.key == "/d/a" && gone.value == b"a2");
    ensure!(gone.mod_revision == a2.mod_revision + 1 && gone.create_revision == a.create_revision);
    ensure!(s.revision().await? == gone.mod_revision);
    ensure!(s.get("/d/a", 0).await?.is_none());
    for expected in [0, gone.mod_revision] {
        let err = s.delete("/d/a", expected).await.unwrap_err();
        ensure!(
            matches!(&err, Error::NotFound(k) if k == "/d/a"),
            "got {err:?}"
        );
    }

    let b = s.create("/d/b", b"b".to_vec()).await?;
    let gone = s.delete("/d/b", 0).await?;
    ensure!(gone.value == b"b" && gone.mod_revision == b.mod_revision + 1);
    ensure!(s.range(prefix("/d/")).await?.count == 0);
    Ok(())
}

pub async fn txn_is_all_or_nothing(s: Arc<dyn Store>) -> Result<()> {
    let a = s.create("/t/a", b"a".to_vec()).await?;
    let before = s.revision().await?;

    // The failing op is last: the ones before it must not be applied either.
    let err = s
        .txn(vec![
            create("/t/b", "b"),
            update("/t/a", "x", a.mod_revision + 7),
        ])
        .await
        .unwrap_err();
    ensure!(matches!(err, Error::Conflict { .. }), "got {err:?}");
    let err = s
        .txn(vec![create("/t/c", "c"), create("/t/a", "again")])
        .await
        .unwrap_err();
    ensure!(
        matches!(&err, Error::AlreadyExists(k) if k == "/t/a"),
        "got {err:?}"
    );
    let err = s
        .txn(vec![
            create("/t/d", "d"),
            Op::Delete {
                key: "/t/nope".into(),
                expected: 0,
            },
        ])
        .await
        .unwrap_err();
    ensure!(
        matches!(&err, Error::NotFound(k) if k == "/t/nope"),
        "got {err:?}"
    );
    // The first failing op is the one reported.
    let err = s
        .txn(vec![update("/t/zz", "z", 0), create("/t/a", "a")])
        .await
        .unwrap_err();
    ensure!(
        matches!(&err, Error::NotFound(k) if k == "/t/zz"),
        "got {err:?}"
    );

    ensure!(
        s.revision().await? == before,
        "failed transactions moved the revision"
    );
    let r = s.range(prefix("/t/")).await?;
    ensure!(
        keys(&r.kvs) == ["/t/a"],
        "failed transactions left {:?}",
        keys(&r.kvs)
    );
    ensure!(r.kvs[0] == a);

    // All ops of a successful one at one revision, answered in op order.
    let err = s
        .txn(vec![
            create("/t/e", "e"),
            update("/t/a", "a2", a.mod_revision),
            Op::Delete {
                key: "/t/e2".into(),
                expected: 0,
            },
        ])
        .await
        .unwrap_err();
    ensure!(
        matches!(&err, Error::NotFound(k) if k == "/t/e2"),
        "got {err:?}"
    );
    let w = s
        .txn(vec![
            create("/t/e", "e"),
            update("/t/a", "a2", a.mod_revision),
        ])
        .await?;
    ensure!(w.revision == before + 1);
    ensure!(keys(&w.kvs) == ["/t/e", "/t/a"]);
    ensure!(w.kvs.iter().all(|kv| kv.mod_revision == w.revision));
    ensure!(w.kvs[1].create_revision == a.create_revision && w.kvs[1].value == b"a2");
    let d = s
        .txn(vec![
            Op::Delete {
                key: "/t/e".into(),
                expected: 0,
            },
            create("/t/f", "f"),
        ])
        .await?;
    ensure!(d.revision == w.revision + 1);
    ensure!(d.kvs[0].value == b"e" && d.kvs[0].mod_revision == d.revision);
    ensure!(keys(&s.range(prefix("/t/")).await?.kvs) == ["/t/a", "/t/f"]);
    Ok(())
}

pub async fn txn_shape_is_checked(s: Arc<dyn Store>) -> Result<()> {
    let before = s.revision().await?;
    for ops in [
        vec![],
        vec![create("", "x")],
        vec![create("/s/a", "1"), update("/s/a", "2", 0)],
    ] {
        let err = s.txn(ops.clone()).await.unwrap_err();
        ensure!(matches!(err, Error::Invalid(_)), "{ops:?}: got {err:?}");
    }
    ensure!(s.revision().await? == before);
    Ok(())
}

pub async fn revision_moves_by_one_per_txn(s: Arc<dyn Store>) -> Result<()> {
    let start = s.revision().await?;
    for i in 0..20i64 {
        let ops = (0..(i % 4 + 1))
            .map(|j| create(&format!("/r/{i}/{j}"), "v"))
            .collect();
        let w = s.txn(ops).await?;
        ensure!(
            w.revision == start + i + 1,
            "txn {i}: revision {} after {start}",
            w.revision
        );
        // A refused one in between changes nothing.
        s.create(&format!("/r/{i}/0"), b"again".to_vec())
            .await
            .unwrap_err();
    }
    ensure!(s.revision().await? == start + 20);
    ensure!(
        s.range(RangeRequest {
            count_only: true,
            ..prefix("/r/")
        })
        .await?
        .count
            == 50
    );
    Ok(())
}

pub async fn create_and_mod_revisions(s: Arc<dyn Store>) -> Result<()> {
    let c = s.create("/m/k", b"1".to_vec()).await?;
    let u = s.update("/m/k", b"2".to_vec(), c.mod_revision).await?;
    ensure!((u.create_revision, u.mod_revision) == (c.create_revision, c.mod_revision + 1));
    let other = s.create("/m/other", b"o".to_vec()).await?;
    let got = s.get("/m/k", 0).await?.unwrap();
    ensure!((got.create_revision, got.mod_revision) == (c.create_revision, u.mod_revision));
    let d = s.delete("/m/k", 0).await?;
    ensure!(d.mod_revision == other.mod_revision + 1);
    // Created again: a new life, with a new create revision.
    let again = s.create("/m/k", b"3".to_vec()).await?;
    ensure!(
        again.create_revision == d.mod_revision + 1 && again.mod_revision == again.create_revision
    );
    Ok(())
}

pub async fn range_by_prefix(s: Arc<dyn Store>) -> Result<()> {
    for k in [
        "/p/a/1", "/p/a/2", "/p/a/10", "/p/a", "/p/ab/1", "/p/b/1", "/p/a0", "/q/a/1",
    ] {
        s.create(k, k.as_bytes().to_vec()).await?;
    }
    let r = s.range(prefix("/p/a/")).await?;
    ensure!(
        keys(&r.kvs) == ["/p/a/1", "/p/a/10", "/p/a/2"],
        "got {:?}",
        keys(&r.kvs)
    );
    ensure!(r.count == 3 && !r.more && r.revision == s.revision().await?);
    ensure!(r.kvs.iter().all(|kv| kv.value == kv.key.as_bytes()));

    // A plain string prefix, like etcd's: "/p/a" also matches "/p/ab/1" and "/p/a0".
    let r = s.range(prefix("/p/a")).await?;
    ensure!(
        keys(&r.kvs) == ["/p/a", "/p/a/1", "/p/a/10", "/p/a/2", "/p/a0", "/p/ab/1"],
        "got {:?}",
        keys(&r.kvs)
    );
    let r = s.range(prefix("/p/")).await?;
    ensure!(r.count == 7);
    let r = s.range(prefix("")).await?;
    ensure!(r.count == 8 && r.kvs.len() == 8);
    ensure!(s.range(prefix("/p/c")).await?.kvs.is_empty());
    // get is exact, not a prefix.
    ensure!(s.get("/p/a", 0).await?.unwrap().key == "/p/a");
    ensure!(s.get("/p/a/", 0).await?.is_none());

    let err = s
        .range(RangeRequest {
            start_after: Some("/x".into()),
            ..prefix("/p/")
        })
        .await
        .unwrap_err();
    ensure!(matches!(err, Error::Invalid(_)), "got {err:?}");
    Ok(())
}

pub async fn range_at_past_revision(s: Arc<dyn Store>) -> Result<()> {
    let r1 = s.create("/h/k", b"v1".to_vec()).await?.mod_revision;
    let r2 = s.update("/h/k", b"v2".to_vec(), 0).await?.mod_revision;
    let r3 = s.create("/h/j", b"j".to_vec()).await?.mod_revision;
    let r4 = s.delete("/h/k", 0).await?.mod_revision;
    let r5 = s.create("/h/k", b"v3".to_vec()).await?.mod_revision;

    let at = |revision| {
        let s = s.clone();
        async move {
            let r = s
                .range(RangeRequest {
                    revision,
                    ..prefix("/h/")
                })
                .await?;
            anyhow::Ok((
                r.revision,
                r.count,
                r.kvs
                    .into_iter()
                    .map(|kv| (kv.key, kv.value, kv.create_revision, kv.mod_revision))
                    .collect::<Vec<_>>(),
            ))
        }
    };
    let kv = |k: &str, v: &str, c, m| (k.to_string(), v.as_bytes().to_vec(), c, m);
    ensure!(at(r1).await? == (r1, 1, vec![kv("/h/k", "v1", r1, r1)]));
    ensure!(at(r2).await? == (r2, 1, vec![kv("/h/k", "v2", r1, r2)]));
    ensure!(
        at(r3).await?
            == (
                r3,
                2,
                vec![kv("/h/j", "j", r3, r3), kv("/h/k", "v2", r1, r2)]
            )
    );
    ensure!(at(r4).await? == (r4, 1, vec![kv("/h/j", "j", r3, r3)]));
    ensure!(
        at(r5).await?
            == (
                r5,
                2,
                vec![kv("/h/j", "j", r3, r3), kv("/h/k", "v3", r5, r5)]
            )
    );
    ensure!(at(0).await? == at(r5).await?);
    ensure!(s.get("/h/k", r2).await?.unwrap().value == b"v2");
    ensure!(s.get("/h/k", r4).await?.is_none());
    ensure!(s.get("/h/j", r2).await?.is_none());

    let r = s
        .range(RangeRequest {
            revision: r3,
            count_only: true,
            ..prefix("/h/")
        })
        .await?;
    ensure!(r.count == 2 && r.kvs.is_empty());
    let r = s
        .range(RangeRequest {
            revision: r3,
            limit: 1,
            ..prefix("/h/")
        })
        .await?;
    ensure!(keys(&r.kvs) == ["/h/j"] && r.more && r.count == 2);

    let err = s
        .range(RangeRequest {
            revision: r5 + 10,
            ..prefix("/h/")
        })
        .await
        .unwrap_err();
    ensure!(
        matches!(err, Error::FutureRevision { requested, current } if requested == r5 + 10 && current == r5),
        "got {err:?}"
    );
    Ok(())
}

pub async fn range_pagination_and_count(s: Arc<dyn Store>) -> Result<()> {
    let mut all = Vec::new();
    for i in 0..25 {
        let k = format!("/g/{i:02}");
        s.create(&k, vec![i as u8]).await?;
        all.push(k);
    }
    s.create("/g0", b"sibling".to_vec()).await?;
    let old = s.revision().await?;
    for i in 25..30 {
        let k = format!("/g/{i:02}");
        s.create(&k, vec![i as u8]).await?;
        all.push(k);
    }

    // Pages of 10 at the current revision, then at the older one.
    for (revision, total) in [(0, 30), (old, 25)] {
        let mut seen = Vec::new();
        let mut start_after = None;
        let mut served_at = revision;
        loop {
            let r = s
                .range(RangeRequest {
                    revision: served_at,
                    limit: 10,
                    start_after: start_after.clone(),
                    ..prefix("/g/")
                })
                .await?;
            ensure!(r.count == total, "count {} at {revision}", r.count);
            served_at = r.revision;
            seen.extend(r.kvs.iter().map(|kv| kv.key.clone()));
            start_after = r.kvs.last().map(|kv| kv.key.clone());
            let expect_more = seen.len() < total as usize;
            ensure!(
                r.more == expect_more,
                "more={} after {} keys",
                r.more,
                seen.len()
            );
            if !r.more {
                break;
            }
        }
        ensure!(seen == all.iter().take(total as usize).cloned().collect::<Vec<_>>());
    }
    let r = s
        .range(RangeRequest {
            count_only: true,
            ..prefix("/g/")
        })
        .await?;
    ensure!(r.count == 30 && r.kvs.is_empty());
    let r = s
        .range(RangeRequest {
            limit: 30,
            ..prefix("/g/")
        })
        .await?;
    ensure!(r.kvs.len() == 30 && !r.more);
    let r = s
        .range(RangeRequest {
            start_after: Some("/g/29".into()),
            ..prefix("/g/")
        })
        .await?;
    ensure!(r.kvs.is_empty() && !r.more && r.count == 30);
    Ok(())
}

pub async fn compaction_forgets_old_revisions(s: Arc<dyn Store>) -> Result<()> {
    let r1 = s.create("/x/k", b"1".to_vec()).await?.mod_revision;
    let r2 = s.update("/x/k", b"2".to_vec(), 0).await?.mod_revision;
    s.create("/x/gone", b"g".to_vec()).await?;
    let r3 = s.update("/x/k", b"3".to_vec(), 0).await?.mod_revision;
    s.delete("/x/gone", 0).await?;
    let r5 = s.create("/x/j", b"j".to_vec()).await?.mod_revision;

    s.compact(r3).await?;
    ensure!(s.compacted_revision().await? == r3);
    for old in [r1, r2] {
        let err = s
            .range(RangeRequest {
                revision: old,
                ..prefix("/x/")
            })
            .await
            .unwrap_err();
        ensure!(
            matches!(err, Error::Compacted { requested, compacted } if requested == old && compacted == r3),
            "got {err:?}"
        );
        ensure!(matches!(
            s.get("/x/k", old).await,
            Err(Error::Compacted { .. })
        ));
    }
    let r = s
        .range(RangeRequest {
            revision: r3,
            ..prefix("/x/")
        })
        .await?;
    ensure!(keys(&r.kvs) == ["/x/gone", "/x/k"] && r.kvs[1].value == b"3");
    let r = s.range(prefix("/x/")).await?;
    ensure!(keys(&r.kvs) == ["/x/j", "/x/k"] && r.revision == r5);
    ensure!(s.get("/x/k", 0).await?.unwrap().create_revision == r1);

    // Older or equal again: nothing to do. Beyond the revision: refused.
    s.compact(r2).await?;
    s.compact(r3).await?;
    ensure!(s.compacted_revision().await? == r3);
    let err = s.compact(r5 + 5).await.unwrap_err();
    ensure!(matches!(err, Error::FutureRevision { .. }), "got {err:?}");

    // Still writable, and compactable up to now.
    let w = s.update("/x/k", b"4".to_vec(), r3).await?;
    s.compact(w.mod_revision).await?;
    ensure!(s.compacted_revision().await? == w.mod_revision);
    let r = s.range(prefix("/x/")).await?;
    ensure!(keys(&r.kvs) == ["/x/j", "/x/k"] && r.kvs[1].value == b"4");
    Ok(())
}

pub async fn concurrent_writers(s: Arc<dyn Store>) -> Result<()> {
    let start = s.revision().await?;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..200 {
                    let kv = s
                        .create(&format!("/w/{t}/{i:03}"), vec![t as u8; 64])
                        .await?;
                    revs.push(kv.mod_revision);
                }
                anyhow::Ok(revs)
            })
        })
        .collect();
    let mut revs = Vec::new();
    for task in tasks {
        let mine = task.await??;
        ensure!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one task's writes out of order"
        );
        revs.extend(mine);
    }
    revs.sort_unstable();
    let expected: Vec<i64> = (start + 1..=start + 1600).collect();
    ensure!(
        revs == expected,
        "revisions are not distinct and consecutive"
    );
    ensure!(s.revision().await? == start + 1600);
    ensure!(
        s.range(RangeRequest {
            count_only: true,
            ..prefix("/w/")
        })
        .await?
        .count
            == 1600
    );
    Ok(())
}
