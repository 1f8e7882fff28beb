//! Volumes end to end, with the real docker CLI: named volumes that outlive their
//! containers, copy-up, anonymous volumes and `rm -v`, `--volumes-from`, tmpfs mounts and
//! tmpfs-backed volumes, and what is refused.

mod common;

use common::{stderr, Daemon};

#[test]
fn a_named_volume_outlives_its_container() {
    require_machine!();
    let d = Daemon::start();
    assert_eq!(
        d.ok(&["volume", "create", "--label", "app=db", "data"])
            .trim(),
        "data"
    );
    d.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    d.ok(&["rm", "writer"]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "kept\n"
    );
    // Read-only mounts are.
    let out = d.docker(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        "busybox",
        "touch",
        "/data/g",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    let ls = d.ok(&[
        "volume",
        "ls",
        "--filter",
        "label=app=db",
        "--format",
        "{{.Driver}} {{.Name}}",
    ]);
    assert_eq!(ls, "local data\n");
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["volume", "inspect", "data"])).unwrap();
    let mountpoint = v[0]["Mountpoint"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("{mountpoint}/f")).unwrap(),
        "kept\n"
    );
    // In use (even by a stopped container): refused, and nothing changes.
    d.ok(&[
        "create",
        "--name",
        "user",
        "-v",
        "data:/data",
        "busybox",
        "true",
    ]);
    let out = d.docker(&["volume", "rm", "data"]);
    assert!(
        stderr(&out).contains("volume is in use"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "kept\n"
    );
    d.ok(&["rm", "user"]);
    d.ok(&["volume", "rm", "data"]);
    assert!(!std::path::Path::new(mountpoint).exists());
}

#[test]
fn new_volumes_get_the_image_content_once() {
    require_machine!();
    let d = Daemon::start();
    let passwd = d.ok(&["run", "--rm", "busybox", "cat", "/etc/passwd"]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "etc:/etc",
            "busybox",
            "cat",
            "/etc/passwd"
        ]),
        passwd
    );
    // Emptied by the user, it stays empty: the copy happens only into a new volume.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "etc:/mnt",
        "busybox",
        "rm",
        "/mnt/passwd",
    ]);
    let out = d.docker(&[
        "run",
        "--rm",
        "-v",
        "etc:/etc",
        "busybox",
        "cat",
        "/etc/passwd",
    ]);
    assert!(!out.status.success());
    // nocopy leaves a new volume empty.
    let ls = d.ok(&[
        "run",
        "--rm",
        "-v",
        "empty:/etc:nocopy",
        "busybox",
        "ls",
        "/etc",
    ]);
    assert!(!ls.contains("passwd"), "{ls}");
}

#[test]
fn anonymous_volumes_volumes_from_and_tmpfs() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "src",
        "-v",
        "/anon",
        "--mount",
        "type=volume,source=shared,target=/shared",
        "busybox",
        "sh",
        "-c",
        "echo a > /anon/x; echo s > /shared/y; sleep 300",
    ]);
    let mounts = d.ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}}:{{.Name}}:{{.Destination}} {{end}}",
        "src",
    ]);
    let anon = mounts
        .split_whitespace()
        .find(|m| m.ends_with(":/anon"))
        .and_then(|m| m.split(':').nth(1))
        .unwrap()
        .to_string();
    assert_eq!(anon.len(), 64, "{mounts}");
    assert!(mounts.contains("volume:shared:/shared"), "{mounts}");
    common::eventually("the writes", 10, || {
        d.docker(&["exec", "src", "cat", "/shared/y"])
            .status
            .success()
    });
    let seen = d.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "src:ro",
        "busybox",
        "sh",
        "-c",
        "cat /anon/x /shared/y; touch /anon/z 2>&1 || true",
    ]);
    assert!(
        seen.starts_with("a\ns\n") && seen.contains("Read-only"),
        "{seen}"
    );
    // rm -v takes the anonymous volume, not the named one.
    d.ok(&["rm", "-fv", "src"]);
    let names = d.ok(&["volume", "ls", "-q"]);
    assert!(
        !names.contains(&anon) && names.contains("shared"),
        "{names}"
    );
    // A tmpfs mount, and a volume backed by tmpfs (mounted while used).
    let df = d.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=1m",
        "busybox",
        "df",
        "-k",
        "/t",
    ]);
    assert!(df.contains("tmpfs") && df.contains("1024"), "{df}");
    d.ok(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=1m",
        "fast",
    ]);
    let df = d.ok(&[
        "run",
        "--rm",
        "-v",
        "fast:/fast",
        "busybox",
        "df",
        "-k",
        "/fast",
    ]);
    assert!(df.contains("tmpfs") && df.contains("1024"), "{df}");
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["volume", "inspect", "fast"])).unwrap();
    let mp = v[0]["Mountpoint"].as_str().unwrap().to_string();
    let mounted = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounted.contains(&mp), "unmounted once unused");
    // prune: anonymous only unless --all.
    d.ok(&["run", "--rm", "-v", "/tmpanon", "busybox", "true"]);
    d.ok(&["volume", "prune", "-f"]);
    let names = d.ok(&["volume", "ls", "-q"]);
    assert_eq!(names.lines().count(), 2, "{names}");
    d.ok(&["volume", "prune", "-af"]);
    assert!(d.ok(&["volume", "ls", "-q"]).trim().is_empty());
}

#[test]
fn bad_volume_input_is_refused() {
    require_machine!();
    let d = Daemon::start();
    let cases: &[(&[&str], &str)] = &[
        (&["volume", "inspect", "nope"], "no such volume"),
        (&["volume", "rm", "nope"], "no such volume"),
        (
            &["volume", "create", "-d", "nfs", "x1"],
            "plugin \"nfs\" not found",
        ),
        (
            &["volume", "create", "--opt", "bogus=1", "x2"],
            "invalid option key",
        ),
        (
            &["run", "--rm", "-v", "data:relative", "busybox", "true"],
            "must be absolute",
        ),
        (
            &[
                "run",
                "--rm",
                "--volumes-from",
                "missing",
                "busybox",
                "true",
            ],
            "No such container: missing",
        ),
        (
            &[
                "run",
                "--rm",
                "-v",
                "va:/x",
                "--mount",
                "type=volume,source=vb,target=/x",
                "busybox",
                "true",
            ],
            "Duplicate mount point",
        ),
        // The docker CLI reads one-letter names as drive letters, and sends anonymous paths.
        (
            &["run", "--rm", "-v", "a:/x", "busybox", "true"],
            "invalid volume specification",
        ),
    ];
    for (args, want) in cases {
        let out = d.docker(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    assert!(
        d.ok(&["volume", "ls", "-q"]).trim().is_empty(),
        "nothing was made"
    );
}

/// `-v src:dst:rslave` and `--mount …,bind-propagation=rshared`: a mount made on the host
/// under the source after the container started shows up inside; the default (rprivate)
/// keeps it out.
#[test]
fn bind_propagation_lets_host_mounts_in() {
    require_machine!();
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let sh = |cmd: &str| {
        let ok = std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{cmd}");
    };
    let s = src.display().to_string();
    // The source must be in a shared peer group for anything to propagate (this host's
    // root may be private).
    sh(&format!("mount --bind {s} {s} && mount --make-shared {s}"));
    let slave = format!("{s}:/mnt:rslave");
    d.ok(&[
        "run", "-d", "--name", "slave", "-v", &slave, "busybox", "sleep", "300",
    ]);
    let shared = format!("type=bind,source={s},target=/mnt,bind-propagation=rshared");
    d.ok(&[
        "run", "-d", "--name", "shared", "--mount", &shared, "busybox", "sleep", "300",
    ]);
    let private = format!("{s}:/mnt");
    d.ok(&[
        "run", "-d", "--name", "private", "-v", &private, "busybox", "sleep", "300",
    ]);
    sh(&format!(
        "mkdir -p {s}/sub && mount -t tmpfs tmpfs {s}/sub && echo in > {s}/sub/f"
    ));
    for c in ["slave", "shared"] {
        assert_eq!(d.ok(&["exec", c, "cat", "/mnt/sub/f"]), "in\n", "{c}");
    }
    let out = d.docker(&["exec", "private", "cat", "/mnt/sub/f"]);
    assert!(
        !out.status.success(),
        "an rprivate bind saw the host's new mount"
    );
    let prop = |c: &str| d.ok(&["inspect", "-f", "{{(index .Mounts 0).Propagation}}", c]);
    assert_eq!(prop("slave").trim(), "rslave");
    assert_eq!(prop("shared").trim(), "rshared");
    assert_eq!(prop("private").trim(), "rprivate");
    d.ok(&["rm", "-f", "slave", "shared", "private"]);
    sh(&format!("umount {s}/sub; umount -l {s}"));
}
