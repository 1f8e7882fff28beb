//! Attach, stdin, TTY, resize and signals.

mod common;

use std::time::Duration;

use common::Env;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn attach_streams_and_stdin_reaches_cat() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("cat");
    let opts = env.options(&id, &["sh", "-c", "cat; echo done >&2"]);
    let mut req = env.request(&id, &opts);
    req.open_stdin = true;
    req.stdin_once = true;
    let shim = env.rt.start(req).await.unwrap();
    let a = shim.attach(true, true, true).await.unwrap();
    let mut input = a.input.unwrap();
    input.write_all(b"ping\n").await.unwrap();
    input.write_all(b"pong\n").await.unwrap();
    input.shutdown().await.unwrap();
    let (out, err) = common::collect(a.output, Duration::from_secs(20)).await;
    assert_eq!(out, "ping\npong\n");
    assert_eq!(err, "done\n");
    assert_eq!(common::wait(&shim).await.code, 0);
    let lines = env.log_lines(&id);
    assert_eq!(lines.len(), 3, "{lines:?}");
}

#[tokio::test]
async fn several_clients_attach_at_once() {
    require_root!();
    let env = Env::new();
    let (_id, shim) = env
        .run("multi", &["sh", "-c", "sleep 0.5; echo one; echo two >&2"])
        .await;
    let a = shim.attach(false, true, false).await.unwrap();
    let b = shim.attach(false, true, true).await.unwrap();
    assert!(a.input.is_none());
    let (ra, rb) = tokio::join!(
        common::collect(a.output, Duration::from_secs(20)),
        common::collect(b.output, Duration::from_secs(20))
    );
    assert_eq!(ra, ("one\n".to_string(), String::new()));
    assert_eq!(rb, ("one\n".to_string(), "two\n".to_string()));
}

#[tokio::test]
async fn tty_and_resize() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("tty");
    let mut opts = env.options(
        &id,
        &["sh", "-c", "read x; tty; read y; stty size; echo err >&2"],
    );
    opts.tty = true;
    let mut req = env.request(&id, &opts);
    req.open_stdin = true;
    let shim = env.rt.start(req).await.unwrap();
    let a = shim.attach(true, true, true).await.unwrap();
    let mut out = a.output;
    let mut input = a.input.unwrap();
    // Output printed before the attach goes only to the log: let the script start now.
    input.write_all(b"a\n").await.unwrap();
    // Wait for the tty line, then resize and let the script continue.
    let mut seen = String::new();
    while !(seen.contains("/dev/pts/") && seen.ends_with('\n')) {
        match tokio::time::timeout(Duration::from_secs(10), out.next()).await {
            Ok(Some(runtime::Output::Stdout(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
            other => panic!("unexpected {other:?} after {seen:?}"),
        }
    }
    assert!(seen.contains("/dev/pts/0"), "{seen:?}");
    shim.resize(33, 101).await.unwrap();
    input.write_all(b"go\n").await.unwrap();
    let (rest, err) = common::collect(out, Duration::from_secs(10)).await;
    assert!(rest.contains("33 101"), "{rest:?}");
    assert!(
        rest.contains("err"),
        "with a tty stderr is stdout: {rest:?}"
    );
    assert!(err.is_empty());
    assert_eq!(common::wait(&shim).await.code, 0);
    assert!(env.log_lines(&id).iter().all(|(s, _)| s == "stdout"));
}

#[tokio::test]
async fn kill_and_signal() {
    require_root!();
    let env = Env::new();
    let (id, shim) = env.run("kill", &["sleep", "1000"]).await;
    env.rt.kill(&id, 9).unwrap();
    assert_eq!(common::wait(&shim).await.code, 137);
    assert!(matches!(
        env.rt.kill(&id, 9),
        Err(runtime::Error::NotRunning(_))
    ));

    // A process that handles SIGTERM (pid 1 ignores unhandled signals, as in docker).
    let (_id, shim) = env
        .run(
            "term",
            &[
                "sh",
                "-c",
                "trap 'exit 143' TERM; while true; do sleep 0.1; done",
            ],
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shim.signal(15).await.unwrap();
    assert_eq!(common::wait(&shim).await.code, 143);
}

#[tokio::test]
async fn attach_before_start_sees_everything() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("early");
    let opts = env.options(&id, &["echo", "early bird"]);
    let shim = env.rt.create(env.request(&id, &opts)).await.unwrap();
    let a = shim.attach(false, true, true).await.unwrap();
    let pid = shim.start().await.unwrap();
    assert_eq!(pid, shim.pid());
    let (out, _) = common::collect(a.output, Duration::from_secs(20)).await;
    assert_eq!(out, "early bird\n");
    assert_eq!(common::wait(&shim).await.code, 0);

    // An exec too, with a tty.
    let (id, shim) = env.run("early-exec", &["sleep", "1000"]).await;
    let ex = env
        .rt
        .create_exec(runtime::ExecRequest {
            container_id: id.clone(),
            exec_id: "x".into(),
            args: vec!["tty".into()],
            env: vec![],
            cwd: None,
            user: None,
            tty: true,
            open_stdin: false,
            exit_file: env.dir.path().join("early-exec.exit"),
        })
        .await
        .unwrap();
    assert_eq!(ex.pid(), 0);
    assert!(ex.signal(9).await.is_err());
    let a = ex.attach(false, true, true).await.unwrap();
    assert!(ex.start().await.unwrap() > 0);
    let (out, _) = common::collect(a.output, Duration::from_secs(20)).await;
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(common::wait(&ex).await.code, 0);
    env.rt.kill(&id, 9).unwrap();
    common::wait(&shim).await;
}

#[tokio::test]
async fn start_error_after_create() {
    require_root!();
    let env = Env::new();
    let (id, shim) = env.run("late-err", &["sleep", "1000"]).await;
    let ex = env
        .rt
        .create_exec(runtime::ExecRequest {
            container_id: id.clone(),
            exec_id: "bad".into(),
            args: vec!["missing-binary".into()],
            env: vec![],
            cwd: None,
            user: None,
            tty: false,
            open_stdin: false,
            exit_file: env.dir.path().join("late.exit"),
        })
        .await
        .unwrap();
    let err = ex.start().await.expect_err("start fails");
    assert!(matches!(err, runtime::Error::Start(_)), "{err}");
    assert!(err.to_string().contains("missing-binary"), "{err}");
    let st = common::wait(&ex).await;
    assert!(st.error.is_some(), "{st:?}");
    assert_eq!(st.code, 127);
    env.rt.kill(&id, 9).unwrap();
    common::wait(&shim).await;
}
