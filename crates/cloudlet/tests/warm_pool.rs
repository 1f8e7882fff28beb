//! Containers made ahead of demand: after a container of an image started, the daemon keeps
//! one more of the same shape waiting, and the next `run` of that shape takes it over.

mod common;
use common::{stderr, stdout, Daemon};

/// The containers waiting for a claim: directories without a record.
fn waiting(d: &Daemon) -> Vec<String> {
    let dir = d.data_dir().join("containers");
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.path().join("config.v2.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Shims still alive for the daemon's state: every container's and every waiting one's.
fn shims(d: &Daemon) -> usize {
    let marker = d.exec_root().to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        // A waiting container's init is a fork of its shim (same command line) until it
        // execs; it names itself youki:[2:INIT].
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| !c.starts_with("youki"))
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(" shim ") && c.contains(&marker))
        .count()
}

fn one_waiting(d: &Daemon) -> String {
    one_waiting_but(d, "")
}

/// The one waiting container, once it is not `old` (whose directory a removal may still
/// be deleting).
fn one_waiting_but(d: &Daemon, old: &str) -> String {
    common::eventually(
        "a container made ahead of demand",
        20,
        || matches!(waiting(d).as_slice(), [w] if w != old),
    );
    waiting(d).remove(0)
}

#[test]
fn the_next_run_takes_over_the_waiting_container() {
    require_machine!();
    let d = Daemon::start();
    assert_eq!(d.ok(&["run", "--rm", "busybox", "true"]), "");
    let warm = one_waiting(&d);
    // Invisible to the Docker API.
    assert_eq!(d.ok(&["ps", "-aq"]), "");

    // Same shape, another command and environment: it runs in the waiting container.
    let out = d.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING $HOSTNAME; cat /etc/hostname; echo $$",
    ]);
    assert_eq!(out, format!("hi {0}\n{0}\n1\n", &warm[..12]));
    let next = one_waiting_but(&d, &warm);
    assert_ne!(next, warm);

    // A missing command is the same error, with the same exit code, as without the pool.
    let out = d.docker(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("executable file not found in $PATH"),
        "{}",
        stderr(&out)
    );

    // Another shape is not taken over: it gets its own container, then becomes the shape
    // kept waiting.
    let waiting_before = one_waiting_but(&d, &next);
    let out = d.ok(&[
        "run",
        "--rm",
        "--hostname",
        "other",
        "-w",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "hostname; pwd",
    ]);
    assert_eq!(out, "other\n/tmp\n");
    common::eventually("the new shape waiting", 20, || {
        let w = waiting(&d);
        w.len() == 1 && w[0] != waiting_before
    });
    // `create` takes it over too; removed before it ever started, its process goes with it.
    let id = d.ok(&[
        "create",
        "--hostname",
        "other",
        "-w",
        "/tmp",
        "busybox",
        "true",
    ]);
    assert!(waiting(&d).is_empty());
    assert_eq!(shims(&d), 1);
    d.ok(&["rm", id.trim()]);
    common::eventually("the claimed container's shim gone", 20, || shims(&d) == 0);
    // `rm` answers once the record says Removing; the directory goes in the background.
    let dir = d.data_dir().join("containers").join(id.trim());
    common::eventually("the claimed container's directory gone", 20, || {
        !dir.exists()
    });
}

#[test]
fn waiting_containers_never_outlive_their_image_or_daemon() {
    require_machine!();
    let mut d = Daemon::start();
    d.ok(&["run", "--rm", "busybox", "true"]);
    one_waiting(&d);
    // The image can go: its waiting container goes first, and nothing stays mounted.
    d.ok(&["rmi", "busybox"]);
    assert!(waiting(&d).is_empty());
    common::eventually("no shims", 20, || shims(&d) == 0);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&*d.data_dir().to_string_lossy()),
        "{mounts}"
    );

    // After a kill -9 the next daemon removes what the last one left waiting.
    let out = d.cloudlet(&[
        "import",
        &common::busybox_tar().to_string_lossy(),
        "busybox",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    d.ok(&["run", "--rm", "busybox", "true"]);
    let left = one_waiting(&d);
    d.kill9_and_restart();
    common::eventually("the leftover removed", 20, || !waiting(&d).contains(&left));
    common::eventually("its shim gone", 20, || shims(&d) == 0);
    assert_eq!(stdout(&d.docker(&["ps", "-aq"])), "");
}

#[test]
fn the_pool_can_be_turned_off() {
    require_machine!();
    let d = Daemon::start_with(&["--warm-pool", "0"]);
    let out = d.cloudlet(&[
        "import",
        &common::busybox_tar().to_string_lossy(),
        "busybox",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    d.ok(&["run", "--rm", "busybox", "true"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(waiting(&d).is_empty());
    assert_eq!(shims(&d), 0);
}
