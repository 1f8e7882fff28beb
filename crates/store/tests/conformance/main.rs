//! The conformance suite: every case runs against both backends, SQLite and a real etcd
//! (one etcd per test, so cases can count revisions). Cases assert only etcd's semantics,
//! never a backend's absolute revision numbers.

#[path = "../common/mod.rs"]
mod common;
mod kv;
mod watch;

/// Instantiates each case once per backend: `sqlite::case` and `etcd::case`.
macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::common::sqlite().await;
                    crate::$module::$case(backend.store.clone()).await.unwrap();
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::common::etcd().await;
                    crate::$module::$case(backend.store.clone()).await.unwrap();
                }
            )*
        }
    };
}

conformance!(
    kv::create_and_already_exists,
    kv::update_with_expected_revision,
    kv::delete_guarded_and_not,
    kv::txn_is_all_or_nothing,
    kv::txn_shape_is_checked,
    kv::revision_moves_by_one_per_txn,
    kv::create_and_mod_revisions,
    kv::range_by_prefix,
    kv::range_at_past_revision,
    kv::range_pagination_and_count,
    kv::compaction_forgets_old_revisions,
    kv::concurrent_writers,
    watch::watch_from_now,
    watch::watch_replays_then_goes_live,
    watch::watch_start_races_writes,
    watch::watch_multi_key_txn,
    watch::watch_compacted_revision,
);
