//! The whole daemon: `cloudlet server --audit-log-path …`, then `cloudlet secrets-encrypt
//! status|rotate` against it, with kubectl reading the Secrets back and `/metrics`.

mod common;

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

fn secrets_encrypt(d: &Daemon, action: &str) -> String {
    let kubeconfig = d.kubeconfig();
    let out = d.cloudlet(&[
        "secrets-encrypt",
        action,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "secrets-encrypt {action}: {}",
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn rotate_reencrypts_secrets_and_the_audit_log_records_requests() {
    require_machine!();
    let audit = tempfile::tempdir().unwrap();
    let audit_log = audit.path().join("audit.log");
    let d = Daemon::start_with(&["--audit-log-path", audit_log.to_str().unwrap()]);
    kubectl_ok(
        &d,
        &[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=pw=hunter2",
        ],
    );
    kubectl_ok(&d, &["create", "configmap", "cfg", "--from-literal=k=v"]);

    let status = secrets_encrypt(&d, "status");
    assert!(
        status.contains("All secrets use the current key: yes"),
        "{status}"
    );
    let old = status
        .lines()
        .find_map(|l| l.strip_prefix("Current key: "))
        .unwrap()
        .to_string();

    let rotated = secrets_encrypt(&d, "rotate");
    let new = rotated
        .lines()
        .find_map(|l| l.strip_prefix("New key: "))
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    assert!(
        rotated.contains(&format!("Removed keys: {old}")),
        "{rotated}"
    );

    // The latest stored value of the Secret is under the new key (the SQLite file and its
    // write-ahead log hold it; older revisions stay until compaction).
    let mut db = Vec::new();
    for f in ["state.db", "state.db-wal"] {
        db.extend(std::fs::read(d.data_dir().join("db").join(f)).unwrap_or_default());
    }
    let sealed = format!("k8s:enc:aesgcm:v1:{new}:");
    assert!(db.windows(sealed.len()).any(|w| w == sealed.as_bytes()));
    assert!(
        !db.windows(7).any(|w| w == b"hunter2"),
        "secret in the clear"
    );
    let pw = kubectl_ok(&d, &["get", "secret", "db", "-o", "jsonpath={.data.pw}"]);
    assert_eq!(pw, "aHVudGVyMg==");
    let keyfile = std::fs::read_to_string(d.data_dir().join("pki/encryption-config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&keyfile).unwrap();
    let keys = &config["resources"][0]["providers"][0]["aesgcm"]["keys"];
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keyfile}");
    assert_eq!(keys[0]["name"], new.as_str());
    let status = secrets_encrypt(&d, "status");
    assert!(status.contains(&format!("Keys: {new}\n")), "{status}");

    let metrics = kubectl_ok(&d, &["get", "--raw", "/metrics"]);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("apiserver_request_total{verb=\"POST\"")
                && l.contains("resource=\"secrets\"")),
        "{metrics}"
    );

    // Metadata level by default: who did what, never bodies.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let text = std::fs::read_to_string(&audit_log).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let created = events
        .iter()
        .find(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "secrets")
        .expect("create secret event");
    assert_eq!(created["level"], "Metadata");
    assert_eq!(created["user"]["username"], "system:admin");
    assert_eq!(created["responseStatus"]["code"], 201);
    assert!(events
        .iter()
        .any(|e| e["requestURI"] == "/v1-cloudlet/encrypt/rotate"
            && e["verb"] == "post"
            && e["responseStatus"]["code"] == 200));
    assert!(!text.contains("hunter2") && !text.contains("aHVudGVyMg"));
}
