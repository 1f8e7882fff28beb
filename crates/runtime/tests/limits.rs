//! Resource limits: OOM kill, pids limit.

mod common;

use std::time::Duration;

use common::Env;

#[tokio::test]
async fn memory_limit_oom_kills() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("oom");
    // `tail` buffers its whole input when asked for lines and there are none.
    let mut opts = env.options(
        &id,
        &[
            "sh",
            "-c",
            "head -c 134217728 /dev/zero | tail -n 1 >/dev/null; echo survived",
        ],
    );
    opts.memory = Some(32 << 20);
    opts.memory_swap = Some(32 << 20);
    let shim = env.rt.start(env.request(&id, &opts)).await.unwrap();
    let st = tokio::time::timeout(Duration::from_secs(60), shim.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(st.oom_killed, "{st:?}");
}

#[tokio::test]
async fn pids_limit_contains_fork_bomb() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("pids");
    let mut opts = env.options(
        &id,
        &[
            "sh",
            "-c",
            "(for i in $(seq 1 60); do sleep 30 & done) 2>/dev/null; exec sleep 1000",
        ],
    );
    opts.pids_limit = Some(20);
    let shim = env.rt.start(env.request(&id, &opts)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = env.rt.stats(&id).unwrap();
    assert_eq!(s.pids_limit, Some(20));
    assert!(s.pids_current <= 20, "{s:?}");
    assert!(env.rt.pids(&id).unwrap().len() <= 20);
    env.rt.kill(&id, 9).unwrap();
    assert_eq!(common::wait(&shim).await.code, 137);
    // The shim removes the cgroup after it has reported the exit.
    env.rt.wait_shim_exit(&id).unwrap();
    // Everything in the cgroup died with the init.
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/pids/cloudlet-test/{id}")).exists());
}
