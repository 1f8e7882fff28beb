//! The real `docker` CLI against cloudlet: the everyday verbs of the node engine issue.

mod common;
use common::{stderr, stdout, Daemon};

#[test]
fn version_info_and_images() {
    require_machine!();
    let d = Daemon::start();
    let v = d.ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert!(v.trim().starts_with("1."), "server api version: {v}");
    let info = d.ok(&[
        "info",
        "--format",
        "{{.Driver}} {{.OSType}} {{.DefaultRuntime}}",
    ]);
    assert_eq!(info.trim(), "overlay2 linux libcontainer");
    let images = d.ok(&["image", "ls"]);
    assert!(
        images.contains("busybox") && images.contains("latest"),
        "{images}"
    );
    let size = d.ok(&[
        "image",
        "inspect",
        "busybox",
        "--format",
        "{{.Size}} {{.Os}}",
    ]);
    assert!(size.trim().ends_with("linux"), "{size}");
}

#[test]
fn run_rm_prints_and_propagates_exit_code() {
    require_machine!();
    let d = Daemon::start();
    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "echo", "hello"]),
        "hello\n"
    );
    let out = d.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    // --rm removed them.
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    // A missing executable is docker's 127 with its message.
    let out = d.docker(&["run", "--rm", "busybox", "/no/such/thing"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
}

#[test]
fn detached_lifecycle() {
    require_machine!();
    let d = Daemon::start();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo started; trap 'exit 7' TERM; while true; do sleep 0.1; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let ps = d.ok(&["container", "ls"]);
    assert!(
        ps.contains(&id[..12]) && ps.contains(" web\n") && ps.contains("Up "),
        "{ps}"
    );
    common::eventually("log line", 10, || {
        d.ok(&["logs", "web"]).contains("started")
    });
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Running}}",
            "web"
        ])
        .trim(),
        "running true"
    );
    let host = d.ok(&["exec", "web", "hostname"]);
    assert_eq!(host.trim(), &id[..12]);
    let top = d.ok(&["top", "web"]);
    assert!(top.contains("PID") && top.contains("sh -c"), "{top}");
    let stats = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "web",
    ]);
    assert!(stats.starts_with("web "), "{stats}");
    d.ok(&["pause", "web"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "web"]).trim(),
        "paused"
    );
    d.ok(&["unpause", "web"]);
    d.ok(&["stop", "web"]);
    assert_eq!(d.ok(&["wait", "web"]).trim(), "7");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "web"
        ])
        .trim(),
        "exited 7"
    );
    let ps = d.ok(&[
        "ps",
        "-a",
        "--filter",
        "status=exited",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(ps.starts_with("web Exited (7)"), "{ps}");
    d.ok(&["restart", "web"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}}", "web"]).trim(),
        "true"
    );
    d.ok(&["kill", "web"]);
    assert_eq!(d.ok(&["wait", "web"]).trim(), "137");
    d.ok(&["rename", "web", "web2"]);
    d.ok(&["rm", "web2"]);
    let out = d.docker(&["inspect", "web2"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such object") || stderr(&out).contains("No such container"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exec_stdin_env_user_and_workdir() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&[
        "run", "-d", "--name", "xc", "-e", "A=1", "-w", "/tmp", "busybox", "sleep", "1000",
    ]);
    assert_eq!(
        d.ok(&["exec", "xc", "sh", "-c", "echo $A $(pwd)"]),
        "1 /tmp\n"
    );
    assert_eq!(
        d.ok(&[
            "exec",
            "-e",
            "A=2",
            "-w",
            "/",
            "-u",
            "nobody",
            "xc",
            "sh",
            "-c",
            "echo $A $(pwd) $(id -u)"
        ]),
        "2 / 65534\n"
    );
    let mut child = d
        .docker_cmd(&["exec", "-i", "xc", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "through stdin\n");
    let out = d.docker(&["exec", "xc", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn logs_follow_tail_and_timestamps() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line $i; done; sleep 1; echo last",
    ]);
    // -f returns when the container exits, with everything it printed.
    let all = d.ok(&["logs", "-f", "lg"]);
    assert_eq!(all, "line 1\nline 2\nline 3\nline 4\nline 5\nlast\n");
    assert_eq!(d.ok(&["logs", "--tail", "2", "lg"]), "line 5\nlast\n");
    let ts = d.ok(&["logs", "-t", "--tail", "1", "lg"]);
    assert!(ts.contains('T') && ts.ends_with(" last\n"), "{ts}");
}

#[test]
fn errors_come_back_in_dockers_shape() {
    require_machine!();
    let d = Daemon::start();
    let out = d.docker(&["start", "nope"]);
    assert!(
        stderr(&out).contains("No such container: nope"),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&["run", "--rm", "--memory", "1k", "busybox", "true"]);
    assert!(
        stderr(&out).contains("Minimum memory limit"),
        "{}",
        stderr(&out)
    );
    d.ok(&["create", "--name", "dup", "busybox", "true"]);
    let out = d.docker(&["create", "--name", "dup", "busybox", "true"]);
    assert!(
        stderr(&out).contains("is already in use"),
        "{}",
        stderr(&out)
    );
    let out = d.docker(&[
        "run",
        "-d",
        "--net",
        "container:dup",
        "-p",
        "8080:80",
        "busybox",
        "true",
    ]);
    assert!(stderr(&out).contains("port publishing"), "{}", stderr(&out));
    // Bad input changed nothing: one container.
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 1);
    d.ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "100"]);
    let out = d.docker(&["rm", "busy"]);
    assert!(
        stderr(&out).contains("Stop the container before attempting removal"),
        "{}",
        stderr(&out)
    );
    d.ok(&["rm", "-f", "busy"]);
}

#[test]
fn tag_save_load_rmi() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&["tag", "busybox", "mine/bb:1"]);
    let archive = d.dir.path().join("bb.tar");
    d.ok(&["save", "-o", archive.to_str().unwrap(), "mine/bb:1"]);
    let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "mine/bb:1"]);
    let rmi = d.ok(&["rmi", "mine/bb:1"]);
    assert!(rmi.contains("Untagged: mine/bb:1"), "{rmi}");
    let loaded = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: mine/bb:1"), "{loaded}");
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", "mine/bb:1"]),
        id
    );
    assert_eq!(d.ok(&["run", "--rm", "mine/bb:1", "echo", "ok"]), "ok\n");
    // An image a container uses cannot be removed without -f.
    d.ok(&["create", "--name", "user", "mine/bb:1", "true"]);
    d.ok(&["rmi", "mine/bb:1"]);
    let out = d.docker(&["rmi", id.trim()]);
    assert!(!out.status.success(), "removing an image in use must fail");
    assert!(
        stderr(&out).contains("conflict") || stderr(&out).contains("being used"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn events_stream_shows_lifecycle() {
    require_machine!();
    let d = Daemon::start();
    let since = chrono_now();
    d.ok(&["run", "--rm", "--name", "ev", "busybox", "true"]);
    let until = chrono_now() + 1;
    let events = d.ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "container=ev",
    ]);
    for action in ["create", "start", "die", "destroy"] {
        assert!(
            events.contains(&format!("container {action} ")),
            "no {action} in:\n{events}"
        );
    }
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
