//! cloudlet's own CLI: docker's verbs at top level, as a client of the same API.

mod common;
use common::{stderr, stdout, Daemon};

#[test]
fn run_ps_logs_exec_images() {
    require_machine!();
    let d = Daemon::start();
    let out = d.cloudlet(&["run", "--rm", "busybox", "echo", "hello"]);
    assert_eq!(stdout(&out), "hello\n", "{}", stderr(&out));
    let id = stdout(&d.cloudlet(&[
        "run",
        "-d",
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "echo hi; sleep 1000",
    ]));
    assert_eq!(id.trim().len(), 64, "{id}");
    let ps = stdout(&d.cloudlet(&["ps"]));
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    assert!(ps.contains("c1"), "{ps}");
    common::eventually("log", 10, || stdout(&d.cloudlet(&["logs", "c1"])) == "hi\n");
    assert_eq!(
        stdout(&d.cloudlet(&["exec", "c1", "echo", "inside"])),
        "inside\n"
    );
    let images = stdout(&d.cloudlet(&["images"]));
    assert!(
        images.starts_with("REPOSITORY") && images.contains("busybox"),
        "{images}"
    );
    let out = d.cloudlet(&["rm", "-f", "c1"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn no_daemon_is_one_clear_line() {
    let out = std::process::Command::new(common::BIN)
        .args(["-H", "unix:///tmp/cloudlet-nobody-here.sock", "ps"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn userns_private_maps_root_to_an_unprivileged_range() {
    require_machine!();
    let d = Daemon::start();
    let out = d.cloudlet(&[
        "run",
        "--rm",
        "--userns",
        "private",
        "busybox",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; touch /made && ls -ln /bin/busybox",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}\n{}", stderr(&out), d.log());
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"]);
    // Image files look root-owned inside, though they are 100000 on the host.
    assert!(lines.next().unwrap().contains(" 0 "), "{text}");
}

#[test]
fn network_volume_and_port_verbs() {
    require_machine!();
    let d = Daemon::start();
    let ok = |args: &[&str]| {
        let out = d.cloudlet(args);
        assert!(out.status.success(), "cloudlet {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let subnet = format!("10.{}.77.0/24", d.net_octet);
    let ip = format!("10.{}.77.50", d.net_octet);
    ok(&["network", "create", "--subnet", &subnet, "appnet"]);
    let ls = ok(&["network", "ls"]);
    assert!(ls.starts_with("NETWORK ID     NAME"), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.contains(" appnet ") && l.contains("bridge")),
        "{ls}"
    );
    assert_eq!(ok(&["volume", "create", "appdata"]).trim(), "appdata");
    ok(&[
        "run",
        "-d",
        "--name",
        "a1",
        "--net",
        "appnet",
        "--network-alias",
        "web",
        "--ip",
        &ip,
        "-p",
        "0:80",
        "--mount",
        "type=volume,source=appdata,target=/data",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let port = ok(&["port", "a1"]);
    assert!(port.starts_with("80/tcp -> 0.0.0.0:"), "{port}");
    assert!(ok(&["ps"]).contains("->80/tcp"));
    let found = ok(&[
        "run", "--rm", "--net", "appnet", "busybox", "nslookup", "web",
    ]);
    assert!(found.contains(&ip), "{found}");
    let inspect = ok(&["network", "inspect", "appnet"]);
    assert!(inspect.contains(&format!("{ip}/24")), "{inspect}");
    let out = d.cloudlet(&["volume", "rm", "appdata"]);
    assert!(
        stderr(&out).contains("volume is in use"),
        "{}",
        stderr(&out)
    );
    // --network twice: an interface on each network.
    let addrs = ok(&[
        "run", "--rm", "--net", "appnet", "--net", "bridge", "busybox", "ip", "-o", "-4", "addr",
    ]);
    assert!(
        addrs.contains(&format!("inet 10.{}.77.", d.net_octet)),
        "{addrs}"
    );
    assert!(
        addrs.contains(&format!("inet 10.{}.0.", d.net_octet)),
        "{addrs}"
    );
    ok(&["rm", "-f", "a1"]);
    assert_eq!(ok(&["network", "rm", "appnet"]).trim(), "appnet");
    assert_eq!(ok(&["volume", "rm", "appdata"]).trim(), "appdata");
    let out = d.cloudlet(&["network", "rm", "appnet"]);
    assert!(
        stderr(&out).contains("network appnet not found"),
        "{}",
        stderr(&out)
    );
}
