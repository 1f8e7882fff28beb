//! Start, wait, logs and start errors against the real kernel.

mod common;

use std::time::Duration;

use common::Env;

#[tokio::test]
async fn echo_hello_logged_exit_zero() {
    require_root!();
    let env = Env::new();
    let (id, shim) = env.run("echo", &["echo", "hello"]).await;
    assert!(shim.pid() > 0);
    let st = common::wait(&shim).await;
    assert_eq!(st.code, 0, "{st:?}");
    assert!(!st.oom_killed);
    assert_eq!(
        env.log_lines(&id),
        vec![("stdout".to_string(), "hello\n".to_string())]
    );
    // The exit file is there, the libcontainer state is gone, the socket too.
    assert_eq!(
        runtime::read_exit_file(&env.exit_path(&id))
            .unwrap()
            .unwrap()
            .code,
        0
    );
    assert!(matches!(
        env.rt.connect(&id).await,
        Err(runtime::Error::NotRunning(_))
    ));
    // wait still works after the shim exited.
    assert_eq!(shim.wait().await.unwrap().code, 0);
    env.rt.delete(&id).unwrap();
}

#[tokio::test]
async fn exit_code_and_stderr() {
    require_root!();
    let env = Env::new();
    let (id, shim) = env
        .run("exit3", &["sh", "-c", "echo oops >&2; exit 3"])
        .await;
    let st = common::wait(&shim).await;
    assert_eq!(st.code, 3);
    assert_eq!(
        env.log_lines(&id),
        vec![("stderr".to_string(), "oops\n".to_string())]
    );
}

#[tokio::test]
async fn missing_executable_is_a_start_error() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("missing");
    let opts = env.options(&id, &["/nope/not-here"]);
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        env.rt.start(env.request(&id, &opts)),
    )
    .await
    .expect("start hung")
    .expect_err("start should fail");
    let msg = err.to_string();
    assert!(matches!(err, runtime::Error::Start(_)), "{msg}");
    assert!(msg.contains("not-here"), "{msg}");
    let st = runtime::read_exit_file(&env.exit_path(&id))
        .unwrap()
        .unwrap();
    assert!(st.error.is_some());
    // Nothing is left behind: the same id can start again.
    let opts = env.options(&id, &["true"]);
    let shim = env.rt.start(env.request(&id, &opts)).await.unwrap();
    assert_eq!(common::wait(&shim).await.code, 0);
}

#[tokio::test]
async fn bad_cwd_is_a_start_error() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("cwd");
    let mut opts = env.options(&id, &["true"]);
    opts.cwd = "/does/not/exist".into();
    // runc and docker create a missing cwd; a cwd that is a file cannot be created.
    std::fs::write(env.rootfs().join("afile"), "x").unwrap();
    opts.cwd = "/afile".into();
    let err = env
        .rt
        .start(env.request(&id, &opts))
        .await
        .expect_err("start should fail");
    assert!(matches!(err, runtime::Error::Start(_)), "{err}");
}
