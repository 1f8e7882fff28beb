//! Acceptance 5: memory and pids limits hold, from the kernel's cgroups.

mod common;
use common::Daemon;

#[test]
fn memory_limit_oom_kills() {
    require_machine!();
    let d = Daemon::start();
    // dd allocates its 64 MiB block in one buffer: more than the 32 MiB limit.
    let out = d.docker(&[
        "run",
        "--name",
        "oom",
        "--memory",
        "32m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", common::stderr(&out));
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            "oom"
        ])
        .trim(),
        "true 137"
    );
    // Within the limit it runs fine.
    let out = d.docker(&[
        "run",
        "--rm",
        "--memory",
        "32m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=4M",
        "count=4",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "bomb",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        "bomb() { bomb | bomb & }; bomb; sleep 1000",
    ]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let pids: u64 = d
        .ok(&["stats", "--no-stream", "--format", "{{.PIDs}}", "bomb"])
        .trim()
        .parse()
        .unwrap();
    assert!(pids <= 20, "pids {pids} over the limit");
    // The host is unharmed: it still starts processes and containers.
    assert_eq!(d.ok(&["run", "--rm", "busybox", "echo", "fine"]), "fine\n");
    d.ok(&["rm", "-f", "bomb"]);
}

#[test]
fn cpu_and_shares_are_applied() {
    require_machine!();
    let d = Daemon::start();
    let id = d.ok(&[
        "run",
        "-d",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    let quota =
        std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/cloudlet/{id}/cpu.cfs_quota_us"))
            .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/cloudlet/{id}/cpu.max")))
            .unwrap();
    assert!(quota.starts_with("50000"), "quota {quota}");
    d.ok(&["rm", "-f", id]);
}
