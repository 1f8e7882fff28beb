//! The API server's load generator (`bench/run.sh`): starts the server on loopback over the
//! store named on the command line, then drives it over real HTTPS with an admin client
//! certificate and prints one markdown table row per measure:
//! single-object creates per second with their p50/p99 latency (`WORKERS` clients), LIST of
//! `PODS` pods (p50/p99 of 20), and one change fanned out to 100 watchers (p99 delay).
//!
//! `cargo run --release -p cloudlet-apiserver --example loadgen -- sqlite|etcd://host:port`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use tokio::net::TcpStream;

type Sender = SendRequest<Full<Bytes>>;

struct Target {
    addr: std::net::SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Target {
    async fn connect(&self) -> anyhow::Result<Sender> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let tls = self.tls.connect(name, tcp).await?;
        let (send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("loadgen: connection: {e:?}");
            }
        });
        Ok(send)
    }
}

async fn call(
    s: &mut Sender,
    method: &str,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<Bytes> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    s.ready().await?;
    let resp =
        anyhow::Context::with_context(s.send_request(req).await, || format!("{method} {path}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "{method} {path}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(body)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// `workers` clients creating `make(i)` objects at `path` until `total` are made; latencies.
async fn create_many(
    target: &Arc<Target>,
    workers: usize,
    total: usize,
    path: &'static str,
    make: fn(usize) -> String,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (target, next) = (target.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = target.connect().await?;
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(lat);
                }
                let t = Instant::now();
                call(&mut s, "POST", path, Some(make(i))).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok((all, start.elapsed()))
}

fn configmap(i: usize) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i}"}},"data":{{"k":"v"}}}}"#
    )
}

fn pod(i: usize) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"pod-{i}","labels":{{"app":"load"}}}},"spec":{{"containers":[{{"name":"c","image":"busybox"}}]}}}}"#
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend = std::env::args().nth(1).unwrap_or_else(|| "sqlite".into());
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (workers, creates, pods) = (
        env("WORKERS", 16),
        env("CREATES", 10_000),
        env("PODS", 10_000),
    );

    let dir = tempfile::tempdir()?;
    let pki = Arc::new(pki::Pki::load_or_create(&dir.path().join("pki"))?);
    let endpoint = (backend != "sqlite").then_some(backend.as_str());
    let store = store::endpoint::open(endpoint, dir.path(), None).await?;
    let mut config = apiserver::Config::new(store, pki.clone());
    config.bind = ([127, 0, 0, 1], 0).into();
    config.kubeconfig = None;
    let server = apiserver::ApiServer::new(config).await?;
    let listener = server.bind().await?;
    let addr = listener.local_addr()?;
    tokio::spawn(server.serve(listener));
    let admin = pki.client_cert("system:admin", &["system:masters"])?;
    let mut tls = pki.rustls_client_config(Some(&admin))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let target = Arc::new(Target {
        addr,
        tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
    });

    let (lat, took) = create_many(
        &target,
        workers,
        creates,
        "/api/v1/namespaces/default/configmaps",
        configmap,
    )
    .await?;
    println!(
        "| {backend} | creates/s ({workers} clients) | {:.0} | p50 {:.2} ms, p99 {:.2} ms |",
        lat.len() as f64 / took.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    create_many(
        &target,
        workers,
        pods,
        "/api/v1/namespaces/default/pods",
        pod,
    )
    .await?;
    let mut s = target.connect().await?;
    let mut lists = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let body = call(&mut s, "GET", "/api/v1/namespaces/default/pods", None).await?;
        lists.push(t.elapsed());
        anyhow::ensure!(body.len() > pods * 100, "short list");
    }
    lists.sort();
    println!(
        "| {backend} | LIST of {pods} pods | p50 {:.1} ms | p99 {:.1} ms |",
        percentile(&lists, 0.5),
        percentile(&lists, 0.99)
    );

    // 100 watchers from the current revision; each change is stamped when it is sent.
    let rv: serde_json::Value = serde_json::from_slice(
        &call(
            &mut s,
            "GET",
            "/api/v1/namespaces/default/configmaps?limit=1",
            None,
        )
        .await?,
    )?;
    let rv = rv["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let changes = 20usize;
    let sent: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; changes]));
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let (target, rv, sent) = (target.clone(), rv.clone(), sent.clone());
        watchers.push(tokio::spawn(async move {
            let mut s = target.connect().await?;
            let path =
                format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}");
            let req = hyper::Request::get(path)
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))?;
            s.ready().await?;
            let mut body = s.send_request(req).await?.into_body();
            let (mut delays, mut buf) = (Vec::new(), Vec::<u8>::new());
            while delays.len() < changes {
                let Some(frame) = body.frame().await else {
                    break;
                };
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let ev: serde_json::Value = serde_json::from_slice(&line)?;
                    let name = ev["object"]["metadata"]["name"].as_str().unwrap_or("");
                    if let Some(i) = name
                        .strip_prefix("fan-")
                        .and_then(|i| i.parse::<usize>().ok())
                    {
                        if let Some(t) = sent.lock().unwrap()[i] {
                            delays.push(t.elapsed());
                        }
                    }
                }
            }
            anyhow::Ok(delays)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..changes {
        sent.lock().unwrap()[i] = Some(Instant::now());
        let body =
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"fan-{i}"}}}}"#);
        call(
            &mut s,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(body),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut delays = Vec::new();
    for w in watchers {
        delays.extend(tokio::time::timeout(Duration::from_secs(30), w).await???);
    }
    delays.sort();
    anyhow::ensure!(
        delays.len() == 100 * changes,
        "{} of {} events delivered",
        delays.len(),
        100 * changes
    );
    println!(
        "| {backend} | watch fan-out: {changes} changes to 100 watchers, all {} delivered | p50 {:.1} ms | p99 {:.1} ms |",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99)
    );
    Ok(())
}
