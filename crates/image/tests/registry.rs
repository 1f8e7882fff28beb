//! Push and pull against Debian's docker-registry (distribution 2.x) on loopback.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use image::{ImageStore, Progress, RemoveAction};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A registry process on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> Option<Registry> {
    start_registry_with("")
}

/// `extra` is appended to the registry's YAML config.
fn start_registry_with(extra: &str) -> Option<Registry> {
    if !Path::new(REGISTRY_BIN).exists() {
        eprintln!("skipping: {REGISTRY_BIN} is missing (install docker-registry)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{extra}",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reg = Registry {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&reg.addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "registry did not start on {}",
            reg.addr
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(reg)
}

fn collect() -> (Mutex<Vec<Progress>>,) {
    (Mutex::new(Vec::new()),)
}

fn statuses(events: &Mutex<Vec<Progress>>) -> Vec<String> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.status.clone())
        .collect()
}

fn never(_: &str) -> bool {
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_remove_pull_by_tag_and_digest() {
    let Some(reg) = start_registry() else { return };
    let (_d, s) = store();
    let name = format!("{}/demo/busybox:1", reg.addr);
    let Some(img) = import_busybox(&s, &name) else {
        return;
    };

    let (events,) = collect();
    let digest = s
        .push(&name, None, &|p| events.lock().unwrap().push(p))
        .await
        .unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let st = statuses(&events);
    assert!(st.contains(&"Preparing".to_string()), "{st:?}");
    assert!(st.contains(&"Pushed".to_string()), "{st:?}");
    let pushed = s.resolve(&name).unwrap();
    assert_eq!(
        pushed.repo_digests,
        vec![format!("{}/demo/busybox@{digest}", reg.addr)]
    );

    // A second push sends nothing again.
    let (events,) = collect();
    assert_eq!(
        s.push(&name, None, &|p| events.lock().unwrap().push(p))
            .await
            .unwrap(),
        digest
    );
    let st = statuses(&events);
    assert!(st.contains(&"Layer already exists".to_string()), "{st:?}");
    assert!(!st.contains(&"Pushed".to_string()), "{st:?}");

    // Remove locally, pull back by tag.
    let acts = s.remove(&name, false, &never).unwrap();
    assert!(
        acts.contains(&RemoveAction::Deleted(img.id.clone())),
        "{acts:?}"
    );
    assert!(s.resolve(&name).unwrap_err().is_not_found());
    let (events,) = collect();
    let pulled = s
        .pull(&name, None, &|p| events.lock().unwrap().push(p))
        .await
        .unwrap();
    assert_eq!(pulled.id, img.id);
    assert_eq!(pulled.manifest_digest.as_deref(), Some(digest.as_str()));
    assert_eq!(pulled.repo_tags, vec![name.clone()]);
    assert_eq!(
        pulled.repo_digests,
        vec![format!("{}/demo/busybox@{digest}", reg.addr)]
    );
    let st = statuses(&events);
    for want in [
        "Pulling fs layer",
        "Downloading",
        "Verifying Checksum",
        "Download complete",
        "Extracting",
        "Pull complete",
    ] {
        assert!(st.contains(&want.to_string()), "{want} missing from {st:?}");
    }
    assert!(events.lock().unwrap().iter().all(|p| p.id.len() == 12));
    assert!(s.layers(&pulled).unwrap()[0].join("bin/busybox").is_file());

    // By digest, into a fresh store.
    let (_d2, s2) = store();
    let by_digest = format!("{}/demo/busybox@{digest}", reg.addr);
    let img2 = s2.pull(&by_digest, None, &|_| {}).await.unwrap();
    assert_eq!(img2.id, img.id);
    assert!(img2.repo_tags.is_empty());
    assert_eq!(s2.resolve(&by_digest).unwrap().id, img.id);
    // Pulling again finds everything present.
    let (events,) = collect();
    s2.pull(&by_digest, None, &|p| events.lock().unwrap().push(p))
        .await
        .unwrap();
    assert!(statuses(&events)
        .iter()
        .all(|s| s == "Already exists" || s == "Extracting" || s == "Pull complete"));

    // Unknown tags are NotFound.
    let err = s2
        .pull(&format!("{}/demo/busybox:nope", reg.addr), None, &|_| {})
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    // A manifest list: linux/amd64 is chosen; the repo digest is the list's.
    let other_name = format!("{}/demo/busybox:arm", reg.addr);
    s2.import(
        &mut &Tar::new().file("arm", b"not this one").build()[..],
        image::ImportOptions {
            reference: Some(other_name.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let other = s2.push(&other_name, None, &|_| {}).await.unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other, "size": 1,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 1,
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    });
    let index = serde_json::to_vec(&index).unwrap();
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let multi: oci_client::Reference = format!("{}/demo/busybox:multi", reg.addr).parse().unwrap();
    client
        .push_manifest_raw(
            &multi,
            index.clone(),
            http::HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
        )
        .await
        .unwrap();
    let (_d3, s3) = store();
    let m = s3
        .pull(&format!("{}/demo/busybox:multi", reg.addr), None, &|_| {})
        .await
        .unwrap();
    assert_eq!(m.id, img.id);
    assert_eq!(m.manifest_digest.as_deref(), Some(digest.as_str()));
    use sha2::Digest;
    let index_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&index)));
    assert_eq!(
        m.repo_digests,
        vec![format!("{}/demo/busybox@{index_digest}", reg.addr)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_share_the_work() {
    let Some(reg) = start_registry() else { return };
    let (_d, src) = store();
    let name = format!("{}/demo/twice:latest", reg.addr);
    let Some(img) = import_busybox(&src, &name) else {
        return;
    };
    src.push(&name, None, &|_| {}).await.unwrap();

    let (_d2, s) = store();
    let (a, b) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
    let s2 = s.clone();
    let fa = |p: Progress| a.lock().unwrap().push(p);
    let fb = |p: Progress| b.lock().unwrap().push(p);
    let (ra, rb) = tokio::join!(s.pull(&name, None, &fa), s2.pull(&name, None, &fb));
    assert_eq!(ra.unwrap().id, img.id);
    assert_eq!(rb.unwrap().id, img.id);
    let downloaded = |e: &Mutex<Vec<Progress>>| statuses(e).contains(&"Downloading".to_string());
    assert!(
        downloaded(&a) != downloaded(&b),
        "exactly one pull should download: {:?} / {:?}",
        statuses(&a),
        statuses(&b)
    );
    assert_eq!(s.list().unwrap().len(), 1);
    assert_eq!(
        tree(&s.root().join("snapshots"))
            .iter()
            .filter(|p| !p.contains('/'))
            .count(),
        1
    );

    // And in separate tasks on the runtime.
    let (_d3, s3) = store();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let s = s3.clone();
            let name = name.clone();
            tokio::spawn(async move { s.pull(&name, None, &|_| {}).await.map(|i| i.id) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), img.id);
    }
}

#[test]
fn pull_future_is_send() {
    fn assert_send<T: Send>(_: T) {}
    fn noop(_: Progress) {}
    let (_d, s) = store();
    assert_send(s.pull("x", None, &noop));
    assert_send(s.push("x", None, &noop));
    fn assert_sync<T: Send + Sync + Clone>(_: &T) {}
    assert_sync::<ImageStore>(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth() {
    let auth_dir = tempfile::tempdir().unwrap();
    let htpasswd = auth_dir.path().join("htpasswd");
    // bcrypt (cost 4) of "s3cret"; the salt is inside, so a fixed hash is fine.
    std::fs::write(
        &htpasswd,
        "tester:$2b$04$9OaJRcu/E17oxGeAuHuNeuIUID84p8xpnJZrCUgzML16zG0Swmc5O\n",
    )
    .unwrap();
    let extra = format!(
        "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
        htpasswd.display()
    );
    let Some(reg) = start_registry_with(&extra) else {
        return;
    };
    let (_d, s) = store();
    let name = format!("{}/private/app:1", reg.addr);
    let img = s
        .import(
            &mut &Tar::new().file("secret", b"x").build()[..],
            image::ImportOptions {
                reference: Some(name.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    let creds = || {
        Some(image::Credentials {
            username: "tester".into(),
            password: "s3cret".into(),
        })
    };
    let err = s.push(&name, None, &|_| {}).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let bad = Some(image::Credentials {
        username: "tester".into(),
        password: "nope".into(),
    });
    let err = s.push(&name, bad, &|_| {}).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let digest = s.push(&name, creds(), &|_| {}).await.unwrap();
    let (_d2, s2) = store();
    let err = s2.pull(&name, None, &|_| {}).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    let pulled = s2.pull(&name, creds(), &|_| {}).await.unwrap();
    assert_eq!(pulled.id, img.id);
    assert_eq!(pulled.manifest_digest, Some(digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_layers_are_streamed() {
    let Some(reg) = start_registry() else { return };
    let (_d, s) = store();
    let name = format!("{}/demo/big:1", reg.addr);
    let big: Vec<u8> = (0..18u32 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let img = s
        .import(
            &mut &Tar::new().file("big", &big).build()[..],
            image::ImportOptions {
                reference: Some(name.clone()),
                ..Default::default()
            },
        )
        .unwrap();
    let (events,) = collect();
    let digest = s
        .push(&name, None, &|p| events.lock().unwrap().push(p))
        .await
        .unwrap();
    assert!(statuses(&events).contains(&"Pushed".to_string()));
    let (_d2, s2) = store();
    let pulled = s2.pull(&name, None, &|_| {}).await.unwrap();
    assert_eq!(pulled.id, img.id);
    assert_eq!(pulled.manifest_digest, Some(digest));
    let fs = &s2.layers(&pulled).unwrap()[0];
    assert_eq!(
        std::fs::metadata(fs.join("big")).unwrap().len(),
        big.len() as u64
    );
}
