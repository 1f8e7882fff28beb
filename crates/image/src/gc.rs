//! Garbage collection of blobs and snapshots no image refers to, and disk usage.

use std::collections::HashSet;
use std::fs;

use crate::error::{Error, Result};
use crate::fsutil::{dir_size, remove_all};
use crate::snapshot::pin_key;
use crate::store::ImageStore;

impl ImageStore {
    /// Deletes blobs and snapshots that no image refers to and no operation in flight has
    /// pinned; returns the bytes freed.
    pub fn gc(&self) -> Result<u64, Error> {
        // Held for the whole sweep: writers pin before they rename into place, so everything
        // on disk is either referenced, pinned, or garbage.
        let pins = self.inner.pins.lock();
        let state = self.lock_state().clone();
        let mut keep_blobs: HashSet<String> = HashSet::new();
        let mut keep_snaps: HashSet<String> = HashSet::new();
        for (id, rec) in &state.images {
            keep_blobs.insert(id.clone());
            keep_blobs.insert(rec.manifest.clone());
            keep_blobs.extend(rec.layers.iter().map(|l| l.blob.clone()));
            keep_snaps.extend(rec.chain_ids());
        }
        let mut freed = 0;
        let blob_dir = &self.inner.blobs.dir;
        let rd = fs::read_dir(blob_dir).map_err(Error::io("list blobs", blob_dir))?;
        for e in rd.flatten() {
            let digest = format!("sha256:{}", e.file_name().to_string_lossy());
            if keep_blobs.contains(&digest) || pins.contains_key(&digest) {
                continue;
            }
            let path = e.path();
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            remove_all(&path).map_err(Error::io("remove blob", &path))?;
            tracing::debug!(%digest, size, "gc removed blob");
            freed += size;
        }
        let snaps = &self.inner.snapshots;
        let rd = fs::read_dir(snaps).map_err(Error::io("list snapshots", snaps))?;
        for e in rd.flatten() {
            let chain = format!("sha256:{}", e.file_name().to_string_lossy());
            if keep_snaps.contains(&chain) || pins.contains_key(&pin_key(&chain)) {
                continue;
            }
            let path = e.path();
            let size = dir_size(&path);
            remove_all(&path).map_err(Error::io("remove snapshot", &path))?;
            tracing::debug!(%chain, size, "gc removed snapshot");
            freed += size;
        }
        Ok(freed)
    }

    /// Bytes used by blobs and snapshots.
    pub fn disk_usage(&self) -> Result<u64, Error> {
        Ok(dir_size(&self.inner.blobs.dir) + dir_size(&self.inner.snapshots))
    }
}
