//! Server-side apply and managedFields: the real kubectl 1.32 against a server on
//! 127.0.0.1 (`common::Cluster`), plus raw requests in process for the error cases
//! kubectl never sends. kubectl is required: these tests fail, saying so, when it is missing.

mod common;

use std::sync::Arc;

use anyhow::{Context, Result};
use apiserver::auth::PeerIdentity;
use apiserver::{ApiServer, Config};
use axum::body::Body;
use axum::http::{Method, Request};
use common::{test_store, Cluster};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// The object as JSON, with its managedFields.
async fn get(c: &Cluster, args: &[&str]) -> Result<Value> {
    let mut args = args.to_vec();
    args.push("--show-managed-fields");
    c.json(&args).await
}

/// `path` as a kubectl argument.
fn arg(path: &std::path::Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// The entry of `manager` (and `operation`) in the object's managedFields.
fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

const APP: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: ssa
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: ssa
  labels:
    app: web
    remove-me: "yes"
data:
  mode: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ssa
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
"#;

/// The manifest after an edit: new image, one more env var, a label dropped.
fn edited() -> String {
    APP.replace("nginx:1.25", "nginx:1.27")
        .replace("    remove-me: \"yes\"\n", "")
        .replace(
            "          value: \"1\"\n",
            "          value: \"1\"\n        - name: B\n          value: \"2\"\n",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_creates_updates_and_resolves_conflicts() -> Result<()> {
    let c = Cluster::start().await?;
    let first = c.write("app.yaml", APP)?;
    let out = c
        .kubectl(&["apply", "--server-side", "-f", arg(&first)])
        .await?;
    for line in [
        "namespace/ssa serverside-applied",
        "configmap/settings serverside-applied",
        "deployment.apps/web serverside-applied",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let d = get(&c, &["get", "deploy", "web", "-n", "ssa"]).await?;
    let applied = entry(&d, "kubectl", "Apply").context("kubectl's Apply entry")?;
    assert_eq!(applied["apiVersion"], "apps/v1");
    assert_eq!(applied["fieldsType"], "FieldsV1");
    let fields = &applied["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    let web = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(web["."], json!({}), "{fields}");
    assert!(
        web["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"].is_object(),
        "{fields}"
    );
    // Defaults belong to nobody.
    assert!(fields["f:spec"].get("f:revisionHistoryLimit").is_none());
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);

    // Re-apply after an edit: updated, and the dropped label is gone.
    let second = c.write("app2.yaml", &edited())?;
    let out = c
        .kubectl(&["apply", "--server-side", "-f", arg(&second)])
        .await?;
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let d = get(&c, &["get", "deploy", "web", "-n", "ssa"]).await?;
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(
        container["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    );
    assert_eq!(d["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(d["metadata"]["generation"], 2);
    let cm = get(&c, &["get", "cm", "settings", "-n", "ssa"]).await?;
    assert_eq!(cm["metadata"]["labels"], json!({"app": "web"}));

    // Another manager changing kubectl's replicas conflicts...
    let other = c.write(
        "other.yaml",
        &edited().replace("replicas: 2", "replicas: 5"),
    )?;
    let err = c
        .kubectl_fails(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            arg(&other),
        ])
        .await?;
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{err}"
    );
    assert_eq!(
        get(&c, &["get", "deploy", "web", "-n", "ssa"]).await?["spec"]["replicas"],
        2
    );
    // ...unless it forces: then it owns them.
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        arg(&other),
    ])
    .await?;
    let d = get(&c, &["get", "deploy", "web", "-n", "ssa"]).await?;
    assert_eq!(d["spec"]["replicas"], 5);
    let mine = &entry(&d, "kubectl", "Apply").context("kubectl")?["fieldsV1"];
    assert!(mine["f:spec"].get("f:replicas").is_none(), "{mine}");
    let theirs = &entry(&d, "other", "Apply").context("other")?["fieldsV1"];
    assert_eq!(theirs["f:spec"]["f:replicas"], json!({}));

    let yaml = c
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-n",
            "ssa",
            "-o",
            "yaml",
            "--show-managed-fields",
        ])
        .await?;
    for text in [
        "managedFields:",
        "manager: other",
        "operation: Apply",
        "f:replicas: {}",
    ] {
        assert!(yaml.contains(text), "{yaml}");
    }

    // Server-side dry run changes nothing, even forced.
    let dry = c.write("dry.yaml", &edited().replace("nginx:1.27", "nginx:9"))?;
    c.kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "-f",
        arg(&dry),
    ])
    .await?;
    let after = get(&c, &["get", "deploy", "web", "-n", "ssa"]).await?;
    assert_eq!(after, d);

    // Imperative writes record Update entries named after the command.
    c.kubectl(&["label", "deploy", "web", "-n", "ssa", "tier=front"])
        .await?;
    let d = get(&c, &["get", "deploy", "web", "-n", "ssa"]).await?;
    let label = entry(&d, "kubectl-label", "Update").context("kubectl-label")?;
    assert_eq!(
        label["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
    );
    assert!(label["time"].is_string());
    Ok(())
}

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              parts:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  properties:
                    name: {type: string}
                    count: {type: integer}
"#;

const WIDGET: &str = r#"apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: default
spec:
  size: 3
  parts:
  - name: a
    count: 1
  - name: b
    count: 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_apply_by_their_schema_list_keys() -> Result<()> {
    let c = Cluster::start().await?;
    let crd = c.write("crd.yaml", CRD)?;
    c.kubectl(&["apply", "--server-side", "-f", arg(&crd)])
        .await?;
    c.kubectl(&[
        "wait",
        "--for=condition=established",
        "crd/widgets.example.com",
        "--timeout=10s",
    ])
    .await?;
    let w = c.write("w.yaml", WIDGET)?;
    let out = c
        .kubectl(&["apply", "--server-side", "-f", arg(&w)])
        .await?;
    assert!(
        out.contains("widget.example.com/w1 serverside-applied"),
        "{out}"
    );
    let obj = get(&c, &["get", "widgets", "w1"]).await?;
    let fields = &entry(&obj, "kubectl", "Apply").context("entry")?["fieldsV1"];
    assert_eq!(
        fields["f:spec"]["f:parts"]["k:{\"name\":\"b\"}"],
        json!({".": {}, "f:name": {}, "f:count": {}})
    );

    // Another manager adds a part; kubectl drops one of its own and changes a count.
    let extra = c.write(
        "extra.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  parts:\n  - name: c\n    count: 9\n",
    )?;
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=extra",
        "-f",
        arg(&extra),
    ])
    .await?;
    let changed = WIDGET
        .replace("  - name: a\n    count: 1\n", "")
        .replace("count: 2", "count: 3");
    let w2 = c.write("w2.yaml", &changed)?;
    c.kubectl(&["apply", "--server-side", "-f", arg(&w2)])
        .await?;
    let obj = get(&c, &["get", "widgets", "w1"]).await?;
    assert_eq!(
        obj["spec"]["parts"],
        json!([{"name": "b", "count": 3}, {"name": "c", "count": 9}])
    );
    assert_eq!(obj["spec"]["size"], 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_migrates_to_server_side_apply() -> Result<()> {
    let c = Cluster::start().await?;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\n  namespace: default\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    let first = c.write("cm.yaml", cm)?;
    c.kubectl(&["apply", "-f", arg(&first)]).await?;
    let obj = get(&c, &["get", "cm", "legacy"]).await?;
    assert!(
        entry(&obj, "kubectl-client-side-apply", "Update").is_some(),
        "{obj}"
    );

    // The first server-side apply changes a value client-side apply set: no conflict,
    // and kubectl moves the client-side manager's fields to its own.
    let second = c.write("cm2.yaml", &cm.replace("a: \"1\"", "a: \"9\""))?;
    let out = c
        .kubectl(&["apply", "--server-side", "-f", arg(&second)])
        .await?;
    assert!(out.contains("configmap/legacy serverside-applied"), "{out}");
    let obj = get(&c, &["get", "cm", "legacy"]).await?;
    assert_eq!(obj["data"], json!({"a": "9", "b": "2"}));
    assert!(
        entry(&obj, "kubectl-client-side-apply", "Update").is_none(),
        "{obj}"
    );
    assert!(entry(&obj, "kubectl", "Apply").is_some(), "{obj}");

    // From now on server-side apply removes what it no longer applies.
    let third = c.write("cm3.yaml", &cm.replace("  b: \"2\"\n", ""))?;
    c.kubectl(&["apply", "--server-side", "-f", arg(&third)])
        .await?;
    let obj = get(&c, &["get", "cm", "legacy"]).await?;
    assert_eq!(obj["data"], json!({"a": "1"}));
    Ok(())
}

/// Raw apply requests in process, for what kubectl never sends.
async fn raw(
    router: &axum::Router,
    method: Method,
    path: &str,
    ct: &str,
    body: &str,
) -> (u16, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .header("user-agent", "curl/8.0")
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(PeerIdentity(Some(pki::Identity {
            user: "admin".into(),
            groups: vec!["system:masters".into()],
        })));
    let resp = router.clone().oneshot(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_apply_requests_get_upstream_statuses_and_change_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Arc::new(pki::Pki::load_or_create(&dir.path().join("pki"))?);
    let (store, _etcd) = test_store(dir.path()).await?;
    let mut config = Config::new(store, pki);
    config.kubeconfig = None;
    let router = ApiServer::new(config).await?.router();
    const APPLY: &str = "application/apply-patch+yaml";
    let path = "/api/v1/namespaces/default/configmaps/c";
    let with_manager = format!("{path}?fieldManager=tool");
    let good = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n";

    let (code, err) = raw(&router, Method::PATCH, path, APPLY, good).await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (422, Some("Invalid")),
        "{err}"
    );
    assert_eq!(err["details"]["causes"][0]["field"], "fieldManager");
    for (body, want) in [
        ("{", "error decoding patch"),
        (
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: c\n",
            "invalid object type: /v1, Kind=Secret",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n",
            "does not match the name on the URL",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  managedFields: [{}]\n",
            "managedFields must be nil",
        ),
    ] {
        let (code, err) = raw(&router, Method::PATCH, &with_manager, APPLY, body).await;
        assert_eq!(code, 400, "{body}: {err}");
        assert!(
            err["message"].as_str().unwrap_or("").contains(want),
            "{err}"
        );
    }
    let (code, err) = raw(
        &router,
        Method::PATCH,
        &format!("{with_manager}&dryRun=All"),
        APPLY,
        good,
    )
    .await;
    assert_eq!(code, 201, "{err}");
    let (code, _) = raw(&router, Method::GET, path, "application/json", "").await;
    assert_eq!(
        code, 404,
        "nothing was created by the dry run or the bad requests"
    );

    // Created by apply, with the manager's Apply entry; JSON bodies work too.
    let (code, obj) = raw(&router, Method::PATCH, &with_manager, APPLY, good).await;
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "tool");
    let json_body =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"w"}}"#;
    let (code, obj) = raw(&router, Method::PATCH, &with_manager, APPLY, json_body).await;
    assert_eq!((code, obj["data"]["k"].as_str()), (200, Some("w")), "{obj}");

    // A merge patch without fieldManager is recorded under the User-Agent's product;
    // force is only for apply.
    let (code, obj) = raw(
        &router,
        Method::PATCH,
        path,
        "application/merge-patch+json",
        r#"{"data":{"x":"1"}}"#,
    )
    .await;
    assert_eq!(code, 200, "{obj}");
    let managers: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert_eq!(managers, ["tool", "curl"]);
    let (code, _) = raw(
        &router,
        Method::PATCH,
        &format!("{path}?force=true"),
        "application/merge-patch+json",
        "{}",
    )
    .await;
    assert_eq!(code, 422);
    // Garbage managedFields from a client are ignored.
    let (code, obj) = raw(
        &router,
        Method::PATCH,
        path,
        "application/merge-patch+json",
        r#"{"metadata":{"managedFields":[{"manager":"x"}]}}"#,
    )
    .await;
    assert_eq!(code, 200, "{obj}");
    assert_eq!(
        obj["metadata"]["managedFields"].as_array().unwrap().len(),
        2
    );
    Ok(())
}
