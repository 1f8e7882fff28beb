//! rustls configurations for the API server and its in-cluster clients, and the mapping from
//! a verified client certificate to a Kubernetes user (CN) and groups (O), as
//! kube-apiserver's x509 authenticator does it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{ClientCert, Error, Pki, Result, ServerCert};

/// ring, named explicitly rather than taken from the process default, so building a config
/// never depends on which provider another crate installed (or on none being installed).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(Error::Tls)?;
    Ok(Arc::new(roots))
}

impl Pki {
    /// A server config presenting `cert`, offering ALPN h2 and http/1.1. A client that
    /// presents a certificate must chain to the client CA (else the handshake fails); a
    /// client without one is let in, and the API server decides later between bearer
    /// token and anonymous, as kube-apiserver does.
    pub fn rustls_server_config(&self, cert: &ServerCert) -> Result<ServerConfig> {
        let verifier = WebPkiClientVerifier::builder_with_provider(
            roots(&self.client_ca.cert_der)?,
            provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Tls(rustls::Error::General(format!("client verifier: {e}"))))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(cert.cert_chain_der(), cert.key_der()?)
            .map_err(Error::Tls)?;
        config.alpn_protocols = alpn();
        Ok(config)
    }

    /// A client config that trusts only the server CA and, if given, presents `client`:
    /// for cloudlet's own components talking to the API server.
    pub fn rustls_client_config(&self, client: Option<&ClientCert>) -> Result<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .with_root_certificates(roots(&self.server_ca.cert_der)?);
        let mut config = match client {
            Some(client) => builder
                .with_client_auth_cert(client.cert_der(), client.key_der()?)
                .map_err(Error::Tls)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn();
        Ok(config)
    }
}

/// A user authenticated by a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The user (subject CN) and groups (subject O's, in order) of a certificate. It does not
/// verify anything: pass only certificates the TLS handshake already verified. `None` when
/// the certificate is unparsable or has no CN (kube-apiserver treats that as no identity).
pub fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?;
    if user.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some(Identity {
        user: user.to_string(),
        groups,
    })
}

/// The identity of a TLS peer, from `ServerConnection::peer_certificates()`: the leaf is first.
pub fn identity_from_peer(peer: Option<&[CertificateDer<'_>]>) -> Option<Identity> {
    identity_from_cert(peer?.first()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_needs_a_common_name() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let no_cn = pki.client_cert("", &["system:masters"]).unwrap();
        assert_eq!(identity_from_cert(&no_cn.cert_der()[0]), None);
        assert_eq!(identity_from_cert(b"not a certificate"), None);
        assert_eq!(identity_from_peer(None), None);
        let node = pki
            .client_cert("system:node:n1", &["system:nodes"])
            .unwrap();
        let id = identity_from_peer(Some(&node.cert_der())).unwrap();
        assert_eq!(id.user, "system:node:n1");
        assert_eq!(id.groups, ["system:nodes"]);
    }

    #[test]
    fn server_config_offers_h2_and_http1() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let cert = pki.server_cert(&["localhost".into()]).unwrap();
        let config = pki.rustls_server_config(&cert).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
