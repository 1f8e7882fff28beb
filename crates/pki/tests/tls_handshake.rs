//! Real TLS handshakes over loopback TCP between the API server's rustls config and clients:
//! a client certificate from the client CA yields an identity, no certificate is let in
//! anonymously, a certificate from another CA is refused. And kubectl itself (if installed)
//! talks to a server using the admin kubeconfig.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use pki::{identity_from_peer, Identity, Pki, San};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const LIMIT: Duration = Duration::from_secs(20);

fn sans() -> Vec<San> {
    ["localhost", "127.0.0.1", "::1", "kubernetes.default.svc"]
        .into_iter()
        .map(San::parse)
        .collect()
}

/// What the server saw of one connection.
struct Accepted {
    identity: Option<Identity>,
    alpn: Option<Vec<u8>>,
}

/// One connection: the server's view (or its handshake error) and what the client read.
async fn connect(
    server: &Pki,
    client_config: rustls::ClientConfig,
) -> Result<(Result<Accepted>, Result<Vec<u8>>)> {
    let config = server.rustls_server_config(&server.server_cert(&sans())?)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let (_, conn) = tls.get_ref();
        let accepted = Accepted {
            identity: identity_from_peer(conn.peer_certificates()),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        };
        let who = accepted
            .identity
            .as_ref()
            .map_or("anonymous", |id| id.user.as_str());
        tls.write_all(format!("hello {who}").as_bytes()).await?;
        tls.shutdown().await?;
        anyhow::Ok(accepted)
    });
    let client_side = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost")?;
        let mut tls = TlsConnector::from(Arc::new(client_config))
            .connect(name, tcp)
            .await?;
        let mut body = Vec::new();
        tls.read_to_end(&mut body).await?;
        anyhow::Ok(body)
    };
    let client = timeout(LIMIT, client_side)
        .await
        .context("client timed out")?;
    let server = timeout(LIMIT, server_side)
        .await
        .context("server timed out")?
        .context("server task")?;
    Ok((server, client))
}

#[tokio::test]
async fn client_certificate_identifies_the_user() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::load_or_create(dir.path())?;
    // Several groups: the subject rcgen cannot express, re-signed in subject.rs.
    let admin = pki.client_cert("system:admin", &["system:masters", "ops"])?;
    let (server, client) = connect(&pki, pki.rustls_client_config(Some(&admin))?).await?;
    let accepted = server?;
    assert_eq!(
        accepted.identity,
        Some(Identity {
            user: "system:admin".into(),
            groups: vec!["system:masters".into(), "ops".into()],
        })
    );
    assert_eq!(accepted.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(client?, b"hello system:admin");
    Ok(())
}

#[tokio::test]
async fn client_without_certificate_connects_anonymously() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::load_or_create(dir.path())?;
    let (server, client) = connect(&pki, pki.rustls_client_config(None)?).await?;
    assert_eq!(server?.identity, None);
    assert_eq!(client?, b"hello anonymous");
    Ok(())
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::load_or_create(dir.path())?;
    let other_dir = tempfile::tempdir()?;
    let other = Pki::load_or_create(other_dir.path())?;
    // Trusts our server CA, but presents a client certificate from another cluster.
    let forged = other.client_cert("system:admin", &["system:masters"])?;
    let (server, client) = connect(&pki, pki.rustls_client_config(Some(&forged))?).await?;
    let err = server
        .err()
        .ok_or_else(|| anyhow!("server accepted a foreign client cert"))?;
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "{err:#}"
    );
    assert!(client.is_err(), "client must see the handshake fail");

    // A serving certificate from the client CA's sibling is no server identity either: a
    // client of the other cluster refuses our server.
    let (server, client) = connect(&pki, other.rustls_client_config(None)?).await?;
    assert!(client.is_err());
    assert!(server.is_err());
    Ok(())
}

/// kubectl (Go's TLS stack) against a minimal HTTPS/1.1 server with our config: checks the
/// serving chain, IP SAN, PKCS#8 EC key in the kubeconfig and client certificate together.
#[tokio::test]
async fn kubectl_talks_to_the_server_with_the_admin_kubeconfig() -> Result<()> {
    let kubectl = Path::new("/usr/bin/kubectl");
    if !kubectl.exists() {
        eprintln!("skipped: /usr/bin/kubectl is not installed");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let pki = Pki::load_or_create(&dir.path().join("pki"))?;
    let mut config = pki.rustls_server_config(&pki.server_cert(&sans())?)?;
    // This toy server speaks only HTTP/1.1; the real API server serves both.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(async move {
        // kubectl may open more than one connection; serve a bounded number.
        for _ in 0..8 {
            let (tcp, _) = listener.accept().await?;
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let user = identity_from_peer(tls.get_ref().1.peer_certificates())
                .map_or("anonymous".to_string(), |id| id.user);
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tls.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let body = format!(r#"{{"gitVersion":"v1.32.0-cloudlet","user":"{user}"}}"#);
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(response.as_bytes()).await?;
            tls.shutdown().await?;
        }
        anyhow::Ok(())
    });
    let kubeconfig = dir.path().join("kube/config");
    pki.write_admin_kubeconfig(&kubeconfig, &format!("https://127.0.0.1:{port}"))?;
    let out = timeout(
        LIMIT,
        tokio::process::Command::new(kubectl)
            .args(["get", "--raw", "/version", "--kubeconfig"])
            .arg(&kubeconfig)
            .env("HOME", dir.path())
            .output(),
    )
    .await
    .context("kubectl timed out")??;
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""user":"system:admin""#), "{stdout}");
    Ok(())
}
