//! Runtime classes and HEALTHCHECK through the docker CLI.

mod common;
use common::Daemon;

#[test]
fn runc_runs_the_same_bundle() {
    require_machine!();
    if std::process::Command::new("runc")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: runc is not installed");
        return;
    }
    let d = Daemon::start();
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--runtime",
            "runc",
            "busybox",
            "echo",
            "via runc"
        ]),
        "via runc\n"
    );
    d.ok(&[
        "run",
        "-d",
        "--name",
        "rc",
        "--runtime",
        "runc",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(d.ok(&["exec", "rc", "echo", "exec"]), "exec\n");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.HostConfig.Runtime}}", "rc"])
            .trim(),
        "runc"
    );
    d.ok(&["rm", "-f", "rc"]);
    let out = d.docker(&["run", "--rm", "--runtime", "nope", "busybox", "true"]);
    assert!(common::stderr(&out).contains("unknown or invalid runtime name: nope"));
}

#[test]
fn health_checks_report_in_inspect() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -e /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    ]);
    let status = || {
        d.ok(&["inspect", "-f", "{{.State.Health.Status}}", "hc"])
            .trim()
            .to_string()
    };
    common::eventually("unhealthy", 20, || status() == "unhealthy");
    d.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    common::eventually("healthy", 20, || status() == "healthy");
    let ps = d.ok(&["ps", "--format", "{{.Status}}", "--filter", "name=hc"]);
    assert!(ps.contains("(healthy)"), "{ps}");
}
