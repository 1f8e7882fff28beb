//! The store's metadata: images and tags, kept in one small JSON file written atomically.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::atomic_write;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// Image id (config digest) → what we know about it.
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
    /// Full normalized `registry/repository:tag` → image id.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    /// Digest of the (single-platform) manifest blob that describes the image.
    pub manifest: String,
    pub manifest_media_type: String,
    /// Layers, lowest first.
    pub layers: Vec<LayerRecord>,
    /// Full normalized `registry/repository@sha256:…` the image is known by remotely.
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// When the store got it (RFC 3339), to order listings.
    #[serde(default)]
    pub added: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    /// Digest of the blob as stored (maybe compressed).
    pub blob: String,
    pub media_type: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub size: u64,
}

impl ImageRecord {
    /// Chain ids of the layers, lowest first (as the OCI image spec defines them).
    pub fn chain_ids(&self) -> Vec<String> {
        chain_ids(self.layers.iter().map(|l| l.diff_id.as_str()))
    }

    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

pub(crate) fn chain_ids<'a>(diff_ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.to_string(),
            Some(prev) => crate::fsutil::sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

impl State {
    pub fn load(path: &Path) -> Result<State> {
        match std::fs::read(path) {
            Ok(data) => serde_json::from_slice(&data).map_err(Error::json(format!(
                "parse image metadata {}",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::io("read image metadata", path)(e)),
        }
    }

    pub fn save(&self, tmp: &Path, path: &Path) -> Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(Error::json("encode image metadata"))?;
        atomic_write(tmp, path, &data)
    }

    /// Tags (full form) pointing at `id`, sorted.
    pub fn tags_of(&self, id: &str) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, v)| v.as_str() == id)
            .map(|(k, _)| k.clone())
            .collect()
    }
}
