//! `/metrics`, the audit log and Secret key rotation, driven by the real kubectl against a
//! server on 127.0.0.1 authorizing with RBAC (`common::Cluster`; kubectl is required).

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use apiserver::audit::Level;
use common::{Cluster, Options};
use serde_json::Value;

/// The value of the first sample of `name` whose labels include every one of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_audit_log_record_kubectl_calls() -> Result<()> {
    let c = Cluster::start_with(Options {
        rbac: true,
        audit: Some(Level::RequestResponse),
    })
    .await?;
    c.kubectl(&["create", "namespace", "obs"]).await?;
    c.kubectl(&[
        "-n",
        "obs",
        "create",
        "configmap",
        "cm",
        "--from-literal=k=v",
    ])
    .await?;
    c.kubectl(&[
        "-n",
        "obs",
        "create",
        "secret",
        "generic",
        "s1",
        "--from-literal=password=hunter2",
    ])
    .await?;
    c.kubectl(&["-n", "obs", "get", "configmaps"]).await?;
    c.kubectl(&["-n", "obs", "get", "secret", "s1", "-o", "json"])
        .await?;
    c.kubectl(&["-n", "obs", "delete", "configmap", "cm"])
        .await?;
    // A watch that ends (the request timeout closes it): counted, not timed.
    let _ = c
        .kubectl(&[
            "-n",
            "obs",
            "get",
            "configmaps",
            "--watch",
            "--request-timeout=1s",
        ])
        .await;

    let m = c.kubectl(&["get", "--raw", "/metrics"]).await?;
    let total = "apiserver_request_total";
    let ok = r#"code="200""#;
    for (verb, resource, scope, code) in [
        ("POST", "namespaces", "cluster", "201"),
        ("POST", "secrets", "namespace", "201"),
        ("LIST", "configmaps", "namespace", "200"),
        ("GET", "secrets", "resource", "200"),
        ("DELETE", "configmaps", "resource", "200"),
        ("WATCH", "configmaps", "namespace", "200"),
    ] {
        let v = sample(
            &m,
            total,
            &[
                &format!(r#"verb="{verb}""#),
                &format!(r#"resource="{resource}""#),
                &format!(r#"scope="{scope}""#),
                &format!(r#"code="{code}""#),
                r#"component="apiserver""#,
            ],
        );
        ensure!(v >= Some(1.0), "{verb} {resource}: {v:?} in\n{m}");
    }
    let hist = "apiserver_request_duration_seconds_count";
    ensure!(sample(&m, hist, &[r#"verb="LIST""#, r#"resource="configmaps""#]) >= Some(1.0));
    ensure!(
        sample(&m, hist, &[r#"verb="WATCH""#]).is_none(),
        "watches are not timed"
    );
    ensure!(sample(&m, total, &[r#"subresource="/api""#, ok]) >= Some(1.0));
    ensure!(m.contains("apiserver_current_inflight_requests{"), "{m}");
    ensure!(
        sample(
            &m,
            "apiserver_storage_objects",
            &[r#"resource="namespaces""#]
        ) >= Some(5.0),
        "{m}"
    );
    ensure!(m.contains("apiserver_audit_event_total "), "{m}");

    // The audit log: flushed by its writer thread shortly after each request.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = c.audit_events()?;
        let watch_done = |e: &Value| e["verb"] == "watch" && e["stage"] == "ResponseComplete";
        if events.iter().any(|e| e["verb"] == "delete") && events.iter().any(watch_done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let find = |verb: &str, resource: &str| {
        events
            .iter()
            .find(|e| {
                e["verb"] == verb
                    && e["objectRef"]["resource"] == resource
                    && e["stage"] == "ResponseComplete"
            })
            .cloned()
            .with_context(|| format!("no {verb} {resource} event in {events:#?}"))
    };
    let ns = find("create", "namespaces")?;
    assert_eq!(ns["kind"], "Event");
    assert_eq!(ns["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(ns["level"], "RequestResponse");
    assert_eq!(ns["user"]["username"], "system:admin");
    assert!(ns["user"]["groups"]
        .as_array()
        .unwrap()
        .contains(&"system:masters".into()));
    assert_eq!(ns["responseStatus"]["code"], 201);
    assert_eq!(ns["requestObject"]["metadata"]["name"], "obs");
    assert_eq!(ns["responseObject"]["metadata"]["name"], "obs");
    assert_eq!(ns["sourceIPs"][0], "127.0.0.1");
    assert!(ns["userAgent"].as_str().unwrap().starts_with("kubectl"));
    assert!(uuid_like(ns["auditID"].as_str().unwrap()));
    assert!(
        ns["requestReceivedTimestamp"].as_str().unwrap() <= ns["stageTimestamp"].as_str().unwrap()
    );

    for verb in ["create", "get"] {
        let s = find(verb, "secrets")?;
        assert_eq!(s["level"], "Metadata", "{s}");
        assert_eq!(s["objectRef"]["namespace"], "obs");
        assert!(s.get("requestObject").is_none() && s.get("responseObject").is_none());
    }
    let cm = find("delete", "configmaps")?;
    assert_eq!(
        (cm["level"].as_str(), cm["objectRef"]["name"].as_str()),
        (Some("Metadata"), Some("cm"))
    );
    find("list", "configmaps")?;
    let text = std::fs::read_to_string(c.audit_log())?;
    assert!(
        !text.contains("hunter2") && !text.contains("aHVudGVyMg"),
        "secret data logged"
    );
    // The watch: started, then completed when kubectl gave up.
    for stage in ["ResponseStarted", "ResponseComplete"] {
        assert!(
            events
                .iter()
                .any(|e| e["verb"] == "watch" && e["stage"] == stage),
            "watch {stage}"
        );
    }
    Ok(())
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reencrypts_every_secret_and_drops_the_old_key() -> Result<()> {
    let c = Cluster::start_with(Options {
        rbac: true,
        audit: None,
    })
    .await?;
    for i in 0..3 {
        c.kubectl(&[
            "create",
            "secret",
            "generic",
            &format!("s{i}"),
            &format!("--from-literal=v=value-{i}"),
        ])
        .await?;
    }
    let status: Value = serde_json::from_str(
        &c.kubectl(&["get", "--raw", "/v1-cloudlet/encrypt/status"])
            .await?,
    )?;
    let old = status["currentKey"].as_str().unwrap().to_string();
    assert_eq!(status["allCurrent"], true);
    assert_eq!(status["secretsByKey"][&old], status["secrets"]);

    let empty = c.dir.path().join("empty.json");
    std::fs::write(&empty, "{}")?;
    let out = c
        .kubectl(&[
            "create",
            "--raw",
            "/v1-cloudlet/encrypt/rotate",
            "-f",
            empty.to_str().unwrap(),
        ])
        .await?;
    let rotation: Value = serde_json::from_str(&out)?;
    let new = rotation["newKey"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(rotation["reencrypted"].as_u64() >= Some(3), "{rotation}");
    assert_eq!(rotation["removedKeys"], serde_json::json!([old]));

    for i in 0..3 {
        let raw = c
            .store
            .get(&format!("/registry/core/secrets/default/s{i}"), 0)
            .await?
            .context("secret in the store")?;
        let prefix = format!("k8s:enc:aesgcm:v1:{new}:");
        assert!(
            raw.value.starts_with(prefix.as_bytes()),
            "s{i} not under {new}"
        );
        let s: Value = serde_json::from_str(
            &c.kubectl(&["get", "secret", &format!("s{i}"), "-o", "json"])
                .await?,
        )?;
        use base64::Engine;
        let v =
            base64::engine::general_purpose::STANDARD.decode(s["data"]["v"].as_str().unwrap())?;
        assert_eq!(v, format!("value-{i}").as_bytes());
    }
    // Key names are `key-<seconds>`, suffixed within one second: compare whole names.
    let keyfile: Value = serde_json::from_str(&std::fs::read_to_string(
        c.dir.path().join("pki/encryption-config.json"),
    )?)?;
    let names: Vec<&str> = keyfile["resources"][0]["providers"][0]["aesgcm"]["keys"]
        .as_array()
        .context("aesgcm keys")?
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, [new.as_str()]);
    let status: Value = serde_json::from_str(
        &c.kubectl(&["get", "--raw", "/v1-cloudlet/encrypt/status"])
            .await?,
    )?;
    assert_eq!(status["keys"], serde_json::json!([new]));
    assert_eq!(status["allCurrent"], true);
    Ok(())
}
