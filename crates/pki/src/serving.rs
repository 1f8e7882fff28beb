//! The API server's serving certificate: signed by the server CA, kept in `serving.crt` /
//! `serving.key`, and reissued only when it no longer fits (a wanted name is missing, it
//! expires within 90 days, or the server CA changed) so clients see a stable certificate
//! across restarts.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyUsagePurpose, PublicKeyData, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::{self, LEAF_VALIDITY};
use crate::fsutil::{self, read_opt_string, write_atomic, PRIVATE, PUBLIC};
use crate::{Error, Pki, Result};

/// Reissue a serving certificate this long before it expires (k3s uses the same window).
const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 60 * 60);
const SERVING_CN: &str = "kube-apiserver";

/// A subject alternative name: a DNS name or an IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    /// An IP literal becomes [`San::Ip`], anything else a (lowercased) DNS name; this is how
    /// `--tls-san` values are read.
    pub fn parse(value: &str) -> San {
        let value = value.trim();
        match value.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(value.to_ascii_lowercase()),
        }
    }

    fn normalized(&self) -> San {
        match self {
            San::Dns(name) => San::Dns(name.trim_end_matches('.').to_ascii_lowercase()),
            San::Ip(ip) => San::Ip(ip.to_canonical()),
        }
    }
}

impl From<IpAddr> for San {
    fn from(ip: IpAddr) -> San {
        San::Ip(ip)
    }
}

impl From<&str> for San {
    fn from(value: &str) -> San {
        San::parse(value)
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => ip.fmt(f),
        }
    }
}

/// A serving certificate chain (leaf, then the server CA) and its key, both PEM.
#[derive(Clone)]
pub struct ServerCert {
    pub cert_chain_pem: String,
    pub key_pem: String,
    pub not_after: SystemTime,
}

impl ServerCert {
    pub fn cert_chain_der(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_chain_pem.as_bytes())
            .filter_map(|c| c.ok())
            .collect()
    }

    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|_| Error::Crypto("parse serving certificate key"))
    }
}

impl fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCert")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// The API server's serving certificate for `sans` (hostname, addresses, localhost,
    /// 127.0.0.1, ::1, kubernetes, kubernetes.default[.svc[.cluster.local]], --tls-san …).
    /// The stored one is returned while it covers `sans`, is signed by the current server
    /// CA and has more than 90 days left; otherwise a one-year certificate is issued for
    /// exactly `sans` and stored.
    pub fn server_cert(&self, sans: &[San]) -> Result<ServerCert> {
        self.server_cert_at(sans, SystemTime::now())
    }

    pub(crate) fn server_cert_at(&self, sans: &[San], now: SystemTime) -> Result<ServerCert> {
        // A poisoned lock only means another caller panicked; the files are still whole.
        let _guard = self
            .serving_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let cert_path = self.dir().join("serving.crt");
        let key_path = self.dir().join("serving.key");
        if let (Some(cert_pem), Some(key_pem)) =
            (read_opt_string(&cert_path)?, read_opt_string(&key_path)?)
        {
            match self.check_serving(&cert_pem, &key_pem, sans, now) {
                Ok(not_after) => {
                    return Ok(ServerCert {
                        cert_chain_pem: cert_pem,
                        key_pem,
                        not_after,
                    })
                }
                Err(reason) => tracing::info!(%reason, "reissuing serving certificate"),
            }
        }
        let cert = self.issue_server_cert_at(SERVING_CN, sans, now)?;
        // Key first: a crash between the two writes leaves a mismatched pair, which the
        // check above detects and reissues.
        write_atomic(&key_path, cert.key_pem.as_bytes(), PRIVATE)?;
        write_atomic(&cert_path, cert.cert_chain_pem.as_bytes(), PUBLIC)?;
        Ok(cert)
    }

    /// Issues a serving certificate signed by the server CA without storing it (for other
    /// servers of the cluster, e.g. a node agent's).
    pub fn issue_server_cert(&self, common_name: &str, sans: &[San]) -> Result<ServerCert> {
        self.issue_server_cert_at(common_name, sans, SystemTime::now())
    }

    fn issue_server_cert_at(
        &self,
        common_name: &str,
        sans: &[San],
        now: SystemTime,
    ) -> Result<ServerCert> {
        let mut wanted: Vec<San> = sans.iter().map(San::normalized).collect();
        wanted.sort();
        wanted.dedup();
        let mut params = CertificateParams::default();
        params.distinguished_name = ca::dn(common_name);
        params.subject_alt_names = wanted
            .iter()
            .map(|san| match san {
                San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                San::Dns(name) => {
                    name.as_str()
                        .try_into()
                        .map(SanType::DnsName)
                        .map_err(|source| Error::Cert {
                            what: format!("subject alternative name {name:?}"),
                            source,
                        })
                }
            })
            .collect::<Result<_>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        ca::set_validity(&mut params, now, LEAF_VALIDITY)?;
        let (leaf_der, key) = self
            .server_ca
            .issue(&params, &format!("serving certificate for {common_name}"))?;
        tracing::info!(
            sans = %wanted.iter().map(San::to_string).collect::<Vec<_>>().join(","),
            "issued serving certificate"
        );
        Ok(ServerCert {
            cert_chain_pem: format!(
                "{}{}",
                ca::pem_encode("CERTIFICATE", &leaf_der),
                self.server_ca.cert_pem
            ),
            key_pem: key.serialize_pem(),
            not_after: now + LEAF_VALIDITY,
        })
    }

    /// `Ok(not_after)` when the stored pair can be served for `wanted`, else why not.
    fn check_serving(
        &self,
        cert_pem: &str,
        key_pem: &str,
        wanted: &[San],
        now: SystemTime,
    ) -> Result<SystemTime, String> {
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| "stored certificate is not PEM".to_string())?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|_| "stored certificate is unparsable".to_string())?;
        if !self.server_ca.signed(&cert) {
            return Err("stored certificate is not signed by the current server CA".into());
        }
        let key = rcgen::KeyPair::from_pem(key_pem)
            .map_err(|_| "stored key is unparsable".to_string())?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err("stored key does not match the certificate".into());
        }
        let not_after = cert.validity().not_after.timestamp();
        if not_after < fsutil::unix_seconds(now + RENEW_BEFORE) {
            let days = ca::days_left(not_after, now);
            return Err(format!("stored certificate expires in {days} days"));
        }
        let have = cert_sans(&cert);
        let missing: Vec<String> = wanted
            .iter()
            .map(San::normalized)
            .filter(|san| !have.contains(san))
            .map(|san| san.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(format!("stored certificate lacks {}", missing.join(",")));
        }
        Ok(UNIX_EPOCH + Duration::from_secs(u64::try_from(not_after).unwrap_or(0)))
    }
}

fn cert_sans(cert: &X509Certificate<'_>) -> Vec<San> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(San::Dns(dns.to_string())),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| San::Ip(b.into())),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| San::Ip(b.into())),
                _ => None,
            },
            _ => None,
        })
        .map(|san| san.normalized())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans(values: &[&str]) -> Vec<San> {
        values.iter().map(|v| San::parse(v)).collect()
    }

    fn leaf_sans(cert: &ServerCert) -> Vec<San> {
        let der = cert.cert_chain_der();
        let (_, x509) = X509Certificate::from_der(&der[0]).unwrap();
        cert_sans(&x509)
    }

    #[test]
    fn server_cert_is_kept_then_reissued_when_a_san_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let base = sans(&["localhost", "127.0.0.1", "::1", "kubernetes.default.svc"]);
        let first = pki.server_cert(&base).unwrap();
        assert_eq!(first.cert_chain_der().len(), 2, "leaf then CA");
        let have = leaf_sans(&first);
        for san in &base {
            assert!(have.contains(san), "{san} in {have:?}");
        }

        // Same (or fewer, or differently cased) names: same certificate, even after a restart.
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let again = pki.server_cert(&sans(&["LOCALHOST", "::1"])).unwrap();
        assert_eq!(again.cert_chain_pem, first.cert_chain_pem);
        assert_eq!(again.key_pem, first.key_pem);

        // A new --tls-san: reissued, and covering it.
        let mut more = base.clone();
        more.push(San::parse("api.example.test"));
        let third = pki.server_cert(&more).unwrap();
        assert_ne!(third.cert_chain_pem, first.cert_chain_pem);
        assert!(leaf_sans(&third).contains(&San::parse("api.example.test")));
        assert_eq!(pki.server_cert(&more).unwrap().key_pem, third.key_pem);
    }

    #[test]
    fn server_cert_is_reissued_within_90_days_of_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let names = sans(&["localhost"]);
        let now = SystemTime::now();
        let first = pki.server_cert_at(&names, now).unwrap();
        let later = now + Duration::from_secs(200 * 24 * 3600);
        assert_eq!(
            pki.server_cert_at(&names, later).unwrap().key_pem,
            first.key_pem
        );
        let near_expiry = now + Duration::from_secs(300 * 24 * 3600);
        let renewed = pki.server_cert_at(&names, near_expiry).unwrap();
        assert_ne!(renewed.key_pem, first.key_pem);
        assert!(renewed.not_after > first.not_after);
    }

    #[test]
    fn server_cert_is_reissued_when_the_stored_key_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let names = sans(&["localhost"]);
        let first = pki.server_cert(&names).unwrap();
        let other = pki.issue_server_cert("x", &names).unwrap();
        std::fs::write(dir.path().join("serving.key"), &other.key_pem).unwrap();
        let fixed = pki.server_cert(&names).unwrap();
        assert_ne!(fixed.cert_chain_pem, first.cert_chain_pem);
        assert_ne!(fixed.key_pem, other.key_pem);
    }

    #[test]
    fn san_parse_tells_ips_from_names() {
        assert_eq!(San::parse("10.0.0.1"), San::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(San::parse("::1"), San::Ip("::1".parse().unwrap()));
        assert_eq!(San::parse("Node-1"), San::Dns("node-1".into()));
    }
}
