//! The runc runtime class runs the same bundles.

mod common;

use std::time::Duration;

use common::Env;
use runtime::RuntimeClass;

const RUNC: &str = "/usr/sbin/runc";

#[tokio::test]
async fn runc_class_runs_the_bundle() {
    require_root!();
    if !std::path::Path::new(RUNC).exists() {
        eprintln!("skipping: {RUNC} missing (install runc)");
        return;
    }
    let env = Env::new();
    let id = env.unique_id("runc");
    let opts = env.options(
        &id,
        &["sh", "-c", "echo from runc; read x; echo got $x; exit 4"],
    );
    let mut req = env.request(&id, &opts);
    req.runtime_class = RuntimeClass::Runc;
    req.open_stdin = true;
    req.stdin_once = true;
    let shim = env.rt.start(req).await.unwrap();
    assert!(env.rt.pids(&id).unwrap().contains(&shim.pid()));
    let a = shim.attach(true, true, true).await.unwrap();
    let mut input = a.input.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut input, b"x\n")
        .await
        .unwrap();
    let (out, _) = common::collect(a.output, Duration::from_secs(20)).await;
    assert!(out.contains("got x"), "{out:?}");
    assert_eq!(common::wait(&shim).await.code, 4);
    assert_eq!(
        env.log_lines(&id)[0],
        ("stdout".to_string(), "from runc\n".to_string())
    );
    env.rt.wait_shim_exit(&id).unwrap();
    assert!(!env.rt.state_root().join("runc").join(&id).exists());

    // Start errors come back too.
    let id = env.unique_id("runcmissing");
    let opts = env.options(&id, &["/not/here"]);
    let mut req = env.request(&id, &opts);
    req.runtime_class = RuntimeClass::Runc;
    let err = env.rt.start(req).await.expect_err("start fails");
    assert!(err.to_string().contains("/not/here"), "{err}");

    // kill/pause through runc.
    let id = env.unique_id("runckill");
    let opts = env.options(&id, &["sleep", "1000"]);
    let mut req = env.request(&id, &opts);
    req.runtime_class = RuntimeClass::Runc;
    let shim = env.rt.start(req).await.unwrap();
    let ex = env
        .rt
        .create_exec(runtime::ExecRequest {
            container_id: id.clone(),
            exec_id: "e".into(),
            args: vec!["sh".into(), "-c".into(), "echo in runc; exit 2".into()],
            env: vec![],
            cwd: None,
            user: None,
            tty: false,
            open_stdin: false,
            exit_file: env.dir.path().join("runc-exec.exit"),
        })
        .await
        .unwrap();
    let a = ex.attach(false, true, true).await.unwrap();
    ex.start().await.unwrap();
    let (out, _) = common::collect(a.output, Duration::from_secs(20)).await;
    assert_eq!(out, "in runc\n");
    assert_eq!(common::wait(&ex).await.code, 2);
    env.rt.pause(&id).unwrap();
    env.rt.resume(&id).unwrap();
    env.rt.kill(&id, 9).unwrap();
    assert_eq!(common::wait(&shim).await.code, 137);
}
