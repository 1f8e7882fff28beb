//! Spec options that change what the process sees: init, user namespace, user, read-only
//! root, binds, tmpfs, hostname, capabilities, seccomp.

mod common;

use std::time::Duration;

use common::Env;
use runtime::spec::{Bind, SpecOptions};

/// Runs `opts` to completion with attach-before-start; returns (exit code, stdout+stderr).
async fn output(env: &Env, id: &str, opts: &SpecOptions) -> (i32, String) {
    let shim = env.rt.create(env.request(id, opts)).await.unwrap();
    let a = shim.attach(false, true, true).await.unwrap();
    shim.start().await.unwrap();
    let (out, err) = common::collect(a.output, Duration::from_secs(20)).await;
    (common::wait(&shim).await.code, out + &err)
}

#[tokio::test]
async fn init_runs_tini_as_pid_one() {
    require_root!();
    if !std::path::Path::new(runtime::spec::TINI_HOST_PATH).exists() {
        eprintln!(
            "skipping: {} missing (install tini)",
            runtime::spec::TINI_HOST_PATH
        );
        return;
    }
    let env = Env::new();
    let id = env.unique_id("init");
    let mut opts = env.options(
        &id,
        &[
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 6",
        ],
    );
    opts.init = true;
    let (code, out) = output(&env, &id, &opts).await;
    assert_eq!(code, 6);
    assert!(out.starts_with("/sbin/docker-init -- sh"), "{out:?}");
}

#[tokio::test]
async fn sandbox_options() {
    require_root!();
    let env = Env::new();
    let host_dir = env.dir.path().join("shared");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("f"), "from host").unwrap();
    let id = env.unique_id("sandbox");
    let script = "hostname; id -u; id -g; cat /data/f; echo; \
                  touch /rootfile 2>/dev/null && echo rw || echo ro; \
                  touch /scratch/x && echo tmpfs-ok; \
                  touch /data/g 2>/dev/null && echo data-rw || echo data-ro; \
                  grep CapBnd /proc/self/status; \
                  stat -c %t:%T /proc/keys";
    let mut opts = env.options(&id, &["sh", "-c", script]);
    opts.hostname = "myhost".into();
    opts.user = "nobody".into();
    opts.read_only = true;
    opts.binds = vec![Bind {
        source: host_dir.clone(),
        destination: "/data".into(),
        read_only: true,
        propagation: String::new(),
    }];
    opts.tmpfs = vec![("/scratch".into(), "size=1m,mode=1777".into())];
    opts.cap_drop = vec!["ALL".into()];
    let (code, out) = output(&env, &id, &opts).await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..8],
        &[
            "myhost",
            "65534",
            "65534",
            "from host",
            "ro",
            "tmpfs-ok",
            "data-ro",
            "CapBnd:\t0000000000000000"
        ],
        "{out}"
    );
    assert_eq!(
        lines[8], "1:3",
        "/proc/keys is masked with /dev/null: {out}"
    );
}

#[tokio::test]
async fn user_namespace_maps_root() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("userns");
    // The engine chowns the rootfs into the subordinate range; do it here.
    let status = std::process::Command::new("chown")
        .args(["-R", "-h", "100000:100000"])
        .arg(env.rootfs())
        .status()
        .unwrap();
    assert!(status.success());
    let mut opts = env.options(&id, &["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    opts.userns = true;
    let (code, out) = output(&env, &id, &opts).await;
    assert_eq!(code, 0, "{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"]);
}

#[tokio::test]
async fn seccomp_default_profile_blocks_namespaces() {
    require_root!();
    let env = Env::new();
    // Unprivileged user namespaces are allowed by the kernel but not by the default profile.
    for (unconfined, want) in [(false, "denied"), (true, "allowed")] {
        let id = env.unique_id("seccomp");
        let mut opts = env.options(
            &id,
            &[
                "sh",
                "-c",
                "unshare -U true 2>/dev/null && echo allowed || echo denied",
            ],
        );
        opts.seccomp_unconfined = unconfined;
        std::os::unix::fs::symlink("busybox", env.rootfs().join("bin/unshare")).ok();
        let (_, out) = output(&env, &id, &opts).await;
        assert_eq!(out.trim(), want, "unconfined={unconfined}");
    }
}
