//! The REST semantics, in process (no TLS): requests go straight to the router with an
//! admin identity, against a SQLite store in a temp dir.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use apiserver::auth::PeerIdentity;
use apiserver::{ApiServer, Config};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use store::Store;
use tower::ServiceExt;

struct Api {
    router: Router,
    store: Arc<store::SqliteStore>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Result<Api> {
        Self::with_options(store::SqliteOptions::default()).await
    }

    async fn with_options(options: store::SqliteOptions) -> Result<Api> {
        let dir = tempfile::tempdir()?;
        let pki = Arc::new(pki::Pki::load_or_create(&dir.path().join("pki"))?);
        let store = store::SqliteStore::open_with(dir.path().join("state.db"), options)?;
        let mut config = Config::new(store.clone(), pki);
        config.kubeconfig = None;
        let server = ApiServer::new(config).await?;
        Ok(Api {
            router: server.router(),
            store,
            _dir: dir,
        })
    }

    fn request(method: Method, path: &str, ct: &str, body: Option<&Value>) -> Request<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", ct)
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        req.extensions_mut()
            .insert(PeerIdentity(Some(pki::Identity {
                user: "admin".into(),
                groups: vec!["system:masters".into()],
            })));
        req
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        ct: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let resp = self
            .router
            .clone()
            .oneshot(Self::request(method, path, ct, body))
            .await
            .unwrap();
        let code = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        (code, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, "application/json", None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, "application/json", Some(&body))
            .await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, "application/json", Some(&body))
            .await
    }

    async fn patch(&self, path: &str, ct: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PATCH, path, ct, Some(&body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, "application/json", None)
            .await
    }

    /// Starts a watch and returns a reader of its events.
    async fn watch(&self, path: &str) -> Events {
        let resp = self
            .router
            .clone()
            .oneshot(Self::request(Method::GET, path, "application/json", None))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        Events {
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }
}

struct Events {
    body: Body,
    buf: Vec<u8>,
}

impl Events {
    /// The next event, or None if none comes within 5 s or the stream ends.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("event is JSON"));
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .ok()??;
            if let Ok(data) = frame.unwrap().into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn create_get_and_system_fields() -> Result<()> {
    let api = Api::new().await?;
    let (code, obj) = api.post(CMS, cm("a", json!({"k": "v"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{obj}");
    assert_eq!(obj["metadata"]["namespace"], "default");
    assert!(obj["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(obj["metadata"]["creationTimestamp"].is_string());
    assert!(
        obj["metadata"]["generation"].is_null(),
        "configmaps have no generation"
    );
    let (code, got) = api.get(&format!("{CMS}/a")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got, obj);

    let (code, err) = api.post(CMS, cm("a", json!({}))).await;
    assert_eq!(
        (code.as_u16(), err["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    let (code, err) = api.post(CMS, cm("Bad_Name", json!({}))).await;
    assert_eq!(
        (code.as_u16(), err["reason"].as_str()),
        (422, Some("Invalid")),
        "{err}"
    );
    assert_eq!(err["details"]["causes"][0]["field"], "metadata.name");
    let (code, err) = api
        .post("/api/v1/namespaces/nope/configmaps", cm("a", json!({})))
        .await;
    assert_eq!(code.as_u16(), 404, "{err}");
    assert_eq!(err["message"], "namespaces \"nope\" not found");
    let (code, err) = api.get(&format!("{CMS}/missing")).await;
    assert_eq!((code.as_u16(), err["kind"].as_str()), (404, Some("Status")));
    let (code, _) = api.get("/apis/nothing.example.com/v1/things").await;
    assert_eq!(code.as_u16(), 404);

    let (code, obj) = api
        .post(
            CMS,
            json!({"metadata": {"generateName": "gen-"}, "data": {}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{obj}");
    assert!(obj["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("gen-"));
    assert_eq!(obj["kind"], "ConfigMap");

    let (code, d) = api
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{d}");
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["status"], json!({}));

    let (code, err) = api
        .send(
            Method::POST,
            CMS,
            "application/cbor",
            Some(&cm("p", json!({}))),
        )
        .await;
    assert_eq!(code.as_u16(), 415, "{err}");
    let (code, err) = api
        .send(Method::POST, CMS, "application/json", Some(&json!("x")))
        .await;
    assert_eq!(code.as_u16(), 400, "{err}");
    let (code, _) = api
        .post(
            "/api/v1/namespaces/default/secrets",
            cm("wrong-kind", json!({})),
        )
        .await;
    assert_eq!(code.as_u16(), 400);
    Ok(())
}

#[tokio::test]
async fn updates_conflict_on_stale_resource_versions() -> Result<()> {
    let api = Api::new().await?;
    let (_, created) = api.post(CMS, cm("a", json!({"k": "1"}))).await;
    let rv1 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut next = created.clone();
    next["data"]["k"] = json!("2");
    let (code, updated) = api.put(&format!("{CMS}/a"), next.clone()).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_ne!(
        updated["metadata"]["resourceVersion"].as_str().unwrap(),
        rv1
    );
    // The same body again carries the old resourceVersion: 409.
    let (code, err) = api.put(&format!("{CMS}/a"), next).await;
    assert_eq!(
        (code.as_u16(), err["reason"].as_str()),
        (409, Some("Conflict")),
        "{err}"
    );
    // An update without a resourceVersion is unconditional.
    let (code, _) = api
        .put(&format!("{CMS}/a"), cm("a", json!({"k": "3"})))
        .await;
    assert_eq!(code, StatusCode::OK);
    // A no-op update writes nothing.
    let (_, cur) = api.get(&format!("{CMS}/a")).await;
    let (_, same) = api.put(&format!("{CMS}/a"), cur.clone()).await;
    assert_eq!(
        same["metadata"]["resourceVersion"],
        cur["metadata"]["resourceVersion"]
    );
    // A patch carrying a stale resourceVersion conflicts; one without does not.
    let (code, _) = api
        .patch(
            &format!("{CMS}/a"),
            "application/merge-patch+json",
            json!({"metadata": {"resourceVersion": rv1}, "data": {"k": "4"}}),
        )
        .await;
    assert_eq!(code.as_u16(), 409);
    let (code, p) = api
        .patch(
            &format!("{CMS}/a"),
            "application/merge-patch+json",
            json!({"data": {"k": "4"}}),
        )
        .await;
    assert_eq!((code.as_u16(), p["data"]["k"].as_str()), (200, Some("4")));
    let (code, p) = api
        .patch(
            &format!("{CMS}/a"),
            "application/json-patch+json",
            json!([{"op": "add", "path": "/data/j", "value": "x"}]),
        )
        .await;
    assert_eq!((code.as_u16(), p["data"]["j"].as_str()), (200, Some("x")));
    let (code, p) = api
        .patch(
            &format!("{CMS}/a"),
            "application/strategic-merge-patch+json",
            json!({"data": {"j": null}}),
        )
        .await;
    assert_eq!(code.as_u16(), 200);
    assert!(p["data"]["j"].is_null());
    let (code, _) = api
        .patch(&format!("{CMS}/a"), "text/plain", json!({}))
        .await;
    assert_eq!(code.as_u16(), 415);
    Ok(())
}

#[tokio::test]
async fn generation_status_and_scale() -> Result<()> {
    let api = Api::new().await?;
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let (_, _created) = api
        .post(path, json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}}}))
        .await;
    let web = format!("{path}/web");
    // Labels are not spec: generation stays.
    let (_, d2) = api
        .patch(
            &web,
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"a": "b"}}}),
        )
        .await;
    assert_eq!(d2["metadata"]["generation"], 1);
    // Status through the main resource is ignored; through /status it is written.
    let (_, d3) = api
        .patch(
            &web,
            "application/merge-patch+json",
            json!({"status": {"replicas": 5}}),
        )
        .await;
    assert_eq!(d3["status"], json!({}));
    let (code, d4) = api
        .patch(
            &format!("{web}/status"),
            "application/merge-patch+json",
            json!({"status": {"replicas": 5}, "spec": {"replicas": 9}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{d4}");
    assert_eq!(
        (
            d4["status"]["replicas"].as_i64(),
            d4["spec"]["replicas"].as_i64()
        ),
        (Some(5), Some(1))
    );
    let (code, scale) = api.get(&format!("{web}/scale")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["status"]["selector"], "app=web");
    let (code, scale) = api
        .patch(
            &format!("{web}/scale"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(
        (code.as_u16(), scale["spec"]["replicas"].as_i64()),
        (200, Some(3))
    );
    let (_, d5) = api.get(&web).await;
    assert_eq!(
        (
            d5["spec"]["replicas"].as_i64(),
            d5["metadata"]["generation"].as_i64()
        ),
        (Some(3), Some(2))
    );
    let (code, _) = api.get(&format!("{CMS}/x/status")).await;
    assert_eq!(code.as_u16(), 404);
    Ok(())
}

#[tokio::test]
async fn lists_paginate_at_one_revision_and_filter() -> Result<()> {
    let api = Api::new().await?;
    for i in 0..7 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        let mut obj = cm(&format!("cm-{i}"), json!({}));
        obj["metadata"]["labels"] = json!({"tier": tier});
        assert_eq!(api.post(CMS, obj).await.0, StatusCode::CREATED);
    }
    let (_, first) = api.get(&format!("{CMS}?limit=3")).await;
    assert_eq!(first["kind"], "ConfigMapList");
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let token = first["metadata"]["continue"]
        .as_str()
        .context("continue")?
        .to_string();
    // A change after the first page does not show in the later pages.
    api.post(CMS, cm("cm-9", json!({}))).await;
    let mut names: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let mut token = Some(token);
    while let Some(t) = token {
        let (code, page) = api.get(&format!("{CMS}?limit=3&continue={t}")).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        assert_eq!(page["metadata"]["resourceVersion"].as_str().unwrap(), rv);
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        token = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert_eq!(names, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());

    let (_, odd) = api
        .get(&format!("{CMS}?labelSelector=tier%3Dodd&limit=2"))
        .await;
    assert_eq!(odd["items"].as_array().unwrap().len(), 2);
    assert!(odd["metadata"]["continue"].is_string());
    let (_, odd) = api
        .get(&format!("{CMS}?labelSelector=tier%20in%20(odd)"))
        .await;
    assert_eq!(odd["items"].as_array().unwrap().len(), 3);
    let (_, one) = api
        .get(&format!("{CMS}?fieldSelector=metadata.name%3Dcm-4"))
        .await;
    assert_eq!(one["items"][0]["metadata"]["name"], "cm-4");
    assert!(
        one["items"][0]["kind"].is_null(),
        "typed list items carry no kind"
    );
    let (code, _) = api.get(&format!("{CMS}?fieldSelector=spec.x%3D1")).await;
    assert_eq!(code.as_u16(), 400);
    let (_, all) = api.get("/api/v1/configmaps").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 8);
    let (code, _) = api.get(&format!("{CMS}?continue=garbage")).await;
    assert_eq!(code.as_u16(), 400);

    // After compaction, the old list revision is gone: 410.
    let now = api.store.revision().await?;
    api.store.compact(now).await?;
    let (_, first) = api.get(&format!("{CMS}?limit=1")).await;
    let stale = first["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, created) = api.post(CMS, cm("late", json!({}))).await;
    assert!(created["metadata"]["uid"].is_string());
    api.store.compact(api.store.revision().await?).await?;
    let (code, err) = api.get(&format!("{CMS}?limit=1&continue={stale}")).await;
    assert_eq!(
        (code.as_u16(), err["reason"].as_str()),
        (410, Some("Expired")),
        "{err}"
    );

    let (code, deleted) = api
        .send(
            Method::DELETE,
            &format!("{CMS}?labelSelector=tier%3Deven"),
            "application/json",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["items"].as_array().unwrap().len(), 4);
    let (_, left) = api.get(CMS).await;
    assert_eq!(left["items"].as_array().unwrap().len(), 5);
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_deletion() -> Result<()> {
    let api = Api::new().await?;
    let mut obj = cm("held", json!({}));
    obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.post(CMS, obj).await;
    let (code, marked) = api.delete(&format!("{CMS}/held")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let (code, _) = api.get(&format!("{CMS}/held")).await;
    assert_eq!(code, StatusCode::OK);
    let (code, err) = api
        .patch(
            &format!("{CMS}/held"),
            "application/merge-patch+json",
            json!({"metadata": {"finalizers": ["example.com/hold", "x/y"]}}),
        )
        .await;
    assert_eq!(code.as_u16(), 422, "{err}");
    // Removing the last finalizer finishes the deletion.
    let (code, _) = api
        .patch(
            &format!("{CMS}/held"),
            "application/merge-patch+json",
            json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = api.get(&format!("{CMS}/held")).await;
    assert_eq!(code.as_u16(), 404);

    api.post(CMS, cm("plain", json!({}))).await;
    let (code, status) = api.delete(&format!("{CMS}/plain")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (status["kind"].as_str(), status["status"].as_str()),
        (Some("Status"), Some("Success"))
    );
    let (code, _) = api.delete(&format!("{CMS}/plain")).await;
    assert_eq!(code.as_u16(), 404);

    // Namespaces: the default ones are protected; others take their content with them.
    let (code, _) = api.delete("/api/v1/namespaces/default").await;
    assert_eq!(code.as_u16(), 403);
    api.post("/api/v1/namespaces", json!({"metadata": {"name": "tmp"}}))
        .await;
    api.post("/api/v1/namespaces/tmp/configmaps", cm("inside", json!({})))
        .await;
    let (code, ns) = api.delete("/api/v1/namespaces/tmp").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let (code, _) = api
        .post("/api/v1/namespaces/tmp/configmaps", cm("late", json!({})))
        .await;
    assert!(code.as_u16() == 403 || code.as_u16() == 404);
    for _ in 0..50 {
        if api.get("/api/v1/namespaces/tmp").await.0.as_u16() == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.get("/api/v1/namespaces/tmp").await.0.as_u16(), 404);
    assert_eq!(
        api.get("/api/v1/namespaces/tmp/configmaps/inside")
            .await
            .0
            .as_u16(),
        404
    );
    Ok(())
}

#[tokio::test]
async fn watch_from_now_and_from_a_revision() -> Result<()> {
    let api = Api::new().await?;
    let (_, a) = api.post(CMS, cm("a", json!({"v": "1"}))).await;
    let rv_a = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // Unset resourceVersion: the current state first, then changes.
    let mut w = api.watch(&format!("{CMS}?watch=1")).await;
    let e = w.next().await.context("initial event")?;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("a"))
    );
    api.patch(
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        json!({"data": {"v": "2"}}),
    )
    .await;
    let e = w.next().await.context("modified")?;
    assert_eq!(
        (e["type"].as_str(), e["object"]["data"]["v"].as_str()),
        (Some("MODIFIED"), Some("2"))
    );
    let (_, b) = api.post(CMS, cm("b", json!({}))).await;
    let e = w.next().await.context("added")?;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("b"))
    );
    assert_eq!(
        e["object"]["metadata"]["resourceVersion"],
        b["metadata"]["resourceVersion"]
    );
    api.delete(&format!("{CMS}/b")).await;
    let e = w.next().await.context("deleted")?;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("b"))
    );

    // From a revision: exactly the changes after it, in order.
    let mut w = api
        .watch(&format!("{CMS}?watch=true&resourceVersion={rv_a}"))
        .await;
    let kinds: Vec<String> = [w.next().await, w.next().await, w.next().await]
        .into_iter()
        .map(|e| e.unwrap()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["MODIFIED", "ADDED", "DELETED"]);

    // With a label selector, objects entering and leaving the selection are ADDED/DELETED.
    let mut w = api
        .watch(&format!(
            "{CMS}?watch=1&labelSelector=x%3Dy&resourceVersion={}",
            api.store.revision().await?
        ))
        .await;
    api.patch(
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"x": "y"}}}),
    )
    .await;
    assert_eq!(w.next().await.unwrap()["type"], "ADDED");
    api.patch(
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": null}}),
    )
    .await;
    assert_eq!(w.next().await.unwrap()["type"], "DELETED");

    // From a compacted revision: one ERROR event with a 410 Status.
    api.store.compact(api.store.revision().await?).await?;
    let mut w = api
        .watch(&format!("{CMS}?watch=1&resourceVersion={rv_a}"))
        .await;
    let e = w.next().await.context("error event")?;
    assert_eq!(e["type"], "ERROR");
    assert_eq!(
        (e["object"]["code"].as_i64(), e["object"]["reason"].as_str()),
        (Some(410), Some("Expired"))
    );
    assert!(w.next().await.is_none(), "the watch ends after the error");
    Ok(())
}

#[tokio::test]
async fn discovery_and_tables() -> Result<()> {
    let api = Api::new().await?;
    let (code, apis) = api.get("/apis").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(apis["kind"], "APIGroupList");
    let (_, v1) = api.get("/api/v1").await;
    assert!(v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "pods/status"));
    let (code, _) = api.get("/apis/apps/v2").await;
    assert_eq!(code.as_u16(), 404);
    let req = {
        let mut r = Api::request(Method::GET, "/api/v1/namespaces", "", None);
        r.headers_mut().insert(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json".parse()?,
        );
        r
    };
    let resp = api.router.clone().oneshot(req).await?;
    let table: Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().unwrap().len(), 4);
    assert_eq!(table["rows"][0]["cells"][1], "Active");

    // No credentials: 401, except for health and version.
    let anonymous = |path: &str| Request::builder().uri(path).body(Body::empty()).unwrap();
    let resp = api
        .router
        .clone()
        .oneshot(anonymous("/api/v1/namespaces"))
        .await?;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = api.router.clone().oneshot(anonymous("/healthz")).await?;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = api.router.clone().oneshot(anonymous("/version")).await?;
    assert_eq!(resp.status().as_u16(), 200);
    Ok(())
}

#[tokio::test]
async fn bookmarks_timeouts_and_method_errors() -> Result<()> {
    let api = Api::with_options(store::SqliteOptions {
        progress_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await?;
    let rv = api.store.revision().await?;
    // Another resource moves the store on; this watch gets a BOOKMARK, not an event.
    let mut w = api
        .watch(&format!(
            "{CMS}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
        ))
        .await;
    api.post(
        "/api/v1/namespaces/default/secrets",
        json!({"metadata": {"name": "s"}}),
    )
    .await;
    let e = w.next().await.context("bookmark")?;
    assert_eq!(e["type"], "BOOKMARK", "{e}");
    assert_eq!(e["object"]["kind"], "ConfigMap");
    let brv: i64 = e["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()?;
    assert!(brv > rv);

    // timeoutSeconds ends the stream.
    let mut w = api
        .watch(&format!(
            "{CMS}?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        ))
        .await;
    let started = std::time::Instant::now();
    assert!(w.next().await.is_none());
    assert!(started.elapsed() < Duration::from_secs(4));

    // sendInitialEvents ends the initial state with an annotated bookmark.
    api.post(CMS, cm("one", json!({}))).await;
    let mut w = api.watch(&format!("{CMS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")).await;
    assert_eq!(w.next().await.unwrap()["type"], "ADDED");
    let e = w.next().await.unwrap();
    assert_eq!(e["type"], "BOOKMARK");
    assert_eq!(
        e["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // 405: no POST to a named object, no deletecollection of namespaces.
    let (code, err) = api.post(&format!("{CMS}/one"), cm("one", json!({}))).await;
    assert_eq!(
        (code.as_u16(), err["reason"].as_str()),
        (405, Some("MethodNotAllowed")),
        "{err}"
    );
    let (code, _) = api
        .send(
            Method::DELETE,
            "/api/v1/namespaces",
            "application/json",
            None,
        )
        .await;
    assert_eq!(code.as_u16(), 405);
    // 413 past the body limit, 400 for a malformed one, 404 for an unknown subresource.
    let big = cm("big", json!({"x": "y".repeat(4 * 1024 * 1024)}));
    let (code, err) = api.post(CMS, big).await;
    assert_eq!(code.as_u16(), 413, "{err}");
    let (code, _) = api.get(&format!("{CMS}/one/nothing")).await;
    assert_eq!(code.as_u16(), 404);
    let (_, list) = api.get(CMS).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "failed requests changed nothing"
    );
    Ok(())
}
