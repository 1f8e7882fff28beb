//! A real daemon for end-to-end tests: `cloudlet server` on its own data dir and socket,
//! with a busybox image imported through the real `docker` CLI.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cloudlet");

/// Why this machine cannot run the end-to-end tests, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !nix_is_root() {
        return Some("needs root (namespaces, cgroups, overlayfs)".into());
    }
    if Command::new("docker").arg("--version").output().is_err() {
        return Some("the docker CLI is not installed".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("busybox-static is not installed".into());
    }
    None
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[macro_export]
macro_rules! require_machine {
    () => {
        if let Some(reason) = common::skip_reason() {
            eprintln!("SKIP: {reason}");
            return;
        }
    };
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The busybox rootfs tarball, made once per test binary by the same script `make up` uses.
pub fn busybox_tar() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("cloudlet-busybox-{}.tar", std::process::id()));
        let st = Command::new(workspace_root().join("scripts/busybox-rootfs.sh"))
            .arg(&out)
            .status()
            .expect("run busybox-rootfs.sh");
        assert!(st.success(), "busybox-rootfs.sh failed");
        out
    })
    .clone()
}

pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub host: String,
    /// Extra `cloudlet server` flags.
    extra: Vec<String>,
    /// This daemon's network prefix (its nftables table and default bridge `<prefix>0`).
    pub net_prefix: String,
    /// The /16 its networks live in (10.N.0.0/16), apart from other test daemons'.
    pub net_octet: u8,
}

/// Network flags for one test daemon: its own nftables table, bridge and address range,
/// so that test daemons (and a `make up` daemon) never share host objects.
fn network_flags() -> (String, u8, Vec<String>) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let octet = 100 + ((std::process::id() + n * 7) % 120) as u8;
    let prefix = format!("clt{}x{n}", std::process::id() % 100_000);
    let flags = vec![
        "--network-prefix".into(),
        prefix.clone(),
        "--bip".into(),
        format!("10.{octet}.0.1/24"),
        "--default-address-pool".into(),
        format!("base=10.{octet}.0.0/16,size=24"),
    ];
    (prefix, octet, flags)
}

impl Daemon {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    /// The real kubectl against this daemon's Kubernetes API (waits for it to be up).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.kubeconfig().exists() {
            assert!(Instant::now() < deadline, "no kubeconfig:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .expect("run kubectl (Debian/upstream kubectl must be installed)")
    }

    /// The admin kubeconfig the daemon writes once its Kubernetes API is up.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Starts a daemon and imports busybox:latest.
    pub fn start() -> Daemon {
        let d = Self::start_bare();
        let out = d.docker(&["import", busybox_tar().to_str().unwrap(), "busybox:latest"]);
        assert!(out.status.success(), "docker import: {}", stderr(&out));
        d
    }

    /// Starts a daemon with no images.
    pub fn start_bare() -> Daemon {
        Self::start_with(&[])
    }

    /// Starts a daemon with no images and extra `cloudlet server` flags.
    pub fn start_with(extra: &[&str]) -> Daemon {
        // Short paths: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("cl")
            .tempdir_in("/tmp")
            .unwrap();
        let sock = dir.path().join("run/docker.sock");
        let (net_prefix, net_octet, mut flags) = network_flags();
        flags.extend(extra.iter().map(|a| a.to_string()));
        let mut d = Daemon {
            child: None,
            host: format!("unix://{}", sock.display()),
            sock,
            dir,
            extra: flags,
            net_prefix,
            net_octet,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let child = Command::new(BIN)
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--exec-root")
            .arg(self.exec_root())
            .arg("--socket")
            .arg(&self.sock)
            // The Kubernetes API on a free loopback port, its kubeconfig beside the log.
            .args(["--bind-address", "127.0.0.1", "--https-listen-port", "0"])
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(&self.extra)
            .env("RUST_LOG", "info,engine=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cloudlet server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not come up:\n{}", self.log());
    }

    /// `kill -9` the daemon and start it again on the same state.
    pub fn kill9_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env("DOCKER_CLI_HINTS", "false")
            .env_remove("DOCKER_CONTEXT");
    }

    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.args(args);
        self.env(&mut cmd);
        cmd
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    pub fn cloudlet(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args).stdin(Stdio::null());
        self.env(&mut cmd);
        cmd.output().expect("run cloudlet")
    }

    /// Runs docker and returns stdout, failing the test (with the daemon's log) otherwise.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            out.status,
            stdout(&out),
            stderr(&out),
            self.log()
        );
        stdout(&out)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids = stdout(&self.docker(&["ps", "-aq"]));
            for id in ids.split_whitespace() {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        if let Some(mut c) = self.child.take() {
            // SIGTERM, so the daemon removes the containers it made ahead of demand.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.remove_network_state();
        // Anything still mounted under our dir (a failed test) must not block its removal.
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let root = self.dir.path().to_string_lossy().into_owned();
            for line in mounts.lines().rev() {
                if let Some(target) = line.split_whitespace().nth(1) {
                    if target.starts_with(&root) {
                        let _ = Command::new("umount").arg("-l").arg(target).status();
                    }
                }
            }
        }
    }
}

impl Daemon {
    /// Deletes the bridges and nftables table this daemon made on the host (a `make up`
    /// daemon keeps them, as dockerd keeps docker0).
    fn remove_network_state(&self) {
        let dir = self.data_dir().join("network/networks");
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if let Some(b) = v["bridge"].as_str().filter(|b| !b.is_empty()) {
                let _ = Command::new("ip").args(["link", "del", b]).output();
            }
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.net_prefix])
            .output();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls until `f` is true or the deadline passes (functional waits, not timing assertions).
pub fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}
