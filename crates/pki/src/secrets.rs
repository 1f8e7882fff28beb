//! Encryption at rest of Secret objects, in the shape of Kubernetes' `aesgcm` provider:
//! stored value = `k8s:enc:aesgcm:v1:<key name>:` + 12-byte random nonce + AES-256-GCM
//! ciphertext and tag, with the storage key as optional additional authenticated data (as
//! kube-apiserver binds a value to its etcd key). The key ring lives in
//! `encryption-config.json`, an `EncryptionConfiguration` as k3s writes it: the first key
//! encrypts, every key decrypts, and an `identity` provider last lets unencrypted legacy
//! values through.
//!
//! Random 96-bit nonces are safe for about 2^32 encryptions per key; Kubernetes advises
//! rotating aesgcm keys well before that (every 200k writes), which `rotate` makes cheap.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, read_opt, write_atomic, PRIVATE};
use crate::{Error, Result};

/// Every encrypted value starts with this; values without it are stored in the clear.
pub const ENCRYPTION_PREFIX: &str = "k8s:enc:";
const AESGCM_PREFIX: &str = "k8s:enc:aesgcm:v1:";
const CONFIG_FILE: &str = "encryption-config.json";
const TAG_LEN: usize = 16;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionConfiguration {
    kind: String,
    api_version: String,
    resources: Vec<ResourceConfig>,
}

#[derive(Serialize, Deserialize)]
struct ResourceConfig {
    resources: Vec<String>,
    providers: Vec<ProviderConfig>,
}

#[derive(Serialize, Deserialize, Default)]
struct ProviderConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aesgcm: Option<KeysConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize, Deserialize)]
struct KeysConfig {
    keys: Vec<KeyConfig>,
}

#[derive(Serialize, Deserialize)]
struct KeyConfig {
    name: String,
    /// Standard base64 of the 32 key bytes, as in EncryptionConfiguration.
    secret: String,
}

struct Key {
    name: String,
    raw: [u8; 32],
    aead: LessSafeKey,
}

impl Key {
    fn new(name: String, raw: [u8; 32]) -> Result<Key> {
        let unbound = UnboundKey::new(&AES_256_GCM, &raw)
            .map_err(|_| Error::Crypto("load AES-256-GCM key"))?;
        Ok(Key {
            name,
            raw,
            aead: LessSafeKey::new(unbound),
        })
    }
}

/// The key ring that encrypts and decrypts Secret values. Share it behind the [`crate::Pki`].
pub struct SecretEncryption {
    path: PathBuf,
    /// Never empty; `keys[0]` encrypts.
    keys: RwLock<Vec<Key>>,
}

impl SecretEncryption {
    /// Loads `dir/encryption-config.json`, creating it with one fresh key if missing.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let keys = match read_opt(&path)? {
            Some(data) => parse_config(&path, &data)?,
            None => {
                let keys = vec![new_key(&[])?];
                write_config(&path, &keys)?;
                keys
            }
        };
        Ok(SecretEncryption {
            path,
            keys: RwLock::new(keys),
        })
    }

    // The ring is swapped whole under the write lock, so a poisoned lock still holds a
    // consistent ring.
    fn keys(&self) -> RwLockReadGuard<'_, Vec<Key>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Names of the keys, the encrypting one first.
    pub fn key_names(&self) -> Vec<String> {
        self.keys().iter().map(|k| k.name.clone()).collect()
    }

    /// Encrypts with the first key; see [`Self::encrypt_with_context`].
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.encrypt_with_context(plaintext, b"")
    }

    /// Encrypts with the first key and a fresh random nonce. `context` (kube-apiserver uses
    /// the storage key, e.g. `/registry/secrets/default/db`) is authenticated, not stored:
    /// the value then decrypts only under that same context, so it cannot be moved to
    /// another object's key by someone who can write the store.
    pub fn encrypt_with_context(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>> {
        let keys = self.keys();
        let key = &keys[0];
        let nonce = fsutil::random_bytes::<NONCE_LEN>()?;
        let mut sealed = plaintext.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut sealed,
            )
            .map_err(|_| Error::Crypto("encrypt secret"))?;
        let mut out =
            Vec::with_capacity(AESGCM_PREFIX.len() + key.name.len() + 1 + NONCE_LEN + sealed.len());
        out.extend_from_slice(AESGCM_PREFIX.as_bytes());
        out.extend_from_slice(key.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a stored value with the key it names; a value without the `k8s:enc:`
    /// prefix is unencrypted legacy data and comes back as is.
    pub fn decrypt(&self, stored: &[u8]) -> Result<Vec<u8>> {
        self.decrypt_with_context(stored, b"")
    }

    /// Like [`Self::decrypt`], for values encrypted with [`Self::encrypt_with_context`].
    pub fn decrypt_with_context(&self, stored: &[u8], context: &[u8]) -> Result<Vec<u8>> {
        let Some((name, data)) = split_stored(stored)? else {
            return Ok(stored.to_vec());
        };
        let keys = self.keys();
        let key = keys
            .iter()
            .find(|k| k.name.as_bytes() == name)
            .ok_or_else(|| Error::UnknownKey(String::from_utf8_lossy(name).into_owned()))?;
        let corrupt = || Error::Decrypt {
            key: key.name.clone(),
        };
        if data.len() < NONCE_LEN + TAG_LEN {
            return Err(corrupt());
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let mut buf = sealed.to_vec();
        let len = key
            .aead
            .open_in_place(nonce, Aad::from(context), &mut buf)
            .map_err(|_| corrupt())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Whether `stored` should be rewritten: it is unencrypted or under an older key.
    pub fn needs_reencryption(&self, stored: &[u8]) -> bool {
        match split_stored(stored) {
            Ok(Some((name, _))) => self.keys()[0].name.as_bytes() != name,
            _ => true,
        }
    }

    /// Adds a new key in front (it encrypts from now on) and keeps the others for decryption.
    /// The caller then rewrites every Secret and may call [`Self::prune_old_keys`].
    pub fn rotate(&self) -> Result<String> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        let key = new_key(&names)?;
        let name = key.name.clone();
        let mut next = Vec::with_capacity(keys.len() + 1);
        next.push(key);
        for old in keys.iter() {
            next.push(Key::new(old.name.clone(), old.raw)?);
        }
        write_config(&self.path, &next)?;
        *keys = next;
        tracing::info!(key = %name, "rotated secret encryption key");
        Ok(name)
    }

    /// Drops every key but the encrypting one; returns the dropped names. Values still
    /// under a dropped key can no longer be read.
    pub fn prune_old_keys(&self) -> Result<Vec<String>> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.len() == 1 {
            return Ok(Vec::new());
        }
        let current = Key::new(keys[0].name.clone(), keys[0].raw)?;
        write_config(&self.path, std::slice::from_ref(&current))?;
        let dropped = keys.drain(1..).map(|k| k.name).collect();
        *keys = vec![current];
        Ok(dropped)
    }
}

impl fmt::Debug for SecretEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretEncryption")
            .field("path", &self.path)
            .field("keys", &self.key_names())
            .finish()
    }
}

/// `None` for unencrypted data, else the key name and nonce + ciphertext.
fn split_stored(stored: &[u8]) -> Result<Option<(&[u8], &[u8])>> {
    if !stored.starts_with(ENCRYPTION_PREFIX.as_bytes()) {
        return Ok(None);
    }
    let Some(rest) = stored.strip_prefix(AESGCM_PREFIX.as_bytes()) else {
        let provider = stored[ENCRYPTION_PREFIX.len()..]
            .split(|b| *b == b':')
            .next()
            .unwrap_or_default();
        return Err(Error::UnsupportedProvider(
            String::from_utf8_lossy(provider).into_owned(),
        ));
    };
    match rest.iter().position(|b| *b == b':') {
        Some(colon) => Ok(Some((&rest[..colon], &rest[colon + 1..]))),
        None => Err(Error::Decrypt { key: String::new() }),
    }
}

/// A fresh key named `key-<unix seconds>`, suffixed if that name is taken.
fn new_key(taken: &[&str]) -> Result<Key> {
    let base = format!("key-{}", fsutil::unix_seconds(SystemTime::now()));
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name.as_str()) {
        n += 1;
        name = format!("{base}-{n}");
    }
    Key::new(name, fsutil::random_bytes::<32>()?)
}

fn parse_config(path: &Path, data: &[u8]) -> Result<Vec<Key>> {
    let invalid = |reason: String| Error::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let config: EncryptionConfiguration = serde_json::from_slice(data)
        .map_err(|e| invalid(format!("not an EncryptionConfiguration: {e}")))?;
    let resource = config
        .resources
        .iter()
        .find(|r| r.resources.iter().any(|r| r == "secrets"))
        .ok_or_else(|| invalid("no entry for secrets".into()))?;
    let keys = resource
        .providers
        .first()
        .and_then(|p| p.aesgcm.as_ref())
        .ok_or_else(|| invalid("the first provider for secrets is not aesgcm".into()))?;
    if keys.keys.is_empty() {
        return Err(invalid("aesgcm has no keys".into()));
    }
    let mut ring: Vec<Key> = Vec::with_capacity(keys.keys.len());
    for key in &keys.keys {
        if key.name.is_empty() || key.name.contains(':') || ring.iter().any(|k| k.name == key.name)
        {
            return Err(invalid(format!("bad or duplicate key name {:?}", key.name)));
        }
        let raw: [u8; 32] = STANDARD
            .decode(&key.secret)
            .ok()
            .and_then(|raw| raw.try_into().ok())
            .ok_or_else(|| invalid(format!("key {:?} is not 32 bytes of base64", key.name)))?;
        ring.push(Key::new(key.name.clone(), raw)?);
    }
    Ok(ring)
}

fn write_config(path: &Path, keys: &[Key]) -> Result<()> {
    let config = EncryptionConfiguration {
        kind: "EncryptionConfiguration".into(),
        api_version: "apiserver.config.k8s.io/v1".into(),
        resources: vec![ResourceConfig {
            resources: vec!["secrets".into()],
            providers: vec![
                ProviderConfig {
                    aesgcm: Some(KeysConfig {
                        keys: keys
                            .iter()
                            .map(|k| KeyConfig {
                                name: k.name.clone(),
                                secret: STANDARD.encode(k.raw),
                            })
                            .collect(),
                    }),
                    identity: None,
                },
                ProviderConfig {
                    aesgcm: None,
                    identity: Some(Default::default()),
                },
            ],
        }],
    };
    let json = serde_json::to_vec_pretty(&config).map_err(|source| Error::Json {
        what: "encryption configuration",
        source,
    })?;
    write_atomic(path, &json, PRIVATE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ring() -> (tempfile::TempDir, SecretEncryption) {
        let dir = tempfile::tempdir().unwrap();
        let ring = SecretEncryption::load_or_create(dir.path()).unwrap();
        (dir, ring)
    }

    #[test]
    fn roundtrip_with_prefix_and_fresh_nonces() {
        let (dir, ring) = ring();
        let name = &ring.key_names()[0];
        let a = ring.encrypt(b"password=hunter2").unwrap();
        let b = ring.encrypt(b"password=hunter2").unwrap();
        let prefix = format!("k8s:enc:aesgcm:v1:{name}:");
        assert!(a.starts_with(prefix.as_bytes()));
        assert_eq!(a.len(), prefix.len() + 12 + 16 + 16);
        assert_ne!(a, b, "a nonce must never repeat");
        assert_eq!(ring.decrypt(&a).unwrap(), b"password=hunter2");
        assert_eq!(ring.decrypt(b"").unwrap(), b"");
        assert_eq!(ring.decrypt(&ring.encrypt(b"").unwrap()).unwrap(), b"");
        // Legacy unencrypted data passes through.
        assert_eq!(
            ring.decrypt(b"{\"kind\":\"Secret\"}").unwrap(),
            b"{\"kind\":\"Secret\"}"
        );
        let mode = std::fs::metadata(dir.path().join(CONFIG_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another process loading the same file reads the same values.
        let again = SecretEncryption::load_or_create(dir.path()).unwrap();
        assert_eq!(again.decrypt(&a).unwrap(), b"password=hunter2");
    }

    #[test]
    fn rotate_then_decrypt_old_and_new_then_prune() {
        let (dir, ring) = ring();
        let old = ring.encrypt(b"old").unwrap();
        let first = ring.key_names()[0].clone();
        let second = ring.rotate().unwrap();
        assert_ne!(first, second);
        assert_eq!(ring.key_names(), [second.clone(), first.clone()]);
        let new = ring.encrypt(b"new").unwrap();
        assert!(new.starts_with(format!("k8s:enc:aesgcm:v1:{second}:").as_bytes()));
        assert_eq!(ring.decrypt(&old).unwrap(), b"old");
        assert_eq!(ring.decrypt(&new).unwrap(), b"new");
        assert!(ring.needs_reencryption(&old));
        assert!(!ring.needs_reencryption(&new));
        assert!(ring.needs_reencryption(b"plain"));

        // Rotation is on disk too.
        let reloaded = SecretEncryption::load_or_create(dir.path()).unwrap();
        assert_eq!(reloaded.key_names(), [second.clone(), first.clone()]);
        assert_eq!(reloaded.decrypt(&old).unwrap(), b"old");

        let third = ring.rotate().unwrap();
        assert_eq!(ring.key_names().len(), 3);
        assert_eq!(ring.prune_old_keys().unwrap(), [second, first.clone()]);
        assert_eq!(ring.key_names(), [third]);
        assert!(matches!(ring.decrypt(&old), Err(Error::UnknownKey(k)) if k == first));
        let reloaded = SecretEncryption::load_or_create(dir.path()).unwrap();
        assert_eq!(reloaded.key_names(), ring.key_names());
    }

    #[test]
    fn tampered_or_misplaced_ciphertext_fails() {
        let (_dir, ring) = ring();
        let good = ring.encrypt(b"secret value").unwrap();
        for i in [good.len() - 1, good.len() - 20, good.len() - 30] {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(ring.decrypt(&bad), Err(Error::Decrypt { .. })),
                "byte {i}"
            );
        }
        assert!(matches!(
            ring.decrypt(&good[..good.len() - 1]),
            Err(Error::Decrypt { .. })
        ));
        let prefix_len = good.len() - 12 - 16 - 12;
        assert!(matches!(
            ring.decrypt(&good[..prefix_len + 20]),
            Err(Error::Decrypt { .. })
        ));

        // Bound to its storage key: it does not open under another one.
        let bound = ring
            .encrypt_with_context(b"v", b"/registry/secrets/default/a")
            .unwrap();
        assert_eq!(
            ring.decrypt_with_context(&bound, b"/registry/secrets/default/a")
                .unwrap(),
            b"v"
        );
        assert!(ring
            .decrypt_with_context(&bound, b"/registry/secrets/default/b")
            .is_err());
        assert!(ring.decrypt(&bound).is_err());

        assert!(matches!(
            ring.decrypt(b"k8s:enc:aescbc:v1:k:xxxx"),
            Err(Error::UnsupportedProvider(p)) if p == "aescbc"
        ));
        assert!(matches!(
            ring.decrypt(b"k8s:enc:aesgcm:v1:nokey:0123456789abcdefghijklmnopqrstuvwxyz"),
            Err(Error::UnknownKey(_))
        ));
    }

    #[test]
    fn bad_config_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        for bad in [
            "{}",
            r#"{"kind":"EncryptionConfiguration","apiVersion":"v1","resources":[{"resources":["secrets"],"providers":[{"identity":{}}]}]}"#,
            r#"{"kind":"EncryptionConfiguration","apiVersion":"v1","resources":[{"resources":["secrets"],"providers":[{"aesgcm":{"keys":[{"name":"a","secret":"c2hvcnQ="}]}}]}]}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = SecretEncryption::load_or_create(dir.path()).unwrap_err();
            assert!(err.to_string().contains(CONFIG_FILE), "{err}");
        }
    }
}
