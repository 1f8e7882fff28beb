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
        "w",
        "busybox",
        "sh",
        "-c",
        "while true; do date +%s%N; sleep 0.2; done",
    ]);
    common::eventually("first lines", 10, || {
        d.ok(&["logs", "w"]).lines().count() >= 3
    });
    let pid_before = d.ok(&["inspect", "-f", "{{.State.Pid}}", "w"]);

    d.kill9_and_restart();

    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}} {{.State.Pid}}", "w"])
            .trim(),
        format!("true {}", pid_before.trim())
    );
    let before = d.ok(&["logs", "w"]).lines().count();
    common::eventually("output that never stopped", 10, || {
        d.ok(&["logs", "w"]).lines().count() > before + 3
    });
    // The lines are consecutive: no gap while the daemon was down (0.2 s apart, allow slack).
    let stamps: Vec<u128> = d
        .ok(&["logs", "w"])
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let max_gap = stamps
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap();
    assert!(
        max_gap < 3_000_000_000,
        "the container stalled for {max_gap} ns"
    );
    // exec and attach-based features work on the recovered container.
    assert_eq!(d.ok(&["exec", "w", "echo", "still here"]), "still here\n");
    // sh as PID 1 ignores SIGTERM: stop kills it after its timeout, and wait reports it.
    d.ok(&["stop", "-t", "1", "w"]);
    assert_eq!(d.ok(&["wait", "w"]).trim(), "137");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "w"]).trim(),
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
fn restart_policy_always_restarts() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 1",
    ]);
    common::eventually("two restarts", 20, || {
        d.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "r"])
            .trim()
            == "2 exited"
    });
}
