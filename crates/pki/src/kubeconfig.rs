//! kubectl's kubeconfig: the admin one that k3s writes at start (cluster, user and context all
//! named `default`, credentials embedded as base64), and the types to read one back.
//!
//! Written with serde_yaml_ng (the maintained fork of the archived serde_yaml) from typed
//! structs, so quoting of URLs and names is always right; kubectl reads it as any YAML.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, write_atomic, PRIVATE};
use crate::{ClientCert, Error, Pki, Result};

/// The cluster, user and context name, as in k3s' `k3s.yaml`.
pub const KUBECONFIG_NAME: &str = "default";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<NamedCluster>,
    pub contexts: Vec<NamedContext>,
    pub current_context: String,
    #[serde(default)]
    pub preferences: serde_json::Map<String, serde_json::Value>,
    pub users: Vec<NamedAuthInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    pub server: String,
    pub certificate_authority_data: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    pub user: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedAuthInfo {
    pub name: String,
    pub user: AuthInfo,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AuthInfo {
    pub client_certificate_data: String,
    pub client_key_data: String,
}

/// A kubeconfig for `server` (e.g. `https://127.0.0.1:6443`) that trusts `ca_pem` and
/// authenticates with `client`.
pub fn render_kubeconfig(server: &str, ca_pem: &str, client: &ClientCert) -> Result<String> {
    let name = KUBECONFIG_NAME.to_string();
    let config = Kubeconfig {
        api_version: "v1".into(),
        kind: "Config".into(),
        clusters: vec![NamedCluster {
            name: name.clone(),
            cluster: Cluster {
                server: server.into(),
                certificate_authority_data: STANDARD.encode(ca_pem),
            },
        }],
        contexts: vec![NamedContext {
            name: name.clone(),
            context: Context {
                cluster: name.clone(),
                user: name.clone(),
            },
        }],
        current_context: name.clone(),
        preferences: Default::default(),
        users: vec![NamedAuthInfo {
            name,
            user: AuthInfo {
                client_certificate_data: STANDARD.encode(&client.cert_pem),
                client_key_data: STANDARD.encode(&client.key_pem),
            },
        }],
    };
    serde_yaml_ng::to_string(&config).map_err(Error::Yaml)
}

/// Writes [`render_kubeconfig`] to `path` atomically, mode 0600, creating parent directories.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    client: &ClientCert,
) -> Result<()> {
    let yaml = render_kubeconfig(server, ca_pem, client)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::ensure_dir(parent, 0o755)?;
    }
    write_atomic(path, yaml.as_bytes(), PRIVATE)
}

impl Pki {
    /// Writes the admin kubeconfig (user `system:admin` in group `system:masters`, a fresh
    /// one-year certificate) for `server` to `path`.
    pub fn write_admin_kubeconfig(&self, path: &Path, server: &str) -> Result<()> {
        let admin = self.client_cert("system:admin", &["system:masters"])?;
        write_kubeconfig(path, server, self.server_ca_pem(), &admin)
    }
}

/// The server URL of a kubeconfig's current context and a TLS client config that trusts its
/// CA and presents its client certificate (what an admin command needs to call the server).
pub fn client_tls(path: &Path) -> Result<(String, rustls::ClientConfig)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |reason: String| Error::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let config: Kubeconfig = serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == config.current_context)
        .or(config.contexts.first())
        .ok_or_else(|| invalid("no context".into()))?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.context.cluster)
        .ok_or_else(|| invalid("the context names no cluster in it".into()))?;
    let user = config
        .users
        .iter()
        .find(|u| u.name == context.context.user)
        .ok_or_else(|| invalid("the context names no user in it".into()))?;
    let pem = |data: &str, what: &str| {
        STANDARD
            .decode(data.trim())
            .map_err(|e| invalid(format!("{what}: {e}")))
    };
    let mut roots = rustls::RootCertStore::empty();
    let ca = pem(
        &cluster.cluster.certificate_authority_data,
        "certificate-authority-data",
    )?;
    for cert in CertificateDer::pem_slice_iter(&ca) {
        let cert = cert.map_err(|e| invalid(format!("certificate-authority-data: {e}")))?;
        roots.add(cert).map_err(Error::Tls)?;
    }
    let certs = CertificateDer::pem_slice_iter(&pem(
        &user.user.client_certificate_data,
        "client-certificate-data",
    )?)
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(|e| invalid(format!("client-certificate-data: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&pem(&user.user.client_key_data, "client-key-data")?)
        .map_err(|e| invalid(format!("client-key-data: {e}")))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(Error::Tls)?
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .map_err(Error::Tls)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((cluster.cluster.server.clone(), tls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn admin_kubeconfig_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&dir.path().join("pki")).unwrap();
        let path = dir.path().join("etc/cloudlet/admin.yaml");
        pki.write_admin_kubeconfig(&path, "https://127.0.0.1:6443")
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let text = std::fs::read_to_string(&path).unwrap();
        let config: Kubeconfig = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(config.current_context, "default");
        assert_eq!(config.clusters[0].cluster.server, "https://127.0.0.1:6443");
        assert_eq!(config.contexts[0].context.user, "default");
        let ca = STANDARD
            .decode(&config.clusters[0].cluster.certificate_authority_data)
            .unwrap();
        assert_eq!(ca, pki.server_ca_pem().as_bytes());
        let cert_pem = STANDARD
            .decode(&config.users[0].user.client_certificate_data)
            .unwrap();
        let cert = ClientCert {
            cert_pem: String::from_utf8(cert_pem).unwrap(),
            key_pem: String::new(),
        };
        let id = crate::identity_from_cert(&cert.cert_der()[0]).unwrap();
        assert_eq!(id.user, "system:admin");
        assert_eq!(id.groups, ["system:masters"]);
        for key in [
            "apiVersion:",
            "current-context:",
            "certificate-authority-data:",
            "client-key-data:",
        ] {
            assert!(text.contains(key), "{key} in\n{text}");
        }
    }

    #[test]
    fn kubectl_accepts_the_kubeconfig() {
        let kubectl = Path::new("/usr/bin/kubectl");
        if !kubectl.exists() {
            eprintln!("skipped: /usr/bin/kubectl is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let path = dir.path().join("kubeconfig");
        pki.write_admin_kubeconfig(&path, "https://127.0.0.1:6443")
            .unwrap();
        let out = std::process::Command::new(kubectl)
            .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(view["current-context"], "default");
        assert_eq!(
            view["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        let ours: Kubeconfig =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let user = &view["users"][0]["user"];
        assert_eq!(
            user["client-certificate-data"],
            ours.users[0].user.client_certificate_data
        );
        assert_eq!(user["client-key-data"], ours.users[0].user.client_key_data);
    }
}
