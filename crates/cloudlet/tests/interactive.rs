//! Acceptance 1: `docker run -it busybox sh` is a real terminal whose shell is PID 1.

mod common;
use common::Daemon;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn docker_run_it_gives_an_interactive_shell() {
    require_machine!();
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIP: util-linux script is missing");
        return;
    }
    let d = Daemon::start();
    // `script` gives docker a pseudo-terminal, as a person's terminal would.
    let mut child = Command::new("script")
        .args(["-qec", "docker run -it --name tty busybox sh", "/dev/null"])
        .env("DOCKER_HOST", &d.host)
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    stdin
        .write_all(b"echo host=$(hostname); ps; tty; exit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "tty"]);
    assert!(text.contains(&format!("host={}", &id[..12])), "{text}");
    let pid1 = text
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_default();
    assert!(
        pid1.trim_end().ends_with("sh"),
        "PID 1 is not the shell:\n{text}"
    );
    assert!(text.contains("/dev/pts/"), "{text}");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "tty"])
            .trim(),
        "3"
    );
}
