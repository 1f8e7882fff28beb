//! Acceptance with the real kubectl: a server on 127.0.0.1 (an ephemeral port) with a PKI
//! and a SQLite store in a temp dir, and kubectl pointed at the admin kubeconfig the server
//! writes (see `common`). kubectl is required: these tests fail, saying so, when it is
//! missing. With `CLOUDLET_TEST_DATASTORE=etcd` the same suite runs on a real etcd
//! (Debian's etcd-server) instead; `make test` runs it both ways.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::{Cluster, Options};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_namespaces_and_api_resources() -> Result<()> {
    let c = Cluster::start().await?;
    let version: Value = serde_json::from_str(&c.kubectl(&["version", "-o", "json"]).await?)?;
    assert!(version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .starts_with("v1.32"));

    let names = c.kubectl(&["get", "ns", "-o", "name"]).await?;
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "namespace/default",
            "namespace/kube-node-lease",
            "namespace/kube-public",
            "namespace/kube-system"
        ]
    );
    let table = c.kubectl(&["get", "ns"]).await?;
    assert!(
        table.starts_with("NAME") && table.contains("Active"),
        "{table}"
    );

    let resources = c.kubectl(&["api-resources", "-o", "name"]).await?;
    let catalog = apiserver::Catalog::builtin();
    for r in catalog.all() {
        let name = if r.group.is_empty() {
            r.plural.clone()
        } else {
            format!("{}.{}", r.plural, r.group)
        };
        assert!(
            resources.lines().any(|l| l == name),
            "api-resources lacks {name}:\n{resources}"
        );
    }
    let wide = c.kubectl(&["api-resources"]).await?;
    assert!(wide
        .lines()
        .any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_patch_and_delete_configmaps() -> Result<()> {
    let c = Cluster::start().await?;
    c.kubectl(&["create", "configmap", "c1", "--from-literal=a=b"])
        .await?;
    let cm = c.json(&["get", "cm", "c1"]).await?;
    assert_eq!(cm["data"]["a"], "b");
    assert_eq!(cm["metadata"]["namespace"], "default");
    assert!(cm["metadata"]["uid"].is_string() && cm["metadata"]["resourceVersion"].is_string());
    let list = c.json(&["get", "cm"]).await?;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let err = c.kubectl_fails(&["create", "configmap", "c1"]).await?;
    assert!(
        err.contains("AlreadyExists") || err.contains("already exists"),
        "{err}"
    );
    let err = c
        .kubectl_fails(&["create", "configmap", "Bad_Name"])
        .await?;
    assert!(err.contains("Invalid") || err.contains("invalid"), "{err}");

    c.kubectl(&["label", "cm", "c1", "tier=front"]).await?;
    c.kubectl(&["annotate", "cm", "c1", "note=hi"]).await?;
    c.kubectl(&[
        "patch",
        "cm",
        "c1",
        "--type=merge",
        "-p",
        r#"{"data":{"m":"1"}}"#,
    ])
    .await?;
    c.kubectl(&[
        "patch",
        "cm",
        "c1",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/j","value":"2"}]"#,
    ])
    .await?;
    c.kubectl(&["patch", "cm", "c1", "-p", r#"{"data":{"a":null}}"#])
        .await?;
    let cm = c.json(&["get", "cm", "c1"]).await?;
    assert_eq!(cm["metadata"]["labels"]["tier"], "front");
    assert_eq!(cm["metadata"]["annotations"]["note"], "hi");
    assert_eq!(cm["data"], serde_json::json!({"m": "1", "j": "2"}));
    let table = c.kubectl(&["get", "cm", "-l", "tier=front"]).await?;
    assert!(table.contains("c1") && table.contains("DATA"), "{table}");

    c.kubectl(&["delete", "cm", "c1"]).await?;
    let err = c.kubectl_fails(&["get", "cm", "c1"]).await?;
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    Ok(())
}

const MANIFEST: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
  labels:
    app: web
    remove-me: "yes"
data:
  mode: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: demo
stringData:
  password: hunter2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
    remove-me: "yes"
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.25
        env:
        - name: A
          value: "1"
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_a_manifest_then_apply_a_change() -> Result<()> {
    let c = Cluster::start().await?;
    let first = c.write("app.yaml", MANIFEST)?;
    let out = c.kubectl(&["apply", "-f", first.to_str().unwrap()]).await?;
    for line in [
        "namespace/demo created",
        "configmap/settings created",
        "secret/creds created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let secret = c.json(&["get", "secret", "creds", "-n", "demo"]).await?;
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
    let d = c.json(&["get", "deploy", "web", "-n", "demo"]).await?;
    assert_eq!(d["metadata"]["generation"], 1);

    // Change the image, add an env var, remove a label, change data.
    let changed = MANIFEST
        .replace("nginx:1.25", "nginx:1.27")
        .replace("    remove-me: \"yes\"\n", "")
        .replace(
            "          value: \"1\"\n",
            "          value: \"1\"\n        - name: B\n          value: \"2\"\n",
        )
        .replace("mode: blue", "mode: green");
    let second = c.write("app2.yaml", &changed)?;
    let diff = c.run(&["diff", "-f", second.to_str().unwrap()]).await?;
    let diff_out = String::from_utf8_lossy(&diff.stdout);
    assert!(
        diff_out.contains("+        image: nginx:1.27"),
        "{diff_out}{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    let out = c
        .kubectl(&["apply", "-f", second.to_str().unwrap()])
        .await?;
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");

    let d = c.json(&["get", "deploy", "web", "-n", "demo"]).await?;
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(
        container["env"],
        serde_json::json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    );
    assert_eq!(d["metadata"]["labels"], serde_json::json!({"app": "web"}));
    assert_eq!(d["metadata"]["generation"], 2);
    let cm = c.json(&["get", "cm", "settings", "-n", "demo"]).await?;
    assert_eq!(cm["data"]["mode"], "green");
    assert!(cm["metadata"]["labels"].get("remove-me").is_none());

    c.kubectl(&["scale", "deploy", "web", "-n", "demo", "--replicas=3"])
        .await?;
    let wide = c
        .kubectl(&["get", "deploy", "-n", "demo", "-o", "wide"])
        .await?;
    assert!(
        wide.contains("nginx:1.27") && wide.contains("0/3"),
        "{wide}"
    );
    let all = c.kubectl(&["get", "all", "-A"]).await?;
    assert!(
        all.contains("deployment.apps/web") && all.contains("service/web"),
        "{all}"
    );

    let out = c
        .kubectl(&["delete", "-f", second.to_str().unwrap(), "--wait=true"])
        .await?;
    assert!(out.contains("namespace \"demo\" deleted"), "{out}");
    let err = c.kubectl_fails(&["get", "ns", "demo"]).await?;
    assert!(err.contains("not found"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_changes_made_by_another_kubectl() -> Result<()> {
    let c = Cluster::start().await?;
    c.kubectl(&["create", "configmap", "watched", "--from-literal=k=1"])
        .await?;
    let mut watch = c
        .command_as(
            &c.kubeconfig,
            &[
                "get",
                "cm",
                "-w",
                "--output-watch-events",
                "-o",
                "custom-columns=EVENT:type,NAME:object.metadata.name,V:object.data.k",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = Vec::new();
        let mut changed = false;
        while let Some(line) = lines.next_line().await? {
            seen.push(line.clone());
            if line.contains("watched") && line.contains("ADDED") && !changed {
                changed = true;
                c.kubectl(&[
                    "patch",
                    "cm",
                    "watched",
                    "--type=merge",
                    "-p",
                    r#"{"data":{"k":"2"}}"#,
                ])
                .await?;
                c.kubectl(&["create", "configmap", "second"]).await?;
            }
            if line.contains("MODIFIED") && line.contains("watched") && line.contains('2') {
                c.kubectl(&["delete", "cm", "second"]).await?;
            }
            if line.contains("DELETED") && line.contains("second") {
                return Ok::<_, anyhow::Error>(seen);
            }
        }
        bail!("watch ended early: {seen:?}")
    })
    .await;
    let _ = watch.kill().await;
    let seen = result.context("watch did not report the changes within 20 s")??;
    assert!(
        seen.iter()
            .any(|l| l.contains("ADDED") && l.contains("second")),
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_and_only_masters_may_act() -> Result<()> {
    let c = Cluster::start().await?;
    let ca = c.write("ca.crt", c.pki.server_ca_pem())?;

    // No credentials: 401 everywhere but the health and version endpoints. (Over raw
    // HTTPS: kubectl answers a 401 by prompting for a password.)
    let (code, body) = c.raw_get("/api/v1/namespaces", None).await?;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["reason"], "Unauthorized");
    let (code, body) = c.raw_get("/healthz", None).await?;
    assert_eq!((code, body.as_str()), (200, Some("ok")));
    let (code, body) = c.raw_get("/version", None).await?;
    assert_eq!(code, 200);
    assert_eq!(body["major"], "1");
    // A kubeconfig without credentials, for the bearer tokens below.
    let anon = c.write(
        "anonymous.yaml",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: anon\ncurrent-context: c\nusers:\n- name: anon\n  user: {{}}\n",
            c.url,
            ca.display()
        ),
    )?;

    // A client certificate of a user outside system:masters: 403.
    let bob = c.pki.client_cert("bob", &["developers"])?;
    let bob_config = c.dir.path().join("bob.yaml");
    pki::write_kubeconfig(&bob_config, &c.url, c.pki.server_ca_pem(), &bob)?;
    let err = c
        .kubectl_fails_as(
            &bob_config,
            &["get", "--raw", "/api/v1/namespaces/default/configmaps"],
        )
        .await?;
    assert!(
        err.contains("Forbidden") || err.contains("forbidden"),
        "{err}"
    );
    let err = c
        .kubectl_fails_as(&bob_config, &["create", "configmap", "x"])
        .await?;
    assert!(err.contains("forbidden"), "{err}");

    // A ServiceAccount token authenticates (then is refused, not being a master); a
    // forged one does not.
    c.kubectl(&["create", "serviceaccount", "robot"]).await?;
    let sa = c.json(&["get", "sa", "robot"]).await?;
    let token = c.pki.service_accounts().issue(
        &pki::TokenRequest {
            namespace: "default".into(),
            service_account: pki::ObjectRef {
                name: "robot".into(),
                uid: sa["metadata"]["uid"].as_str().unwrap().into(),
            },
            audiences: vec![pki::DEFAULT_ISSUER.into()],
            expiration: Duration::from_secs(600),
            pod: None,
            node: None,
        },
        std::time::SystemTime::now(),
    )?;
    let err = c
        .kubectl_fails_as(
            &anon,
            &["--token", &token, "get", "--raw", "/api/v1/namespaces"],
        )
        .await?;
    assert!(err.contains("system:serviceaccount:default:robot"), "{err}");
    let (code, _) = c.raw_get("/api/v1/namespaces", Some("not.a.token")).await?;
    assert_eq!(code, 401);
    c.kubectl(&["delete", "serviceaccount", "robot"]).await?;
    let (code, _) = c.raw_get("/api/v1/namespaces", Some(&token)).await?;
    assert_eq!(code, 401, "a deleted account's token still works");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_limits_a_service_account_to_its_role() -> Result<()> {
    let c = Cluster::start_with(Options {
        rbac: true,
        ..Options::default()
    })
    .await?;
    assert_eq!(c.kubectl(&["auth", "can-i", "*", "*"]).await?.trim(), "yes");
    c.kubectl(&["create", "namespace", "team"]).await?;
    c.kubectl(&["create", "serviceaccount", "robot", "-n", "team"])
        .await?;
    c.kubectl(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "team",
        "--verb=get",
        "--resource=pods",
    ])
    .await?;
    c.kubectl(&[
        "create",
        "rolebinding",
        "robot-reads",
        "-n",
        "team",
        "--role=pod-reader",
        "--serviceaccount=team:robot",
    ])
    .await?;
    let token = c
        .kubectl(&["create", "token", "robot", "-n", "team"])
        .await?;
    let token = token.trim();
    let anon = c.write(
        "token.yaml",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: robot\ncurrent-context: c\nusers:\n- name: robot\n  user:\n    token: {token}\n",
            c.url,
            base64_encode(c.pki.server_ca_pem()),
        ),
    )?;
    let who = c
        .run_as(
            &anon,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        )
        .await?;
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        "system:serviceaccount:team:robot"
    );
    // Allowed: get one pod in team (it does not exist, so NotFound, not Forbidden).
    let err = c
        .kubectl_fails_as(&anon, &["get", "pod", "nothere", "-n", "team"])
        .await?;
    assert!(err.contains("NotFound"), "{err}");
    // Everything else is refused.
    for args in [
        &["get", "pods", "-n", "team"][..],
        &["get", "pod", "x", "-n", "default"],
        &["get", "configmaps", "-n", "team"],
        &["create", "configmap", "x", "-n", "team"],
        &["delete", "pod", "x", "-n", "team"],
    ] {
        let err = c.kubectl_fails_as(&anon, args).await?;
        assert!(
            err.contains("Forbidden") || err.contains("forbidden"),
            "{args:?}: {err}"
        );
    }
    let yes = c
        .run_as(&anon, &["auth", "can-i", "get", "pods", "-n", "team"])
        .await?;
    assert_eq!(String::from_utf8_lossy(&yes.stdout).trim(), "yes");
    let no = c
        .run_as(&anon, &["auth", "can-i", "list", "pods", "-n", "team"])
        .await?;
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    // Discovery is open to every authenticated user.
    let resources = c.run_as(&anon, &["api-resources", "-o", "name"]).await?;
    assert!(String::from_utf8_lossy(&resources.stdout)
        .lines()
        .any(|l| l == "pods"));
    Ok(())
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue], default: red}
          status:
            type: object
            properties:
              ready: {type: boolean}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_are_served_once_their_crd_exists() -> Result<()> {
    let c = Cluster::start().await?;
    let crd = c.write("crd.yaml", CRD)?;
    c.kubectl(&["apply", "-f", crd.to_str().unwrap()]).await?;
    c.kubectl(&[
        "wait",
        "--for=condition=established",
        "crd/widgets.example.com",
        "--timeout=10s",
    ])
    .await?;
    let widget = c.write("w.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n  junk: 1\n")?;
    c.kubectl(&["apply", "-f", widget.to_str().unwrap()])
        .await?;
    let w = c.json(&["get", "wd", "w1"]).await?;
    assert_eq!(
        w["spec"],
        serde_json::json!({"size": 3, "color": "red"}),
        "defaulted and pruned"
    );
    let table = c.kubectl(&["get", "widgets"]).await?;
    assert!(
        table.starts_with("NAME") && table.contains("SIZE") && table.contains("w1"),
        "{table}"
    );
    c.kubectl(&[
        "patch",
        "wd",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true}}"#,
    ])
    .await?;
    c.kubectl(&[
        "patch",
        "wd",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":4}}"#,
    ])
    .await?;
    let w = c.json(&["get", "wd", "w1"]).await?;
    assert_eq!(
        (
            w["status"]["ready"].as_bool(),
            w["spec"]["size"].as_i64(),
            w["metadata"]["generation"].as_i64()
        ),
        (Some(true), Some(4), Some(2))
    );
    let bad = c.write("bad.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: bad\nspec:\n  size: 0\n  color: green\n")?;
    let err = c
        .kubectl_fails(&["apply", "-f", bad.to_str().unwrap()])
        .await?;
    assert!(
        err.contains("spec.size") && err.contains("spec.color"),
        "{err}"
    );
    c.kubectl(&["delete", "crd", "widgets.example.com"]).await?;
    let err = c.kubectl_fails(&["get", "widgets.example.com"]).await?;
    assert!(
        err.contains("the server doesn't have a resource type") || err.contains("could not find"),
        "{err}"
    );
    Ok(())
}
