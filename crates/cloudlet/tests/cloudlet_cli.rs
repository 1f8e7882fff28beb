//! cloudlet's own CLI: docker's verbs at top level, as a client of the same API.

mod common;
use common::{stderr, stdout, Daemon};

#[test]
fn run_ps_logs_exec_images() {
    require_machine!();
    let d = Daemon::start();
    let out = d.cloudlet(&["run", "--rm", "busybox", "echo", "hello"]);
    assert_eq!(stdout(&out), "hello\n", "{}", stderr(&out));
    let id = stdout(&d.cloudlet(&[
        "run",
        "-d",
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "echo hi; sleep 1000",
    ]));
    assert_eq!(id.trim().len(), 64, "{id}");
    let ps = stdout(&d.cloudlet(&["ps"]));
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    assert!(ps.contains("c1"), "{ps}");
    common::eventually("log", 10, || stdout(&d.cloudlet(&["logs", "c1"])) == "hi\n");
    assert_eq!(
        stdout(&d.cloudlet(&["exec", "c1", "echo", "inside"])),
        "inside\n"
    );
    let images = stdout(&d.cloudlet(&["images"]));
    assert!(
        images.starts_with("REPOSITORY") && images.contains("busybox"),
        "{images}"
    );
    let out = d.cloudlet(&["rm", "-f", "c1"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn no_daemon_is_one_clear_line() {
    let out = std::process::Command::new(common::BIN)
        .args(["-H", "unix:///tmp/cloudlet-nobody-here.sock", "ps"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn userns_private_maps_root_to_an_unprivileged_range() {
    require_machine!();
    let d = Daemon::start();
    let out = d.cloudlet(&[
        "run",
        "--rm",
        "--userns",
        "private",
        "busybox",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; touch /made && ls -ln /bin/busybox",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}\n{}", stderr(&out), d.log());
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"]);
    // Image files look root-owned inside, though they are 100000 on the host.
    assert!(lines.next().unwrap().contains(" 0 "), "{text}");
}
