//! The two certificate authorities and the [`Pki`] that owns every key in the PKI directory.
//!
//! As in k3s, serving and client certificates come from different CAs: a client certificate
//! must never be usable as a server identity and vice versa, and each CA can be handed out
//! alone (kubeconfigs carry only the server CA; the API server trusts only the client CA for
//! authentication).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::fsutil::{self, read_opt_string, write_atomic, PRIVATE, PUBLIC};
use crate::secrets::SecretEncryption;
use crate::subject;
use crate::token::{JoinToken, ServiceAccountTokens};
use crate::{Error, Result};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
pub(crate) const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
pub(crate) const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Certificates start an hour in the past so a node whose clock is a little behind still
/// accepts them.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// A CA this close to expiry gets a warning at every start: rotating a CA is a manual step.
const CA_WARN_BEFORE: Duration = Duration::from_secs(180 * 24 * 60 * 60);

/// A CA loaded from (or just written to) `<name>.crt` and `<name>.key`.
pub(crate) struct Ca {
    pub(crate) cert_pem: String,
    pub(crate) cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn load_or_create(dir: &Path, name: &str, now: SystemTime) -> Result<Ca> {
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        let cert_pem = read_opt_string(&cert_path)?;
        let key_pem = read_opt_string(&key_path)?;
        match (cert_pem, key_pem) {
            (Some(cert_pem), Some(key_pem)) => {
                Self::load(&cert_path, cert_pem, &key_path, &key_pem)
            }
            (Some(_), None) => Err(Error::Invalid {
                path: key_path,
                reason: "missing while its CA certificate exists; refusing to replace a CA \
                         that clients may already trust"
                    .into(),
            }),
            // The key is written before the certificate, so a lone key is the remains of an
            // interrupted first start: nothing was ever signed with it.
            (None, _) => Self::create(&cert_path, &key_path, name, now),
        }
    }

    fn create(cert_path: &Path, key_path: &Path, name: &str, now: SystemTime) -> Result<Ca> {
        let key = generate_key(name)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("cloudlet-{name}@{}", fsutil::unix_seconds(now)));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, now, CA_VALIDITY)?;
        let cert = params.self_signed(&key).map_err(|source| Error::Cert {
            what: format!("self-sign {name}"),
            source,
        })?;
        write_atomic(key_path, key.serialize_pem().as_bytes(), PRIVATE)?;
        write_atomic(cert_path, cert.pem().as_bytes(), PUBLIC)?;
        tracing::info!(ca = name, path = %cert_path.display(), "created certificate authority");
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    fn load(cert_path: &Path, cert_pem: String, key_path: &Path, key_pem: &str) -> Result<Ca> {
        let invalid = |path: &Path, reason: &str| Error::Invalid {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let key = KeyPair::from_pem(key_pem).map_err(|source| Error::Cert {
            what: format!("load {}", key_path.display()),
            source,
        })?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| invalid(cert_path, "no PEM certificate"))?;
        let (_, x509) = X509Certificate::from_der(&cert_der)
            .map_err(|_| invalid(cert_path, "unparsable certificate"))?;
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(invalid(key_path, "does not match its CA certificate"));
        }
        let not_after = x509.validity().not_after.timestamp();
        let warn_at = fsutil::unix_seconds(SystemTime::now() + CA_WARN_BEFORE);
        if not_after < warn_at {
            tracing::warn!(path = %cert_path.display(), not_after, "certificate authority expires soon");
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|source| Error::Cert {
            what: format!("load {}", cert_path.display()),
            source,
        })?;
        Ok(Ca {
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// Signs a new leaf with a fresh P-256 key; returns the certificate DER and the key.
    pub(crate) fn issue(
        &self,
        params: &CertificateParams,
        what: &str,
    ) -> Result<(Vec<u8>, KeyPair)> {
        let key = generate_key(what)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| Error::Cert {
                what: format!("sign {what}"),
                source,
            })?;
        Ok((cert.der().to_vec(), key))
    }

    pub(crate) fn key(&self) -> &KeyPair {
        self.issuer.key()
    }

    /// Whether `cert` carries a valid signature by this CA.
    pub(crate) fn signed(&self, cert: &X509Certificate<'_>) -> bool {
        match X509Certificate::from_der(&self.cert_der) {
            Ok((_, ca)) => cert.verify_signature(Some(ca.public_key())).is_ok(),
            Err(_) => false,
        }
    }
}

fn generate_key(what: &str) -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| Error::Cert {
        what: format!("generate key for {what}"),
        source,
    })
}

/// A CN-only name (rcgen keeps one value per attribute type; see `subject.rs` for groups).
pub(crate) fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Sets a random serial and the validity window `[now - BACKDATE, now + validity]`.
pub(crate) fn set_validity(
    params: &mut CertificateParams,
    now: SystemTime,
    validity: Duration,
) -> Result<()> {
    let mut serial = fsutil::random_bytes::<16>()?;
    serial[0] &= 0x7f; // DER integers are signed; keep serials positive.
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let start = now.checked_sub(BACKDATE).unwrap_or(now);
    params.not_before = start.into();
    params.not_after = (now + validity).into();
    Ok(())
}

/// A client certificate and its private key, both PEM.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClientCert {
    pub fn cert_der(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .filter_map(|c| c.ok())
            .collect()
    }

    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|_| Error::Crypto("parse client certificate key"))
    }
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCert").finish_non_exhaustive()
    }
}

/// Every key of the cluster, loaded from one directory. Share it behind an `Arc`.
pub struct Pki {
    dir: PathBuf,
    pub(crate) server_ca: Ca,
    pub(crate) client_ca: Ca,
    service_accounts: ServiceAccountTokens,
    join: JoinToken,
    secrets: SecretEncryption,
    /// Serialises reissuing the serving certificate so its key and cert files match.
    pub(crate) serving_lock: Mutex<()>,
}

impl Pki {
    /// Loads the PKI from `dir`, creating what is missing: the server and client CAs
    /// (ECDSA P-256, ten years), the ServiceAccount signing key, the join token secret and the
    /// Secret encryption key ring. `dir` is created mode 0700 if missing.
    pub fn load_or_create(dir: &Path) -> Result<Pki> {
        fsutil::ensure_dir(dir, 0o700)?;
        let now = SystemTime::now();
        let server_ca = Ca::load_or_create(dir, "server-ca", now)?;
        let client_ca = Ca::load_or_create(dir, "client-ca", now)?;
        let service_accounts = ServiceAccountTokens::load_or_create(dir)?;
        let join = JoinToken::load_or_create(dir, &server_ca.cert_pem)?;
        let secrets = SecretEncryption::load_or_create(dir)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            server_ca,
            client_ca,
            service_accounts,
            join,
            secrets,
            serving_lock: Mutex::new(()),
        })
    }

    /// Replaces the ServiceAccount token issuer (`--service-account-issuer`); the default is
    /// [`crate::DEFAULT_ISSUER`].
    pub fn with_service_account_issuer(mut self, issuer: &str) -> Self {
        self.service_accounts = self.service_accounts.with_issuer(issuer);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server CA certificate (PEM): what clients trust to reach the API server.
    pub fn server_ca_pem(&self) -> &str {
        &self.server_ca.cert_pem
    }

    /// The client CA certificate (PEM): what the API server trusts to authenticate clients.
    pub fn client_ca_pem(&self) -> &str {
        &self.client_ca.cert_pem
    }

    pub fn service_accounts(&self) -> &ServiceAccountTokens {
        &self.service_accounts
    }

    pub fn secrets(&self) -> &SecretEncryption {
        &self.secrets
    }

    /// The node join token in k3s' format: `K10<sha256 of the server CA PEM>::server:<secret>`.
    pub fn join_token(&self) -> String {
        self.join.render()
    }

    /// Accepts the full join token, `server:<secret>` or the bare secret; when the token has
    /// a CA hash it must match this cluster's server CA.
    pub fn verify_join_token(&self, token: &str) -> bool {
        self.join.verify(token)
    }

    /// Issues a client certificate signed by the client CA, valid for a year: CN = `user`,
    /// O = `groups` (e.g. `system:admin` in `system:masters`), extended key usage clientAuth.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> Result<ClientCert> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(user);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, SystemTime::now(), LEAF_VALIDITY)?;
        let (der, key) = self
            .client_ca
            .issue(&params, &format!("client certificate for {user}"))?;
        let subject = subject::name_der(user, groups);
        let der = subject::replace_subject(&der, &subject, self.client_ca.key())?;
        Ok(ClientCert {
            cert_pem: pem_encode("CERTIFICATE", &der),
            key_pem: key.serialize_pem(),
        })
    }
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("issuer", &self.service_accounts.issuer())
            .finish_non_exhaustive()
    }
}

/// Days from `now` until `not_after` (negative when already expired); for logs.
pub(crate) fn days_left(not_after: i64, now: SystemTime) -> i64 {
    (not_after - fsutil::unix_seconds(now)) / DAY.as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn load_or_create_twice_gives_the_same_cas() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(dir.path()).unwrap();
        let second = Pki::load_or_create(dir.path()).unwrap();
        assert_eq!(first.server_ca_pem(), second.server_ca_pem());
        assert_eq!(first.client_ca_pem(), second.client_ca_pem());
        assert_ne!(first.server_ca_pem(), first.client_ca_pem());
        assert_eq!(first.join_token(), second.join_token());
        assert_eq!(
            first.service_accounts().key_id(),
            second.service_accounts().key_id()
        );
        for key in ["server-ca.key", "client-ca.key", "service-account.key"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let der = CertificateDer::from_pem_slice(first.server_ca_pem().as_bytes()).unwrap();
        let (_, ca) = X509Certificate::from_der(&der).unwrap();
        let cn = ca
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert!(cn.starts_with("cloudlet-server-ca@"), "{cn}");
        assert!(ca.is_ca());
        let years = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp())
            / (365 * 24 * 3600);
        assert_eq!(years, 10);
    }

    #[test]
    fn pki_can_be_shared_across_tasks() {
        fn shared<T: Send + Sync>() {}
        shared::<Pki>();
    }

    #[test]
    fn a_ca_certificate_without_its_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        Pki::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("client-ca.key")).unwrap();
        let err = Pki::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("client-ca.key"), "{err}");
    }

    #[test]
    fn client_cert_carries_user_groups_and_client_auth() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let cert = pki
            .client_cert("system:admin", &["system:masters", "ops"])
            .unwrap();
        let der = cert.cert_der();
        let (_, x509) = X509Certificate::from_der(&der[0]).unwrap();
        assert!(pki.client_ca.signed(&x509));
        assert!(!pki.server_ca.signed(&x509));
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let id = crate::identity_from_cert(&der[0]).unwrap();
        assert_eq!(id.user, "system:admin");
        assert_eq!(id.groups, ["system:masters", "ops"]);
        cert.key_der().unwrap();
    }
}
