//! ServiceAccount tokens (bound JWTs, as kube-apiserver issues them) and the node join token.
//!
//! The JWS is written here rather than with `jsonwebtoken`: since 10.0 it offers only
//! aws-lc-rs (needs cmake, slow to build, and the workspace is ring-only) or RustCrypto
//! (which drags in the `rsa` crate with an open timing advisory) as backends, and 9.x, the
//! last on ring, is superseded. A compact ES256 JWS is a base64url header and payload signed
//! with ring's fixed-size ECDSA P-256 signature, which is exactly JWS' `r || s` format; the
//! whole codec is below and tested against tampering, algorithm swaps, expiry and audience.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::{Deserialize, Deserializer, Serialize};
use subtle::ConstantTimeEq;

use crate::fsutil::{self, read_opt_string, write_atomic, PRIVATE};
use crate::{Error, Result};

/// kube-apiserver's usual `--service-account-issuer`.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Clock skew tolerated on `exp` and `nbf`; go-jose's default, which Kubernetes uses.
const LEEWAY_SECS: i64 = 60;
const KEY_FILE: &str = "service-account.key";
const JOIN_FILE: &str = "join-token";

/// A reference to the object a token is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The private `kubernetes.io` claim of a bound ServiceAccount token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// The claims of a ServiceAccount token; times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
    pub nbf: i64,
    pub sub: String,
}

/// RFC 7519 allows `aud` as one string or a list; Kubernetes writes a list.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(aud) => vec![aud],
        OneOrMany::Many(auds) => auds,
    })
}

/// What to issue a token for (a TokenRequest on `serviceaccounts/<name>/token`).
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub namespace: String,
    pub service_account: ObjectRef,
    pub audiences: Vec<String>,
    pub expiration: Duration,
    pub pod: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
}

/// Why a token was refused; all of these mean 401 to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm {0:?} is not ES256")]
    Algorithm(String),
    #[error("token signature is invalid")]
    Signature,
    #[error("token issuer {0:?} is not this cluster's")]
    Issuer(String),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token audiences {0:?} are not accepted")]
    Audience(Vec<String>),
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// Issues and verifies ServiceAccount tokens with the cluster's P-256 signing key.
#[derive(Clone)]
pub struct ServiceAccountTokens {
    key: Arc<EcdsaKeyPair>,
    key_id: String,
    issuer: String,
}

impl ServiceAccountTokens {
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self> {
        let path = dir.join(KEY_FILE);
        let key = match read_opt_string(&path)? {
            Some(pem) => KeyPair::from_pem(&pem).map_err(|source| Error::Cert {
                what: format!("load {}", path.display()),
                source,
            })?,
            None => {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| {
                    Error::Cert {
                        what: "generate service account signing key".into(),
                        source,
                    }
                })?;
                write_atomic(&path, key.serialize_pem().as_bytes(), PRIVATE)?;
                key
            }
        };
        let invalid = || Error::Invalid {
            path: path.clone(),
            reason: "not an ECDSA P-256 private key".into(),
        };
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(invalid());
        }
        let signing = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            key.serialized_der(),
            &SystemRandom::new(),
        )
        .map_err(|_| invalid())?;
        // kube-apiserver's key id: base64url(SHA-256(DER SubjectPublicKeyInfo)).
        let key_id = URL_SAFE_NO_PAD.encode(digest(&SHA256, &key.subject_public_key_info()));
        Ok(ServiceAccountTokens {
            key: Arc::new(signing),
            key_id,
            issuer: DEFAULT_ISSUER.to_string(),
        })
    }

    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.issuer = issuer.to_string();
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `kid` put in every token header and in the JWKS.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs a bound token: `sub` is `system:serviceaccount:<namespace>:<name>`, `iat` and
    /// `nbf` are `now`, `exp` is `now + expiration`, `jti` a random UUID.
    pub fn issue(&self, req: &TokenRequest, now: SystemTime) -> Result<String> {
        let iat = fsutil::unix_seconds(now);
        let lifetime = i64::try_from(req.expiration.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            aud: req.audiences.clone(),
            exp: iat.saturating_add(lifetime),
            iat,
            iss: self.issuer.clone(),
            jti: random_uuid()?,
            kubernetes: KubernetesClaims {
                namespace: req.namespace.clone(),
                serviceaccount: req.service_account.clone(),
                pod: req.pod.clone(),
                node: req.node.clone(),
            },
            nbf: iat,
            sub: format!(
                "system:serviceaccount:{}:{}",
                req.namespace, req.service_account.name
            ),
        };
        let header = Header {
            alg: "ES256".into(),
            kid: Some(self.key_id.clone()),
        };
        let signing_input = format!(
            "{}.{}",
            b64_json("token header", &header)?,
            b64_json("token claims", &claims)?
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| Error::Crypto("sign service account token"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Checks the signature, the issuer, `exp` and `nbf` (with 60 s leeway) and that at
    /// least one of the token's audiences is in `audiences`. Whether the bound objects (the
    /// ServiceAccount, the Pod) still exist with those UIDs is the caller's check.
    pub fn verify(
        &self,
        token: &str,
        audiences: &[&str],
        now: SystemTime,
    ) -> Result<Claims, TokenError> {
        let mut parts = token.trim().split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated parts"));
        };
        let decode = |part: &str, what| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed(what))
        };
        let parsed: Header = serde_json::from_slice(&decode(header, "header is not base64url")?)
            .map_err(|_| TokenError::Malformed("header is not JSON"))?;
        // Only ES256: never `none`, never a MAC keyed with our public key.
        if parsed.alg != "ES256" {
            return Err(TokenError::Algorithm(parsed.alg));
        }
        let signature = decode(signature, "signature is not base64url")?;
        let signing_input = &token.trim()[..header.len() + 1 + payload.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = serde_json::from_slice(&decode(payload, "claims are not base64url")?)
            .map_err(|_| TokenError::Malformed("claims are not service account claims"))?;
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer(claims.iss));
        }
        let now = fsutil::unix_seconds(now);
        if now > claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if now.saturating_add(LEEWAY_SECS) < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        if !claims
            .aud
            .iter()
            .any(|aud| audiences.contains(&aud.as_str()))
        {
            return Err(TokenError::Audience(claims.aud));
        }
        Ok(claims)
    }

    /// The JSON Web Key Set served at `/openid/v1/jwks`.
    pub fn jwks(&self) -> serde_json::Value {
        // An uncompressed P-256 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = self.key.public_key().as_ref();
        serde_json::json!({
            "keys": [{
                "use": "sig",
                "kty": "EC",
                "kid": self.key_id,
                "crv": "P-256",
                "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }]
        })
    }

    /// The document served at `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self, jwks_uri: &str) -> serde_json::Value {
        serde_json::json!({
            "issuer": self.issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }
}

impl fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .field("issuer", &self.issuer)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn b64_json<T: Serialize>(what: &'static str, value: &T) -> Result<String> {
    let json = serde_json::to_vec(value).map_err(|source| Error::Json { what, source })?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn random_uuid() -> Result<String> {
    let mut b = fsutil::random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The secret agents present to join, rendered in k3s' format
/// `K10<sha256 hex of the server CA PEM>::server:<secret>`: the hash lets a joining node
/// pin the CA it downloads from `/cacerts` before trusting anything it says.
pub(crate) struct JoinToken {
    ca_hash: String,
    secret: String,
}

impl JoinToken {
    pub(crate) fn load_or_create(dir: &Path, server_ca_pem: &str) -> Result<Self> {
        let path = dir.join(JOIN_FILE);
        let secret = match read_opt_string(&path)? {
            Some(secret) if !secret.trim().is_empty() => secret.trim().to_string(),
            _ => {
                let secret = hex::encode(fsutil::random_bytes::<16>()?);
                write_atomic(&path, format!("{secret}\n").as_bytes(), PRIVATE)?;
                secret
            }
        };
        Ok(JoinToken {
            ca_hash: hex::encode(digest(&SHA256, server_ca_pem.as_bytes())),
            secret,
        })
    }

    pub(crate) fn render(&self) -> String {
        format!("K10{}::server:{}", self.ca_hash, self.secret)
    }

    pub(crate) fn verify(&self, token: &str) -> bool {
        let token = token.trim();
        let creds = match token.strip_prefix("K10").and_then(|t| t.split_once("::")) {
            Some((hash, creds)) => {
                if !bool::from(
                    hash.to_ascii_lowercase()
                        .as_bytes()
                        .ct_eq(self.ca_hash.as_bytes()),
                ) {
                    return false;
                }
                creds
            }
            None => token,
        };
        let secret = creds.strip_prefix("server:").unwrap_or(creds);
        bool::from(secret.as_bytes().ct_eq(self.secret.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn tokens() -> (tempfile::TempDir, ServiceAccountTokens) {
        let dir = tempfile::tempdir().unwrap();
        let tokens = ServiceAccountTokens::load_or_create(dir.path()).unwrap();
        (dir, tokens)
    }

    fn request() -> TokenRequest {
        TokenRequest {
            namespace: "default".into(),
            service_account: ObjectRef {
                name: "builder".into(),
                uid: "6c1c5b7e-0000-4000-8000-000000000001".into(),
            },
            audiences: vec![
                "https://kubernetes.default.svc.cluster.local".into(),
                "vault".into(),
            ],
            expiration: HOUR,
            pod: Some(ObjectRef {
                name: "web-0".into(),
                uid: "6c1c5b7e-0000-4000-8000-000000000002".into(),
            }),
            node: None,
        }
    }

    #[test]
    fn issued_token_verifies_with_kubernetes_claims() {
        let (_dir, tokens) = tokens();
        let now = SystemTime::now();
        let token = tokens.issue(&request(), now).unwrap();
        let claims = tokens.verify(&token, &["vault"], now).unwrap();
        assert_eq!(claims.sub, "system:serviceaccount:default:builder");
        assert_eq!(claims.iss, DEFAULT_ISSUER);
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(claims.jti.len(), 36);
        assert_eq!(claims.kubernetes.pod.as_ref().unwrap().name, "web-0");

        // The wire format is Kubernetes': ES256 header with kid, `kubernetes.io` claim.
        let mut parts = token.split('.');
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], tokens.key_id());
        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(
            payload["kubernetes.io"]["serviceaccount"]["name"],
            "builder"
        );
        assert_eq!(payload["kubernetes.io"]["namespace"], "default");
        assert!(payload["kubernetes.io"].get("node").is_none());
    }

    #[test]
    fn expired_and_future_tokens_are_refused_outside_the_leeway() {
        let (_dir, tokens) = tokens();
        let now = SystemTime::now();
        let token = tokens.issue(&request(), now).unwrap();
        let aud = ["vault"];
        assert!(tokens
            .verify(&token, &aud, now + HOUR + Duration::from_secs(30))
            .is_ok());
        assert_eq!(
            tokens.verify(&token, &aud, now + 2 * HOUR),
            Err(TokenError::Expired)
        );
        assert_eq!(
            tokens.verify(&token, &aud, now - Duration::from_secs(600)),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn wrong_audience_issuer_and_key_are_refused() {
        let (_dir, tokens) = tokens();
        let now = SystemTime::now();
        let token = tokens.issue(&request(), now).unwrap();
        assert!(matches!(
            tokens.verify(&token, &["other"], now),
            Err(TokenError::Audience(_))
        ));
        assert!(matches!(
            tokens.verify(&token, &[], now),
            Err(TokenError::Audience(_))
        ));
        let other_issuer = tokens.clone().with_issuer("https://elsewhere");
        assert!(matches!(
            other_issuer.verify(&token, &["vault"], now),
            Err(TokenError::Issuer(_))
        ));
        let (_dir2, other_key) = self::tokens();
        assert_eq!(
            other_key.verify(&token, &["vault"], now),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let (_dir, tokens) = tokens();
        let now = SystemTime::now();
        let token = tokens.issue(&request(), now).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let aud = ["vault"];

        // Claims rewritten to another service account, old signature kept.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = "system:serviceaccount:kube-system:admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        assert_eq!(
            tokens.verify(&forged, &aud, now),
            Err(TokenError::Signature)
        );

        // One flipped signature bit.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            tokens.verify(&flipped, &aud, now),
            Err(TokenError::Signature)
        );

        // alg=none with an empty signature.
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let unsigned = format!("{none}.{}.", parts[1]);
        assert_eq!(
            tokens.verify(&unsigned, &aud, now),
            Err(TokenError::Algorithm("none".into()))
        );

        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(matches!(
                tokens.verify(junk, &aud, now),
                Err(TokenError::Malformed(_))
            ));
        }
    }

    #[test]
    fn audience_may_be_a_single_string() {
        let claims: Claims = serde_json::from_value(serde_json::json!({
            "aud": "api", "exp": 2, "iat": 1, "nbf": 1, "iss": "i", "jti": "j", "sub": "s",
            "kubernetes.io": {"namespace": "n", "serviceaccount": {"name": "a", "uid": "u"}},
        }))
        .unwrap();
        assert_eq!(claims.aud, ["api"]);
    }

    #[test]
    fn jwks_carries_the_public_key() {
        let (_dir, tokens) = tokens();
        let jwks = tokens.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kid"], tokens.key_id());
        let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
        assert_eq!(x.len(), 32);
        let oidc = tokens.openid_configuration("https://127.0.0.1:6443/openid/v1/jwks");
        assert_eq!(oidc["issuer"], DEFAULT_ISSUER);
    }

    #[test]
    fn join_token_forms() {
        let dir = tempfile::tempdir().unwrap();
        let join = JoinToken::load_or_create(dir.path(), "CA PEM").unwrap();
        let token = join.render();
        let hash = hex::encode(digest(&SHA256, b"CA PEM"));
        assert!(token.starts_with(&format!("K10{hash}::server:")), "{token}");
        assert!(join.verify(&token));
        assert!(join.verify(&format!("{token}\n")));
        assert!(join.verify(&format!("server:{}", join.secret)));
        assert!(join.verify(&join.secret));
        // Another cluster's CA, a wrong secret, nothing.
        let other_ca = format!("K10{}::server:{}", "0".repeat(64), join.secret);
        assert!(!join.verify(&other_ca));
        assert!(!join.verify(&format!("K10{hash}::server:{}x", join.secret)));
        assert!(!join.verify(""));
        // The secret survives a restart.
        let again = JoinToken::load_or_create(dir.path(), "CA PEM").unwrap();
        assert_eq!(again.render(), token);
    }
}
