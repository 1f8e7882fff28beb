//! Acceptance 2: push to and pull back from a loopback registry (Debian's docker-registry, an
//! independent implementation), by tag and by digest.

mod common;
use common::Daemon;
use std::process::{Child, Command, Stdio};

struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> Option<Registry> {
    let bin = "/usr/bin/docker-registry";
    if !std::path::Path::new(bin).exists() {
        eprintln!("SKIP: docker-registry is not installed");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::eventually("registry", 20, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some(Registry {
        child,
        _dir: dir,
        port,
    })
}

#[test]
fn push_then_pull_by_tag_and_digest() {
    require_machine!();
    let Some(reg) = start_registry() else { return };
    let d = Daemon::start();
    let name = format!("127.0.0.1:{}/demo/busybox:1", reg.port);
    d.ok(&["tag", "busybox", &name]);
    let pushed = d.ok(&["push", &name]);
    assert!(pushed.contains("digest: sha256:"), "{pushed}");
    let digest = pushed
        .split("digest: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", &name]);

    d.ok(&["rmi", &name]);
    d.ok(&["rmi", "busybox"]);
    assert_eq!(d.ok(&["images", "-q"]), "");

    let pulled = d.ok(&["pull", &name]);
    assert!(
        pulled.contains(&digest),
        "pull by tag did not report {digest}:\n{pulled}"
    );
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", &name]), id);
    let repo_digest = d.ok(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", &name]);
    assert!(repo_digest.trim().ends_with(&digest), "{repo_digest}");

    d.ok(&["rmi", &name]);
    let by_digest = format!("127.0.0.1:{}/demo/busybox@{digest}", reg.port);
    d.ok(&["pull", &by_digest]);
    assert_eq!(
        d.ok(&["run", "--rm", &by_digest, "echo", "pulled"]),
        "pulled\n"
    );

    // `docker run` of a missing image pulls it (the daemon answers 404 first).
    d.ok(&["rmi", "-f", &by_digest]);
    assert_eq!(d.ok(&["run", "--rm", &name, "echo", "auto"]), "auto\n");
}
