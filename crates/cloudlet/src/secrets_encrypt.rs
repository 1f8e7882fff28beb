//! `cloudlet secrets-encrypt status|rotate`: asks the running server, as k3s' command of the
//! same name asks its server. The rotation runs inside the server because only the process
//! that writes Secrets can make sure none is still being written with the old key when it
//! drops that key (see the API server's `encrypt` module). Credentials and address come
//! from the admin kubeconfig the server writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// The admin kubeconfig `cloudlet server` wrote (its server, CA and client certificate).
    #[arg(long, default_value = apiserver::DEFAULT_KUBECONFIG, global = true)]
    kubeconfig: PathBuf,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Print the encryption keys and whether every Secret uses the current one.
    Status,
    /// Add a new key, re-encrypt every Secret with it, then remove the old keys.
    #[command(alias = "rotate-keys")]
    Rotate,
}

pub fn run(args: Args) -> i32 {
    crate::block_on(tokio::runtime::Builder::new_current_thread(), async {
        match execute(args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cloudlet secrets-encrypt: {e:#}");
                1
            }
        }
    })
}

async fn execute(args: Args) -> Result<()> {
    match args.action {
        Action::Status => {
            let s = call(&args.kubeconfig, "GET", "/v1-cloudlet/encrypt/status").await?;
            let keys: Vec<&str> = s["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!("Encryption provider: aesgcm");
            println!("Current key: {}", s["currentKey"].as_str().unwrap_or(""));
            println!("Keys: {}", keys.join(", "));
            let by_key: Vec<String> = s["secretsByKey"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            println!("Secrets: {} ({})", s["secrets"], by_key.join(", "));
            let current = s["allCurrent"].as_bool().unwrap_or(false);
            println!(
                "All secrets use the current key: {}",
                if current { "yes" } else { "no" }
            );
        }
        Action::Rotate => {
            let r = call(&args.kubeconfig, "POST", "/v1-cloudlet/encrypt/rotate").await?;
            println!("New key: {}", r["newKey"].as_str().unwrap_or(""));
            println!("Re-encrypted secrets: {}", r["reencrypted"]);
            let removed: Vec<&str> = r["removedKeys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!("Removed keys: {}", removed.join(", "));
        }
    }
    Ok(())
}

/// One HTTPS request to the API server; the JSON answer, or its Status message as the error.
async fn call(kubeconfig: &Path, method: &str, path: &str) -> Result<Value> {
    let (server, tls) = pki::client_tls(kubeconfig)
        .with_context(|| format!("kubeconfig {}", kubeconfig.display()))?;
    let authority = server
        .strip_prefix("https://")
        .with_context(|| format!("server {server:?} is not an https:// URL"))?
        .trim_end_matches('/')
        .to_string();
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => authority.as_str(),
    };
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .with_context(|| format!("server name {host:?}"))?;
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.clone()
    } else {
        format!("{authority}:443")
    };
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connect to {server} (is cloudlet server running?)"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {server}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", &authority)
        .header("user-agent", "cloudlet-secrets-encrypt")
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("{method} {server}{path}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let value: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).trim().to_string()));
    if !status.is_success() {
        let message = value["message"].as_str().map(str::to_string);
        bail!(
            "{method} {path}: {status}: {}",
            message.unwrap_or_else(|| value.to_string())
        );
    }
    Ok(value)
}
