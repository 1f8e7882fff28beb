//! Acceptance 3: containers outlive a `kill -9` of the daemon, which finds them again.

mod common;
use common::Daemon;

#[test]
fn containers_survive_kill9_of_the_daemon() {
    require_machine!();
    let mut d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "while true; do cut -d' ' -f1 /proc/uptime; sleep 0.2; done",
    ]);
    common::eventually("first lines", 10, || {
        d.ok(&["logs", "web"]).lines().count() >= 3
    });
    let pid_before = d.ok(&["inspect", "-f", "{{.State.Pid}}", "web"]);

    d.kill9_and_restart();

    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}} {{.State.Pid}}", "web"])
            .trim(),
        format!("true {}", pid_before.trim())
    );
    let before = d.ok(&["logs", "web"]).lines().count();
    common::eventually("output that never stopped", 10, || {
        d.ok(&["logs", "web"]).lines().count() > before + 3
    });
    // The lines are consecutive: no gap while the daemon was down (0.2 s apart by the container's uptime clock, allow slack).
    let stamps: Vec<f64> = d
        .ok(&["logs", "web"])
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let max_gap = stamps.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(max_gap < 3.0, "the container stalled for {max_gap} s");
    // exec and attach-based features work on the recovered container.
    assert_eq!(d.ok(&["exec", "web", "echo", "still here"]), "still here\n");
    // sh as PID 1 ignores SIGTERM: stop kills it after its timeout, and wait reports it.
    d.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(d.ok(&["wait", "web"]).trim(), "137");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "web"]).trim(),
        "exited"
    );
}

#[test]
fn a_container_that_exits_while_the_daemon_is_down_is_seen_exited() {
    require_machine!();
    let mut d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "short",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 4",
    ]);
    d.kill9_and_restart();
    common::eventually("exit", 15, || {
        d.ok(&["inspect", "-f", "{{.State.Status}}", "short"])
            .trim()
            == "exited"
    });
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "short"])
            .trim(),
        "4"
    );
}

#[test]
fn an_rm_container_that_exits_while_the_daemon_is_down_is_removed() {
    require_machine!();
    let mut d = Daemon::start();
    d.ok(&[
        "run", "-d", "--rm", "--name", "gone", "busybox", "sleep", "1",
    ]);
    d.kill9_and_restart();
    common::eventually("removal", 15, || {
        d.ok(&["ps", "-aq", "--filter", "name=gone"]).is_empty()
    });
}

#[test]
fn restart_policy_always_restarts() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "rs",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 1",
    ]);
    common::eventually("two restarts", 20, || {
        d.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "rs"])
            .trim()
            == "2 exited"
    });
}
