//! Engine networking end to end, with the real docker CLI: the predefined networks,
//! published ports, user-defined networks with name resolution and isolation, bad input,
//! cleanup after many runs, and a `kill -9` of the daemon.

mod common;

use std::process::Command;

use common::{stderr, stdout, Daemon};

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", url])
        .output()
        .expect("run curl");
    stdout(&out)
}

/// An IPv4 address of this host other than loopback and the bridges of test daemons.
fn host_address() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    stdout(&out).lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (dev, addr) = (f.get(1)?, f.get(3)?);
        let ours = ["clt", "br-", "veth", "cloudlet", "docker", "cni", "podman"];
        if ours.iter().any(|p| dev.starts_with(p)) {
            return None;
        }
        Some(addr.split('/').next()?.to_string())
    })
}

/// What the host's network looks like, to compare before and after.
fn host_state(d: &Daemon) -> (String, String, String, Vec<String>) {
    let run = |args: &[&str]| stdout(&Command::new(args[0]).args(&args[1..]).output().unwrap());
    // This daemon's bridges and the links enslaved to them (other tests' are elsewhere).
    let mut links = String::new();
    for e in std::fs::read_dir(d.data_dir().join("network/networks"))
        .unwrap()
        .flatten()
    {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        let Some(bridge) = v["bridge"].as_str().filter(|b| !b.is_empty()) else {
            continue;
        };
        links.push_str(&format!("{bridge}:"));
        for l in run(&["ip", "-o", "link", "show", "master", bridge]).lines() {
            let name = l.split(':').nth(1).unwrap_or("").trim();
            links.push_str(&format!(" {}", name.split('@').next().unwrap_or("")));
        }
        links.push('\n');
    }
    let table = run(&["nft", "list", "table", "ip", &d.net_prefix]);
    let netns = run(&["ip", "netns", "list"]);
    let mut endpoints: Vec<String> = std::fs::read_dir(d.data_dir().join("network/endpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    endpoints.sort();
    (links, table, netns, endpoints)
}

#[test]
fn predefined_networks_and_modes() {
    require_machine!();
    let d = Daemon::start();
    let ls = d.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in ["bridge bridge", "host host", "none null"] {
        assert!(ls.lines().any(|l| l == want), "{want} missing from:\n{ls}");
    }
    // none: loopback only, and up.
    let none = d.ok(&[
        "run",
        "--rm",
        "--name=c3",
        "--net=none",
        "busybox",
        "ip",
        "a",
    ]);
    assert!(none.contains("lo: <LOOPBACK,UP"), "{none}");
    assert!(none.contains("inet 127.0.0.1/8"), "{none}");
    assert!(!none.contains("eth0"), "{none}");
    // host: the host's interfaces, including this daemon's bridge.
    let host = d.ok(&[
        "run",
        "--rm",
        "--name=c4",
        "--net=host",
        "busybox",
        "ip",
        "a",
    ]);
    assert!(host.contains(&format!("{}0", d.net_prefix)), "{host}");
    // bridge: an address in the default bridge's subnet and a default route.
    let subnet = format!("inet 10.{}.0.", d.net_octet);
    let bridged = d.ok(&["run", "--rm", "busybox", "ip", "a"]);
    assert!(
        bridged.contains(&subnet) && bridged.contains("eth0"),
        "{bridged}"
    );
    let route = d.ok(&["run", "--rm", "busybox", "ip", "route"]);
    assert!(
        route.contains(&format!("default via 10.{}.0.1", d.net_octet)),
        "{route}"
    );
    // container:c5 shares c5's namespace and address.
    d.ok(&["run", "-d", "--name=c5", "busybox", "sleep", "300"]);
    let c5_ip = d.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "c5"]);
    let c5_ip = c5_ip.trim();
    assert!(
        c5_ip.starts_with(&format!("10.{}.0.", d.net_octet)),
        "{c5_ip}"
    );
    let shared = d.ok(&[
        "run",
        "--rm",
        "--name=c6",
        "--net=container:c5",
        "busybox",
        "ip",
        "a",
    ]);
    assert!(shared.contains(&format!("inet {c5_ip}/24")), "{shared}");
    // The default bridge lists its running containers with their addresses.
    let inspect = d.ok(&["network", "inspect", "bridge"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let containers = v[0]["Containers"].as_object().unwrap();
    assert!(
        containers
            .values()
            .any(|c| c["Name"] == "c5" && c["IPv4Address"] == format!("{c5_ip}/24")),
        "{inspect}"
    );
    // /etc/hosts names the container at its address; resolv.conf has the host's servers.
    let hosts = d.ok(&["exec", "c5", "cat", "/etc/hosts"]);
    assert!(hosts.contains(c5_ip), "{hosts}");
}

#[test]
fn published_ports_answer_on_loopback_and_the_host_address() {
    require_machine!();
    let d = Daemon::start();
    // The page lives in a named volume.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "www:/www",
        "busybox",
        "sh",
        "-c",
        "echo hello from cloudlet > /www/index.html",
    ]);
    let port = free_port();
    let publish = format!("{port}:80");
    d.ok(&[
        "run", "-d", "--name", "web", "-p", &publish, "-v", "www:/www", "busybox", "httpd", "-f",
        "-p", "80", "-h", "/www",
    ]);
    common::eventually("the page on 127.0.0.1", 10, || {
        curl(&format!("http://127.0.0.1:{port}/")) == "hello from cloudlet\n"
    });
    if let Some(addr) = host_address() {
        assert_eq!(
            curl(&format!("http://{addr}:{port}/")),
            "hello from cloudlet\n"
        );
    }
    assert_eq!(
        d.ok(&["port", "web"]).trim(),
        format!("80/tcp -> 0.0.0.0:{port}")
    );
    let ps = d.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    // -P and -p 80 pick free host ports and tell which.
    d.ok(&[
        "run", "-d", "--name", "any", "-p", "80", "--expose", "81", "-P", "busybox", "httpd", "-f",
        "-p", "80", "-h", "/",
    ]);
    let mapped = d.ok(&["port", "any", "80/tcp"]);
    let host_port: u16 = mapped.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(host_port, 0);
    assert!(d.ok(&["port", "any"]).contains("81/tcp -> 0.0.0.0:"));
    // A host port that is taken: a clear error, and the container does not start.
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "clash",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "Bind for 0.0.0.0:{port} failed: port is already allocated"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "clash"])
            .trim(),
        "created"
    );
    // Containers reach it through a host address too (the bridge's gateway is one): a
    // sibling on the bridge, the container itself, and one on another network.
    let url = format!("http://10.{}.0.1:{port}/", d.net_octet);
    let page = "hello from cloudlet\n";
    assert_eq!(
        d.ok(&["run", "--rm", "busybox", "wget", "-qO-", &url]),
        page
    );
    assert_eq!(d.ok(&["exec", "web", "wget", "-qO-", &url]), page);
    d.ok(&["network", "create", "far"]);
    let far = [
        "run",
        "--rm",
        "--network",
        "far",
        "busybox",
        "wget",
        "-qO-",
        &url,
    ];
    assert_eq!(d.ok(&far), page);
    // The port goes with the container.
    d.ok(&["rm", "-f", "web"]);
    let table = stdout(
        &Command::new("nft")
            .args(["list", "table", "ip", &d.net_prefix])
            .output()
            .unwrap(),
    );
    assert!(!table.contains(&format!(". {port} :")), "{table}");
    std::net::TcpListener::bind(("0.0.0.0", port)).expect("the host port is free again");
}

#[test]
fn user_networks_resolve_names_and_isolate() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&["network", "create", "--driver", "bridge", "my_bridge"]);
    d.ok(&["network", "create", "other"]);
    d.ok(&[
        "run",
        "-d",
        "--net=my_bridge",
        "--name=c1",
        "--network-alias",
        "db",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    d.ok(&[
        "container",
        "run",
        "--net=my_bridge",
        "-itd",
        "--name=c2",
        "busybox",
        "sh",
    ]);
    // By name and by alias, through the embedded resolver.
    let ping = d.ok(&["exec", "c2", "ping", "-c1", "-W2", "c1"]);
    assert!(ping.contains("1 packets received"), "{ping}");
    let fetched = d.ok(&[
        "exec",
        "c2",
        "sh",
        "-c",
        "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 db 80",
    ]);
    assert!(fetched.contains("200 OK"), "{fetched}");
    let resolv = d.ok(&["exec", "c2", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    // Another network reaches neither the name nor the address.
    d.ok(&[
        "run",
        "-d",
        "--net=other",
        "--name=c3",
        "busybox",
        "sleep",
        "300",
    ]);
    let c1_ip = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.my_bridge.IPAddress}}",
        "c1",
    ]);
    let c1_ip = c1_ip.trim().to_string();
    assert!(!d
        .docker(&["exec", "c3", "ping", "-c1", "-W1", &c1_ip])
        .status
        .success());
    assert!(!d
        .docker(&["exec", "c3", "ping", "-c1", "-W1", "c1"])
        .status
        .success());
    // Until it is connected, live; and no longer once disconnected.
    d.ok(&["network", "connect", "my_bridge", "c3"]);
    let ping = d.ok(&["exec", "c3", "ping", "-c1", "-W2", "c1"]);
    assert!(ping.contains("1 packets received"), "{ping}");
    d.ok(&["network", "disconnect", "my_bridge", "c3"]);
    assert!(!d
        .docker(&["exec", "c3", "ping", "-c1", "-W1", &c1_ip])
        .status
        .success());
    let inspect = d.ok(&[
        "network",
        "inspect",
        "my_bridge",
        "-f",
        "{{range .Containers}}{{.Name}} {{end}}",
    ]);
    let mut names: Vec<&str> = inspect.split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["c1", "c2"]);
}

#[test]
fn bad_network_input_is_refused_and_changes_nothing() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &format!("10.{}.50.0/24", d.net_octet),
        "n1",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--net=n1",
        "--name=busy",
        "busybox",
        "sleep",
        "300",
    ]);
    let before = (d.ok(&["network", "ls", "-q"]), host_state(&d));
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "network",
                "create",
                "--subnet",
                &format!("10.{}.50.128/25", d.net_octet),
                "n2",
            ],
            "Pool overlaps with other one on this address space",
        ),
        (
            &["run", "--rm", "--net=container:missing", "busybox", "true"],
            "No such container: missing",
        ),
        (
            &["run", "--rm", "--net=nope", "busybox", "true"],
            "network nope not found",
        ),
        (&["network", "rm", "n1"], "has active endpoints"),
        (
            &["network", "rm", "bridge"],
            "pre-defined network and cannot be removed",
        ),
        (
            &["network", "create", "--subnet", "10.0.0.0/33", "n3"],
            "invalid subnet",
        ),
        (
            &["run", "--rm", "-p", "99999:80", "busybox", "true"],
            "invalid",
        ),
        (
            &["run", "--rm", "--ip", "10.9.9.9", "busybox", "true"],
            "user defined networks only",
        ),
    ];
    for (args, want) in cases {
        let out = d.docker(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    assert_eq!((d.ok(&["network", "ls", "-q"]), host_state(&d)), before);
}

#[test]
fn many_runs_with_published_ports_leave_nothing_behind() {
    require_machine!();
    let d = Daemon::start();
    // The first run makes what stays (the warm pool's container has no network).
    d.ok(&["run", "--rm", "busybox", "true"]);
    let before = host_state(&d);
    let port = free_port();
    let script = format!(
        "for i in $(seq 1000); do docker run --rm -p {port}:80 busybox true >/dev/null || exit 1; done"
    );
    let st = Command::new("sh")
        .args(["-c", &script])
        .env("DOCKER_HOST", &d.host)
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .status()
        .unwrap();
    assert!(st.success(), "a run failed:\n{}", d.log());
    common::eventually("releases to finish", 10, || host_state(&d) == before);
    assert!(d.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn published_ports_survive_kill_9_of_the_daemon() {
    require_machine!();
    let mut d = Daemon::start();
    let port = free_port();
    d.ok(&["network", "create", "app"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--net",
        "app",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    d.ok(&[
        "run", "-d", "--name", "peer", "--net", "app", "busybox", "sleep", "300",
    ]);
    common::eventually("the port to answer", 10, || {
        curl(&format!("http://127.0.0.1:{port}/hostname")).len() == 13
    });
    let web_ip = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.app.IPAddress}}",
        "web",
    ]);
    d.kill9_and_restart();
    assert_eq!(
        curl(&format!("http://127.0.0.1:{port}/hostname")).len(),
        13,
        "{}",
        d.log()
    );
    assert_eq!(
        d.ok(&["port", "web"]).trim(),
        format!("80/tcp -> 0.0.0.0:{port}")
    );
    // Names still resolve (the resolver came back) and new addresses do not clash.
    let ping = d.ok(&["exec", "peer", "ping", "-c1", "-W2", "web"]);
    assert!(ping.contains("1 packets received"), "{ping}");
    let fresh = d.ok(&[
        "run", "--rm", "--net", "app", "busybox", "ip", "-4", "a", "show", "eth0",
    ]);
    let peer_ip = d.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.app.IPAddress}}",
        "peer",
    ]);
    for taken in [web_ip.trim(), peer_ip.trim()] {
        assert!(
            !fresh.contains(&format!("inet {taken}/")),
            "{fresh} reuses {taken}"
        );
    }
    // The port is still held: nobody else may take it.
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_err());
}
