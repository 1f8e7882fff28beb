//! Containers created ahead of demand: the command and environment arrive with `start`.

mod common;

use std::time::Duration;

use common::Env;
use runtime::proto::ProcessOverride;
use runtime::StartFailure;

fn status_line(text: &str, key: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_command_and_env_given_at_start_run_confined_like_any_container() {
    require_root!();
    let env = Env::new();
    // The bundle's own command would print "placeholder"; the one sent at start must run.
    let id = env.unique_id("deferred");
    let opts = env.options(&id, &["echo", "placeholder"]);
    let mut req = env.request(&id, &opts);
    req.deferred_process = true;
    let shim = env.rt.create(req).await.unwrap();
    let a = shim.attach(false, true, true).await.unwrap();
    let script =
        "echo $FOO $HOME; pwd; grep -E '^(Seccomp|CapEff):' /proc/self/status; ls /proc/self/fd";
    shim.start_with(ProcessOverride {
        args: vec!["sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/bin".into(), "FOO=bar".into()],
    })
    .await
    .unwrap();
    let (out, err) = common::collect(a.output, Duration::from_secs(20)).await;
    assert_eq!(common::wait(&shim).await.code, 0, "{out}{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("bar /root"), "{out}");
    assert_eq!(lines.next(), Some("/"));
    assert!(!out.contains("placeholder"));

    // The same confinement as a container that got its command at create.
    let (cold_id, cold) = env
        .run(
            "cold",
            &["grep", "-E", "^(Seccomp|CapEff):", "/proc/self/status"],
        )
        .await;
    common::wait(&cold).await;
    let cold_out: String = env
        .log_lines(&cold_id)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    for key in ["Seccomp:", "CapEff:"] {
        assert_eq!(status_line(&out, key), status_line(&cold_out, key));
        assert!(!status_line(&out, key).is_empty(), "{out}");
    }
    // The command socket does not leak into the process: only stdio (and ls's own fd).
    let fds: Vec<&str> = out.lines().skip(4).collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{out}");
}

#[tokio::test]
async fn a_missing_command_is_a_start_error() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("deferred-missing");
    let opts = env.options(&id, &["true"]);
    let mut req = env.request(&id, &opts);
    req.deferred_process = true;
    let shim = env.rt.create(req).await.unwrap();
    let e = shim
        .start_with(ProcessOverride {
            args: vec!["no-such-command".into()],
            env: vec!["PATH=/bin".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.start_failure(), Some(StartFailure::NotFound), "{e}");
    let st = common::wait(&shim).await;
    assert_eq!(st.code, 127);
    // Nothing is left of the container.
    env.rt.wait_shim_exit(&id).unwrap();
    assert!(env.rt.kill(&id, 9).is_err());
}
