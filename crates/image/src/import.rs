//! `docker import`: one rootfs tarball becomes a one-layer image.

use std::fs::File;
use std::io::{self, Read, Write};

use serde_json::{json, Map, Value};

use crate::blob::PinGuard;
use crate::changes::apply_changes;
use crate::error::{Error, Result};
use crate::fsutil::{decompress, temp_path, Compression, HashingWriter};
use crate::manifest;
use crate::reference::{parse_reference, Reference};
use crate::state::{ImageRecord, LayerRecord};
use crate::store::{Image, ImageStore};

/// Options of [`ImageStore::import`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// `repository[:tag]` to tag the image with.
    pub reference: Option<String>,
    /// Dockerfile instructions (`CMD`, `ENV`, …) applied to the config.
    pub changes: Vec<String>,
    /// Commit message, kept as the history comment.
    pub message: Option<String>,
}

impl ImageStore {
    /// Imports a plain, gzip or zstd rootfs tarball as a one-layer image.
    pub fn import(&self, rootfs_tar: &mut dyn Read, opts: ImportOptions) -> Result<Image, Error> {
        let tag = opts
            .reference
            .as_deref()
            .map(|r| {
                let parsed = parse_reference(r)?;
                if parsed.digest.is_some() {
                    return Err(Error::InvalidReference(format!(
                        "{r}: import needs a tag, not a digest"
                    )));
                }
                Ok(parsed)
            })
            .transpose()?;
        let mut config_obj = Map::new();
        apply_changes(&mut config_obj, &opts.changes)?;

        let mut pins = self.pin_guard();
        // Layers are kept uncompressed, so the blob digest is the diff id, as docker does.
        let (blob, _) = self.write_uncompressed(rootfs_tar, &mut pins)?;
        let snap = match self.snapshot(&blob, Some(&blob), None, &mut pins) {
            Ok(s) => s,
            Err(e) => {
                // Leave nothing of a refused tarball behind.
                drop(pins);
                let _ = self.gc();
                return Err(e);
            }
        };
        let layer = LayerRecord {
            blob: blob.clone(),
            media_type: Compression::None.oci_layer_media_type().to_string(),
            diff_id: snap.diff_id,
            size: snap.size,
        };

        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let comment = opts
            .message
            .clone()
            .unwrap_or_else(|| "Imported from -".to_string());
        let config = json!({
            "architecture": manifest::host_arch(),
            "os": "linux",
            "created": now,
            "comment": opts.message.clone().unwrap_or_default(),
            "config": Value::Object(config_obj),
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created": now, "created_by": "", "comment": comment}],
        });
        let config = serde_json::to_vec(&config).map_err(Error::json("encode image config"))?;
        let tags: Vec<Reference> = tag.into_iter().collect();
        self.finish_image(&config, vec![layer], None, &tags, &mut pins)
    }

    /// Writes the decompressed content of `r` as a blob; returns its digest and size.
    pub(crate) fn write_uncompressed(
        &self,
        r: &mut dyn Read,
        pins: &mut PinGuard,
    ) -> Result<(String, u64)> {
        let tmp = &self.inner.tmp;
        let t = temp_path(tmp, "import");
        let res = (|| -> Result<(String, u64)> {
            let (mut plain, _) = decompress(r).map_err(Error::io("read image tarball", &t))?;
            let f = File::create(&t).map_err(Error::io("create", &t))?;
            let mut w = HashingWriter::new(io::BufWriter::new(f));
            io::copy(&mut plain, &mut w)
                .map_err(|e| Error::InvalidInput(format!("read image tarball: {e}")))?;
            w.flush().map_err(Error::io("write", &t))?;
            let got = w.digest();
            let f = w
                .inner
                .into_inner()
                .map_err(|e| Error::io("write", &t)(e.into_error()))?;
            f.sync_all().map_err(Error::io("sync", &t))?;
            Ok(got)
        })();
        match res {
            Ok((digest, size)) => {
                self.inner.blobs.commit_temp(&t, &digest, None, pins)?;
                Ok((digest, size))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&t);
                Err(e)
            }
        }
    }

    /// Stores `config` and a manifest for `layers` (already stored and unpacked; the given
    /// manifest bytes and media type, or a new OCI manifest), records the image and tags it.
    pub(crate) fn finish_image(
        &self,
        config: &[u8],
        layers: Vec<LayerRecord>,
        existing_manifest: Option<(&[u8], &str)>,
        tags: &[Reference],
        pins: &mut PinGuard,
    ) -> Result<Image> {
        let id = self.inner.blobs.write_bytes(config, pins)?;
        let mut descs = Vec::with_capacity(layers.len());
        for l in &layers {
            descs.push((
                l.media_type.clone(),
                l.blob.clone(),
                self.inner.blobs.size(&l.blob)?,
            ));
        }
        let (m, media_type) = match existing_manifest {
            Some((m, mt)) => (m.to_vec(), mt.to_string()),
            None => (
                manifest::build((&id, config.len() as u64), &descs),
                manifest::OCI_MANIFEST.to_string(),
            ),
        };
        let manifest_digest = self.inner.blobs.write_bytes(&m, pins)?;
        let rec = ImageRecord {
            manifest: manifest_digest,
            manifest_media_type: media_type,
            layers,
            repo_digests: Vec::new(),
            added: String::new(),
        };
        self.commit_image(&id, rec, tags, None)?;
        tracing::info!(%id, tags = ?tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(), "stored image");
        let state = self.lock_state();
        self.image_of(&state, &id)
    }
}
