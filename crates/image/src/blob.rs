//! Content-addressed blobs under `root/blobs/sha256/<hex>`, verified as they are written.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::fsutil::{temp_path, HashingWriter};
use crate::reference::is_digest;

/// Digests and snapshot keys that in-flight operations have written but not yet recorded in
/// the metadata; gc must keep them. gc holds the lock for its whole sweep, so a writer pins
/// (and then renames into place) either before gc looks or after it is done.
#[derive(Default)]
pub(crate) struct Pins {
    keys: Mutex<HashMap<String, usize>>,
}

impl Pins {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps its keys pinned until dropped.
pub(crate) struct PinGuard {
    pins: Arc<Pins>,
    keys: Vec<String>,
}

impl PinGuard {
    pub(crate) fn new(pins: &Arc<Pins>) -> PinGuard {
        PinGuard {
            pins: pins.clone(),
            keys: Vec::new(),
        }
    }

    pub(crate) fn pin(&mut self, key: &str) {
        *self.pins.lock().entry(key.to_string()).or_default() += 1;
        self.keys.push(key.to_string());
    }

    /// Runs `f` (typically a rename into the store) while the pin table is locked, after
    /// pinning `key`, so gc cannot sweep between the two.
    pub(crate) fn pin_while<T>(&mut self, key: &str, f: impl FnOnce() -> T) -> T {
        let mut keys = self.pins.lock();
        *keys.entry(key.to_string()).or_default() += 1;
        self.keys.push(key.to_string());
        f()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut keys = self.pins.lock();
        for k in self.keys.drain(..) {
            if let Some(n) = keys.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    keys.remove(&k);
                }
            }
        }
    }
}

#[derive(Clone)]
pub(crate) struct Blobs {
    pub(crate) dir: PathBuf,
    pub(crate) tmp: PathBuf,
}

impl Blobs {
    pub(crate) fn path(&self, digest: &str) -> Result<PathBuf> {
        if !is_digest(digest) {
            return Err(Error::InvalidInput(format!("invalid digest {digest:?}")));
        }
        Ok(self.dir.join(&digest["sha256:".len()..]))
    }

    pub(crate) fn size(&self, digest: &str) -> Result<u64> {
        let p = self.path(digest)?;
        Ok(fs::metadata(&p).map_err(Error::io("stat blob", &p))?.len())
    }

    pub(crate) fn open(&self, digest: &str) -> Result<File> {
        let p = self.path(digest)?;
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NotFound(format!("blob {digest}"))
            } else {
                Error::io("open blob", &p)(e)
            }
        })
    }

    pub(crate) fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.path(digest)?;
        let data = fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NotFound(format!("blob {digest}"))
            } else {
                Error::io("read blob", &p)(e)
            }
        })?;
        Ok(data)
    }

    pub(crate) fn write_bytes(&self, data: &[u8], pins: &mut PinGuard) -> Result<String> {
        let digest = crate::fsutil::sha256_digest(data);
        self.write(&mut &data[..], Some(&digest), pins)?;
        Ok(digest)
    }

    /// Streams `r` into the store, hashing as it goes; fails without leaving anything when
    /// `expected` is given and does not match. Returns the digest and size.
    pub(crate) fn write(
        &self,
        r: &mut dyn Read,
        expected: Option<&str>,
        pins: &mut PinGuard,
    ) -> Result<(String, u64)> {
        if let Some(d) = expected {
            let p = self.path(d)?;
            let mut present = false;
            pins.pin_while(d, || present = p.is_file());
            if present {
                io::copy(r, &mut io::sink()).map_err(Error::io("read blob", &p))?;
                return Ok((d.to_string(), self.size(d)?));
            }
        }
        let t = temp_path(&self.tmp, "blob");
        let mut w = HashingWriter::new(File::create(&t).map_err(Error::io("create", &t))?);
        let res = io::copy(r, &mut w).and_then(|_| w.flush());
        let (digest, size) = w.digest();
        let res = res.and_then(|_| w.inner.sync_all());
        if let Err(e) = res {
            let _ = fs::remove_file(&t);
            return Err(Error::io("write blob", &t)(e));
        }
        self.commit_temp(&t, &digest, expected, pins)?;
        Ok((digest, size))
    }

    /// Moves an already hashed temp file into place.
    pub(crate) fn commit_temp(
        &self,
        t: &Path,
        digest: &str,
        expected: Option<&str>,
        pins: &mut PinGuard,
    ) -> Result<()> {
        if let Some(exp) = expected {
            if exp != digest {
                let _ = fs::remove_file(t);
                return Err(Error::Digest {
                    subject: format!("blob {exp}"),
                    expected: exp.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let p = self.path(digest)?;
        pins.pin_while(digest, || fs::rename(t, &p))
            .map_err(Error::io("store blob", &p))
    }
}
