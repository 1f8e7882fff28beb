//! The cluster's public-key infrastructure, as k3s and kube-apiserver lay it out: a server CA
//! that signs the API server's serving certificate, a client CA that signs user and component
//! certificates (CN = user, O = groups), the ServiceAccount token signing key, the node join
//! token, and the key ring that encrypts Secrets at rest. Everything lives as files under one
//! directory (private keys mode 0600, every write atomic) so a restart finds the same identity.
//!
//! Crypto is `ring` throughout (rcgen, rustls, x509-parser verification, AES-GCM, ECDSA), the
//! provider the rest of the workspace uses.

mod ca;
mod fsutil;
mod kubeconfig;
mod secrets;
mod serving;
mod subject;
mod tls;
mod token;

use std::path::PathBuf;

pub use ca::{ClientCert, Pki};
pub use kubeconfig::{
    client_tls, render_kubeconfig, write_kubeconfig, AuthInfo, Cluster, Context, Kubeconfig,
    NamedAuthInfo, NamedCluster, NamedContext, KUBECONFIG_NAME,
};
pub use secrets::{SecretEncryption, ENCRYPTION_PREFIX};
pub use serving::{San, ServerCert};
pub use tls::{identity_from_cert, identity_from_peer, Identity};
pub use token::{
    Claims, KubernetesClaims, ObjectRef, ServiceAccountTokens, TokenError, TokenRequest,
    DEFAULT_ISSUER,
};

/// Errors from creating, loading and using the PKI. Token verification has its own
/// [`TokenError`], since the API server maps those to 401 rather than to a server fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{what}")]
    Cert {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    /// ring reports failures as an opaque `Unspecified`, so only the operation is known.
    #[error("{0}")]
    Crypto(&'static str),
    #[error("build tls config")]
    Tls(#[source] rustls::Error),
    #[error("decrypt secret with key {key:?}: data is corrupt or was tampered with")]
    Decrypt { key: String },
    #[error("decrypt secret: unknown encryption key {0:?}")]
    UnknownKey(String),
    #[error("decrypt secret: unsupported encryption provider in prefix {0:?}")]
    UnsupportedProvider(String),
    #[error("render kubeconfig")]
    Yaml(#[source] serde_yaml_ng::Error),
    #[error("encode {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
