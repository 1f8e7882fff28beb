//! `cloudlet server` runs the Kubernetes API next to the engine: the real kubectl against
//! it, on the embedded SQLite store and on a real etcd, across a `kill -9` of the daemon.

mod common;
#[path = "../../store/tests/common/etcd_server.rs"]
mod etcd_server;

use common::{stderr, stdout, Daemon};

fn kubectl_ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}\n{}",
        stderr(&out),
        d.log()
    );
    stdout(&out)
}

/// The API server's URL, from the kubeconfig the daemon wrote.
fn server_url(d: &Daemon) -> String {
    let text = std::fs::read_to_string(d.kubeconfig()).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server in kubeconfig")
        .trim_matches('"')
        .to_string()
}

/// Namespaces, a ConfigMap that survives `kill -9`, a Secret encrypted at rest, the Docker
/// API beside it, and 401 for anonymous requests.
#[test]
fn server_serves_kubernetes_and_docker_apis() {
    require_machine!();
    let mut d = Daemon::start();
    let ns = kubectl_ok(&d, &["get", "ns", "-o", "name"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}\n")), "{ns}");
    }
    assert!(kubectl_ok(&d, &["version"]).contains("Server Version"));
    kubectl_ok(
        &d,
        &[
            "create",
            "configmap",
            "cfg",
            "--from-literal=greeting=hello",
        ],
    );
    assert!(d.ok(&["ps", "-a"]).starts_with("CONTAINER ID"));

    kubectl_ok(
        &d,
        &[
            "create",
            "secret",
            "generic",
            "pw",
            "--from-literal=pw=hunter2",
        ],
    );

    d.kill9_and_restart();
    let v = kubectl_ok(&d, &["get", "cm", "cfg", "-o", "jsonpath={.data.greeting}"]);
    assert_eq!(v, "hello");
    // Secrets are encrypted at rest: neither the value nor its base64 is in the database.
    let v = kubectl_ok(&d, &["get", "secret", "pw", "-o", "jsonpath={.data.pw}"]);
    assert_eq!(v, "aHVudGVyMg==");
    for f in ["state.db", "state.db-wal"] {
        let bytes = std::fs::read(d.data_dir().join("db").join(f)).unwrap_or_default();
        for needle in [&b"hunter2"[..], b"aHVudGVyMg"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{f} holds the secret"
            );
        }
    }

    let anon = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/api/v1/namespaces", server_url(&d)))
        .output()
        .unwrap();
    assert_eq!(stdout(&anon), "401");
    let health = std::process::Command::new("curl")
        .args(["-sk"])
        .arg(format!("{}/healthz", server_url(&d)))
        .output()
        .unwrap();
    assert_eq!(stdout(&health), "ok");
}

/// `--datastore-endpoint etcd://…`: objects live in etcd, under /registry.
#[test]
fn server_on_etcd() {
    require_machine!();
    let etcd = etcd_server::EtcdServer::start(&[]);
    let endpoint = etcd.endpoint.replace("http://", "etcd://");
    let d = Daemon::start_with(&["--datastore-endpoint", &endpoint]);
    kubectl_ok(
        &d,
        &["create", "configmap", "in-etcd", "--from-literal=a=b"],
    );
    let out = kubectl_ok(&d, &["get", "cm", "in-etcd", "-o", "jsonpath={.data.a}"]);
    assert_eq!(out, "b");
    // Read it back from etcd itself, over its JSON gateway: base64 of "/registry/".
    let body = r#"{"key":"L3JlZ2lzdHJ5Lw==","range_end":"L3JlZ2lzdHJ5MA==","keys_only":true}"#;
    let got = std::process::Command::new("curl")
        .args(["-s", "-X", "POST", "-d", body])
        .arg(format!("{}/v3/kv/range", etcd.endpoint))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let keys: Vec<String> = v["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            use base64::Engine;
            let k = base64::engine::general_purpose::STANDARD
                .decode(kv["key"].as_str().unwrap())
                .unwrap();
            String::from_utf8(k).unwrap()
        })
        .collect();
    assert!(
        keys.iter()
            .any(|k| k.ends_with("/configmaps/default/in-etcd")),
        "{keys:?}"
    );
}

/// Deleting a Deployment deletes the ReplicaSet it owns (ownerReferences set by hand); with
/// `--cascade=orphan` the ReplicaSet stays, without the reference; with
/// `--cascade=foreground` both go, the owner last.
#[test]
fn owner_deletion_collects_or_orphans_dependents() {
    require_machine!();
    let d = Daemon::start_bare();
    let manifest = d.dir.path().join("owner.yaml");
    for (deploy, rs) in [("web", "web-rs"), ("kept", "kept-rs"), ("fg", "fg-rs")] {
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {deploy}}}\nspec:\n  \
                 selector: {{matchLabels: {{app: {deploy}}}}}\n  template:\n    metadata: \
                 {{labels: {{app: {deploy}}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
            ),
        )
        .unwrap();
        kubectl_ok(&d, &["apply", "-f", manifest.to_str().unwrap()]);
        let uid = kubectl_ok(
            &d,
            &["get", "deploy", deploy, "-o", "jsonpath={.metadata.uid}"],
        );
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {rs}\n  ownerReferences:\n  \
                 - {{apiVersion: apps/v1, kind: Deployment, name: {deploy}, uid: {uid}, controller: true}}\n\
                 spec:\n  selector: {{matchLabels: {{app: {deploy}}}}}\n  template:\n    metadata: \
                 {{labels: {{app: {deploy}}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
            ),
        )
        .unwrap();
        kubectl_ok(&d, &["apply", "-f", manifest.to_str().unwrap()]);
    }

    kubectl_ok(&d, &["delete", "deploy", "web"]);
    kubectl_ok(&d, &["wait", "--for=delete", "rs/web-rs", "--timeout=20s"]);

    kubectl_ok(&d, &["delete", "deploy", "kept", "--cascade=orphan"]);
    let refs = kubectl_ok(
        &d,
        &[
            "get",
            "rs",
            "kept-rs",
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ],
    );
    assert_eq!(
        refs, "",
        "the orphan keeps no reference to its deleted owner"
    );
    let out = d.kubectl(&["get", "deploy", "kept"]);
    assert!(!out.status.success(), "the owner itself is gone");

    // Foreground: kubectl waits until the owner is gone, which is after its dependents.
    kubectl_ok(
        &d,
        &[
            "delete",
            "deploy",
            "fg",
            "--cascade=foreground",
            "--timeout=20s",
        ],
    );
    for what in ["deploy/fg", "rs/fg-rs"] {
        assert!(
            !d.kubectl(&["get", what]).status.success(),
            "{what} still there"
        );
    }
}

/// Bad input gets the right `Status` and changes nothing.
#[test]
fn bad_input_gets_a_status_and_changes_nothing() {
    require_machine!();
    let d = Daemon::start_bare();
    kubectl_ok(&d, &["get", "ns"]);
    // The admin's credentials, from the kubeconfig, for curl.
    let cfg = std::fs::read_to_string(d.kubeconfig()).unwrap();
    let field = |name: &str| -> Vec<u8> {
        use base64::Engine;
        let v = cfg
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{name} in kubeconfig"));
        base64::engine::general_purpose::STANDARD
            .decode(v.trim().trim_matches('"'))
            .unwrap()
    };
    let dir = d.dir.path();
    for (name, file) in [
        ("certificate-authority-data", "ca.crt"),
        ("client-certificate-data", "admin.crt"),
        ("client-key-data", "admin.key"),
    ] {
        std::fs::write(dir.join(file), field(name)).unwrap();
    }
    let url = server_url(&d);
    let curl = |method: &str, path: &str, body: &[u8]| -> (String, serde_json::Value) {
        let body_file = dir.join("body");
        std::fs::write(&body_file, body).unwrap();
        let out = std::process::Command::new("curl")
            .args(["-s", "-X", method, "-H", "Content-Type: application/json"])
            .arg("--cacert")
            .arg(dir.join("ca.crt"))
            .arg("--cert")
            .arg(dir.join("admin.crt"))
            .arg("--key")
            .arg(dir.join("admin.key"))
            .arg("--data-binary")
            .arg(format!("@{}", body_file.display()))
            .args(["-w", "\n%{http_code}"])
            .arg(format!("{url}{path}"))
            .output()
            .unwrap();
        let text = stdout(&out);
        let (json, code) = text.rsplit_once('\n').unwrap();
        (
            code.to_string(),
            serde_json::from_str(json).unwrap_or_default(),
        )
    };
    let revision = || {
        let (_, list) = curl("GET", "/api/v1/configmaps", b"");
        list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = revision();
    let cms = "/api/v1/namespaces/default/configmaps";
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("POST", cms, b"{not json".to_vec(), "400"),
        (
            "POST",
            cms,
            br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec(),
            "400",
        ),
        (
            "POST",
            "/apis/apps/v2/namespaces/default/deployments",
            b"{}".to_vec(),
            "404",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/widgets",
            b"{}".to_vec(),
            "404",
        ),
        (
            "POST",
            cms,
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#.to_vec(),
            "422",
        ),
        (
            "POST",
            "/api/v1/namespaces/nowhere/configmaps",
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(),
            "404",
        ),
    ];
    for (method, path, body, want) in &cases {
        let (code, status) = curl(method, path, body);
        assert_eq!(&code, want, "{method} {path}: {status}");
        assert_eq!(status["kind"], "Status", "{method} {path}: {status}");
        assert_eq!(
            status["code"].as_u64().map(|c| c.to_string()).as_deref(),
            Some(*want)
        );
    }
    let (_, invalid) = curl("POST", cms, &cases[4].2);
    assert!(
        invalid["details"]["causes"][0]["field"].as_str() == Some("metadata.name"),
        "{invalid}"
    );
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let (code, _) = curl("POST", cms, big.as_bytes());
    assert_eq!(code, "413");
    assert_eq!(revision(), before, "bad input changed the store");

    std::fs::write(
        dir.join("bad.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n",
    )
    .unwrap();
    let out = d.kubectl(&["apply", "-f", dir.join("bad.yaml").to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(revision(), before);
}

/// The Python `kubernetes` client (PyPI; `make test` installs it in target/pysdk) lists,
/// creates and watches.
#[test]
fn python_kubernetes_client_lists_and_watches() {
    require_machine!();
    let python = common::workspace_root().join("target/pysdk/bin/python");
    let has_client = std::process::Command::new(&python)
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_client {
        eprintln!("SKIP: no Python kubernetes client in target/pysdk (make test installs it)");
        return;
    }
    let d = Daemon::start_bare();
    kubectl_ok(&d, &["get", "ns"]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_kubernetes.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(d.kubeconfig())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\ndaemon log:\n{}",
        stdout(&out),
        stderr(&out),
        d.log()
    );
    assert!(stdout(&out).contains("python kubernetes: ok"));
}

/// Services get distinct ClusterIPs from --service-cidr and NodePorts from 30000-32767; a
/// taken or out-of-range address is refused.
#[test]
fn services_get_cluster_ips_and_node_ports() {
    require_machine!();
    let d = Daemon::start_with(&["--service-cidr", "10.96.0.0/24"]);
    kubectl_ok(&d, &["create", "service", "clusterip", "a", "--tcp=80:80"]);
    kubectl_ok(&d, &["create", "service", "nodeport", "b", "--tcp=80:80"]);
    let ip = |name: &str| {
        kubectl_ok(
            &d,
            &["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"],
        )
    };
    let (a, b) = (ip("a"), ip("b"));
    assert!(
        a.starts_with("10.96.0.") && b.starts_with("10.96.0."),
        "{a} {b}"
    );
    assert_ne!(a, b);
    let port: u32 = kubectl_ok(
        &d,
        &[
            "get",
            "svc",
            "b",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ],
    )
    .parse()
    .unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    let manifest = d.dir.path().join("svc.yaml");
    for (name, cluster_ip, want) in [
        ("c", a.as_str(), "already allocated"),
        ("e", "10.1.2.3", "not in the valid range"),
    ] {
        std::fs::write(
            &manifest,
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  clusterIP: {cluster_ip}\n  ports: [{{port: 80}}]\n"),
        )
        .unwrap();
        let out = d.kubectl(&["create", "-f", manifest.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
    }
    // A deleted Service's address is free again.
    kubectl_ok(&d, &["delete", "svc", "a"]);
    std::fs::write(
        &manifest,
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: f}}\nspec:\n  clusterIP: {a}\n  ports: [{{port: 80}}]\n"),
    )
    .unwrap();
    kubectl_ok(&d, &["create", "-f", manifest.to_str().unwrap()]);
}
