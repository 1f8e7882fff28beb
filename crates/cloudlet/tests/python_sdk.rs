//! The Python `docker` SDK works against cloudlet (`make test` installs it in target/pysdk).

mod common;
use common::{stderr, stdout, Daemon};

#[test]
fn python_docker_sdk_drives_cloudlet() {
    require_machine!();
    let python = common::workspace_root().join("target/pysdk/bin/python");
    if !python.exists() {
        eprintln!(
            "SKIP: no Python docker SDK at {} (make test installs it)",
            python.display()
        );
        return;
    }
    let d = Daemon::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_sdk.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&d.host)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\ndaemon log:\n{}",
        stdout(&out),
        stderr(&out),
        d.log()
    );
    assert!(stdout(&out).contains("python sdk: ok"));
}
