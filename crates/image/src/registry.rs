//! Registry clients: protocol choice (plain HTTP for insecure and loopback registries), auth,
//! and mapping of registry errors.

use std::net::IpAddr;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use crate::error::Error;
use crate::reference::Reference;
use crate::store::{Credentials, ImageStore};

/// Whether `registry` (`host[:port]`) is spoken to over plain HTTP.
pub(crate) fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    if insecure.iter().any(|r| r == registry) {
        return true;
    }
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(registry)
    };
    if insecure.iter().any(|r| r == host) {
        return true;
    }
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn auth_of(creds: Option<Credentials>) -> RegistryAuth {
    match creds {
        Some(c) if !c.username.is_empty() || !c.password.is_empty() => {
            RegistryAuth::Basic(c.username, c.password)
        }
        _ => RegistryAuth::Anonymous,
    }
}

impl ImageStore {
    pub(crate) fn client_for(&self, r: &Reference) -> oci_client::Client {
        let insecure = is_insecure(&r.registry, &self.inner.opts.insecure_registries);
        oci_client::Client::new(ClientConfig {
            protocol: if insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
            ..Default::default()
        })
    }
}

/// Turns "manifest unknown" answers into [`Error::NotFound`], and wraps the rest.
pub(crate) fn map_err(
    context: String,
    r: &Reference,
) -> impl FnOnce(OciDistributionError) -> Error + '_ {
    move |e| {
        let missing = match &e {
            OciDistributionError::ImageManifestNotFoundError(_) => true,
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|x| {
                    matches!(
                        x.code,
                        OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
                    )
                })
            }
            OciDistributionError::ServerError { code: 404, .. } => true,
            _ => false,
        };
        if missing {
            Error::NotFound(r.to_string())
        } else {
            Error::Registry { context, source: e }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_insecure() {
        for r in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_insecure(r, &[]), "{r}");
        }
        assert!(!is_insecure("docker.io", &[]));
        assert!(!is_insecure("10.0.0.1:5000", &[]));
        assert!(is_insecure("10.0.0.1:5000", &["10.0.0.1:5000".into()]));
        assert!(is_insecure("reg.lan:443", &["reg.lan".into()]));
    }
}
