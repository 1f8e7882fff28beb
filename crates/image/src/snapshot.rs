//! Snapshots: each layer unpacked once under `root/snapshots/<chain id hex>/fs`, shared by
//! every image whose stack has the same chain id.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::blob::PinGuard;
use crate::error::{Error, Result};
use crate::fsutil::{remove_all, sha256_digest, temp_path};
use crate::state::LayerRecord;
use crate::store::{Image, ImageStore};
use crate::unpack::unpack_layer;

/// Written next to `fs` so a reused snapshot still knows its layer.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotMeta {
    pub diff_id: String,
    pub size: u64,
}

/// The result of making sure one layer is unpacked.
pub(crate) struct Snapshot {
    pub chain_id: String,
    pub diff_id: String,
    pub size: u64,
}

pub(crate) fn pin_key(chain_id: &str) -> String {
    format!("snapshot:{chain_id}")
}

pub(crate) fn chain_of(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(p) => sha256_digest(format!("{p} {diff_id}").as_bytes()),
    }
}

impl ImageStore {
    /// Unpacks each layer of `image` once and returns the `fs` dirs, lowest first, ready to be
    /// overlayfs lowerdirs.
    pub fn layers(&self, image: &Image) -> Result<Vec<PathBuf>, Error> {
        let rec = self
            .lock_state()
            .images
            .get(&image.id)
            .cloned()
            .ok_or_else(|| Error::NotFound(image.id.clone()))?;
        let mut pins = self.pin_guard();
        let mut parent: Option<String> = None;
        let mut dirs = Vec::with_capacity(rec.layers.len());
        for l in &rec.layers {
            let snap = self.snapshot(&l.blob, Some(&l.diff_id), parent.as_deref(), &mut pins)?;
            dirs.push(self.snapshot_dir(&snap.chain_id).join("fs"));
            parent = Some(snap.chain_id);
        }
        Ok(dirs)
    }

    pub(crate) fn snapshot_dir(&self, chain_id: &str) -> PathBuf {
        let hex = chain_id.strip_prefix("sha256:").unwrap_or(chain_id);
        self.inner.snapshots.join(hex)
    }

    /// Unpacks all `layers` (checking their diff ids) and fills in their diff ids and sizes.
    pub(crate) fn snapshot_all(
        &self,
        layers: &mut [LayerRecord],
        pins: &mut PinGuard,
    ) -> Result<()> {
        let mut parent: Option<String> = None;
        for l in layers.iter_mut() {
            let expected = (!l.diff_id.is_empty()).then(|| l.diff_id.clone());
            let snap = self.snapshot(&l.blob, expected.as_deref(), parent.as_deref(), pins)?;
            l.diff_id = snap.diff_id;
            l.size = snap.size;
            parent = Some(snap.chain_id);
        }
        Ok(())
    }

    /// Makes sure the layer stored as `blob`, on top of the chain `parent`, is unpacked.
    /// With `diff_id` given an existing snapshot is reused and a mismatch is an error.
    pub(crate) fn snapshot(
        &self,
        blob: &str,
        diff_id: Option<&str>,
        parent: Option<&str>,
        pins: &mut PinGuard,
    ) -> Result<Snapshot> {
        let _one_at_a_time = self
            .inner
            .unpack_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(d) = diff_id {
            let chain_id = chain_of(parent, d);
            pins.pin(&pin_key(&chain_id));
            if let Some(meta) = self.read_snapshot_meta(&chain_id) {
                return Ok(Snapshot {
                    chain_id,
                    diff_id: meta.diff_id,
                    size: meta.size,
                });
            }
        }
        let subject = format!("layer {blob}");
        let work = temp_path(&self.inner.tmp, "unpack");
        let fs_dir = work.join("fs");
        let result = (|| {
            fs::create_dir_all(&fs_dir).map_err(Error::io("create snapshot", &fs_dir))?;
            let mut f = self.inner.blobs.open(blob)?;
            let u = unpack_layer(&mut f, &fs_dir, &subject)?;
            if let Some(d) = diff_id {
                if d != u.diff_id {
                    return Err(Error::Digest {
                        subject,
                        expected: d.to_string(),
                        actual: u.diff_id,
                    });
                }
            }
            let meta = SnapshotMeta {
                diff_id: u.diff_id.clone(),
                size: u.size,
            };
            let data =
                serde_json::to_vec(&meta).map_err(Error::json("encode snapshot metadata"))?;
            let meta_path = work.join("meta.json");
            fs::write(&meta_path, data)
                .map_err(Error::io("write snapshot metadata", &meta_path))?;
            let chain_id = chain_of(parent, &u.diff_id);
            let dst = self.snapshot_dir(&chain_id);
            let renamed = pins.pin_while(&pin_key(&chain_id), || {
                if self.read_snapshot_meta(&chain_id).is_some() {
                    return Ok(false);
                }
                let _ = remove_all(&dst);
                fs::rename(&work, &dst).map(|_| true)
            });
            renamed.map_err(Error::io("store snapshot", &dst))?;
            Ok(Snapshot {
                chain_id,
                diff_id: u.diff_id,
                size: u.size,
            })
        })();
        let _ = remove_all(&work);
        result
    }

    pub(crate) fn read_snapshot_meta(&self, chain_id: &str) -> Option<SnapshotMeta> {
        let dir = self.snapshot_dir(chain_id);
        if !dir.join("fs").is_dir() {
            return None;
        }
        let data = fs::read(dir.join("meta.json")).ok()?;
        serde_json::from_slice(&data).ok()
    }
}
