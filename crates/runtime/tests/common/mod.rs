//! Helpers shared by the integration tests: a busybox rootfs, bundles and a runtime.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use runtime::spec::{self, SpecOptions};
use runtime::{Output, Runtime, RuntimeClass, Shim, StartRequest};

pub const BUSYBOX: &str = "/bin/busybox";

/// Why these tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root".into());
    }
    if !Path::new(BUSYBOX).exists() {
        return Some(format!("{BUSYBOX} missing (install busybox-static)"));
    }
    None
}

#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(reason) = common::skip_reason() {
            eprintln!("skipping: {reason}");
            return;
        }
    };
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub rt: Runtime,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("rt")
            .tempdir_in("/tmp")
            .unwrap();
        let rt = Runtime::new(
            dir.path().join("state"),
            // CLOUDLET_TEST_SHIM runs the tests against another build (e.g. release, for RSS).
            std::env::var_os("CLOUDLET_TEST_SHIM")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cloudlet-runtime-test-shim"))),
        );
        let rootfs = dir.path().join("rootfs");
        make_rootfs(&rootfs);
        Env { dir, rt }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn unique_id(&self, name: &str) -> String {
        format!(
            "t{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            name
        )
    }

    pub fn options(&self, id: &str, args: &[&str]) -> SpecOptions {
        SpecOptions {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into()],
            hostname: "box".into(),
            cgroup_path: format!("/cloudlet-test/{id}"),
            rootfs: self.rootfs(),
            ..Default::default()
        }
    }

    pub fn bundle(&self, id: &str, opts: &SpecOptions) -> PathBuf {
        let spec = spec::build(opts).unwrap();
        let b = self.dir.path().join("bundles").join(id);
        spec::write_bundle(&b, &spec).unwrap();
        b
    }

    pub fn request(&self, id: &str, opts: &SpecOptions) -> StartRequest {
        StartRequest {
            id: id.to_string(),
            bundle: self.bundle(id, opts),
            tty: opts.tty,
            open_stdin: false,
            stdin_once: false,
            log: Some(runtime::LogConfig {
                path: self.log_path(id),
                max_size: 0,
                max_files: 1,
            }),
            exit_file: self.exit_path(id),
            runtime_class: RuntimeClass::Libcontainer,
            deferred_process: false,
        }
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{id}.log"))
    }

    pub fn exit_path(&self, id: &str) -> PathBuf {
        self.dir.path().join("exits").join(id)
    }

    pub async fn run(&self, name: &str, args: &[&str]) -> (String, Shim) {
        let id = self.unique_id(name);
        let opts = self.options(&id, args);
        let shim = self.rt.start(self.request(&id, &opts)).await.unwrap();
        (id, shim)
    }

    /// The log's lines as (stream, text).
    pub fn log_lines(&self, id: &str) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["stream"].as_str().unwrap().to_string(),
                    v["log"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

pub fn make_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    for applet in [
        "sh", "echo", "sleep", "cat", "ps", "hostname", "tty", "stty", "head", "tail", "dd", "ls",
        "id", "true", "false", "yes", "env", "wc", "seq", "kill", "tr", "grep", "touch", "unshare",
        "stat",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// Collects an attach stream's output until it ends (or the timeout).
pub async fn collect(
    mut out: futures::stream::BoxStream<'static, Output>,
    timeout: Duration,
) -> (String, String) {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let _ = tokio::time::timeout(timeout, async {
        while let Some(o) = out.next().await {
            match o {
                Output::Stdout(b) => stdout.extend_from_slice(&b),
                Output::Stderr(b) => stderr.extend_from_slice(&b),
            }
        }
    })
    .await;
    (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

pub async fn wait(shim: &Shim) -> runtime::ExitStatus {
    tokio::time::timeout(Duration::from_secs(30), shim.wait())
        .await
        .expect("wait timed out")
        .unwrap()
}
