//! Pulling images: manifest (choosing linux/amd64 from indexes), config and layers, each blob
//! fetched once even when several pulls want it, verified, then unpacked.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Arc;

use futures::StreamExt;

use crate::archive_load::diff_ids;
use crate::blob::PinGuard;
use crate::error::{Error, Result};
use crate::fsutil::{sha256_digest, temp_path, HashingWriter};
use crate::manifest::{self, Descriptor, Parsed};
use crate::reference::{parse_reference, Reference};
use crate::registry::{auth_of, map_err};
use crate::state::{ImageRecord, LayerRecord};
use crate::store::{short_id, Credentials, Image, ImageStore, Progress};

type ProgressFn<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// Emit a progress event at most this often while downloading.
const PROGRESS_STEP: u64 = 512 * 1024;

impl ImageStore {
    /// Pulls `reference` (by tag or digest), verifies every blob and unpacks the layers.
    pub async fn pull(
        &self,
        reference: &str,
        creds: Option<Credentials>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Image, Error> {
        let r = parse_reference(reference)?;
        let ctx = format!("pull {r}");
        let client = self.client_for(&r);
        let auth = auth_of(creds);
        let oref = r.to_oci();

        let (top, _) = client
            .pull_manifest_raw(&oref, &auth, manifest::ACCEPTED)
            .await
            .map_err(map_err(format!("{ctx}: fetch manifest"), &r))?;
        let top_digest = sha256_digest(&top);
        if let Some(d) = &r.digest {
            if *d != top_digest {
                return Err(Error::Digest {
                    subject: format!("{ctx}: manifest"),
                    expected: d.clone(),
                    actual: top_digest,
                });
            }
        }
        let (data, parsed) = match manifest::parse(&top, None, &top_digest)? {
            Parsed::Index { manifests } => {
                let pick = manifest::pick_platform(&manifests).ok_or_else(|| {
                    Error::NotFound(format!(
                        "{r}: no matching manifest for linux/{} in the manifest list entries",
                        manifest::host_arch()
                    ))
                })?;
                let pref = r.with_digest(&pick.digest).to_oci();
                let (data, _) = client
                    .pull_manifest_raw(&pref, &auth, manifest::ACCEPTED)
                    .await
                    .map_err(map_err(
                        format!("{ctx}: fetch manifest {}", pick.digest),
                        &r,
                    ))?;
                let actual = sha256_digest(&data);
                if actual != pick.digest {
                    return Err(Error::Digest {
                        subject: format!("{ctx}: manifest"),
                        expected: pick.digest.clone(),
                        actual,
                    });
                }
                let parsed = manifest::parse(&data, Some(&pick.media_type), &pick.digest)?;
                (data.to_vec(), parsed)
            }
            m => (top.to_vec(), m),
        };
        let Parsed::Manifest {
            media_type,
            config,
            layers,
        } = parsed
        else {
            return Err(Error::InvalidInput(format!("{ctx}: nested image index")));
        };

        let mut pins = self.pin_guard();
        self.fetch_blob(&client, &r, &config, None, &mut pins, &ctx)
            .await?;
        let config_data = self.inner.blobs.read(&config.digest)?;
        let diffs = diff_ids(&config_data, &config.digest)?;
        if diffs.len() != layers.len() {
            return Err(Error::InvalidInput(format!(
                "{ctx}: the manifest has {} layers but the config lists {}",
                layers.len(),
                diffs.len()
            )));
        }

        // Download all layers concurrently, then unpack them in order.
        let fetches = layers.iter().map(|l| async {
            let mut pins = self.pin_guard();
            self.fetch_blob(&client, &r, l, Some(progress), &mut pins, &ctx)
                .await
                .map(|_| pins)
        });
        let layer_pins = futures::future::try_join_all(fetches).await?;

        let mut records = Vec::with_capacity(layers.len());
        let mut parent: Option<String> = None;
        for (l, diff) in layers.iter().zip(&diffs) {
            let short = short_id(&l.digest);
            // Layers already unpacked were reported as "Already exists"; say nothing more.
            let fresh = self
                .read_snapshot_meta(&crate::snapshot::chain_of(parent.as_deref(), diff))
                .is_none();
            if fresh {
                progress(Progress::new(&short, "Extracting"));
            }
            let store = self.clone();
            let (blob, diff, par) = (l.digest.clone(), diff.clone(), parent.clone());
            let (snap, snap_pins) = tokio::task::spawn_blocking(move || {
                let mut p = store.pin_guard();
                (
                    store.snapshot(&blob, Some(&diff), par.as_deref(), &mut p),
                    p,
                )
            })
            .await
            .map_err(|e| Error::InvalidInput(format!("{ctx}: unpack task failed: {e}")))?;
            let snap = snap?;
            drop(snap_pins);
            if fresh {
                progress(Progress::new(&short, "Pull complete"));
            }
            records.push(LayerRecord {
                blob: l.digest.clone(),
                media_type: l.media_type.clone(),
                diff_id: snap.diff_id,
                size: snap.size,
            });
            parent = Some(snap.chain_id);
        }

        let manifest_digest = self.inner.blobs.write_bytes(&data, &mut pins)?;
        let rec = ImageRecord {
            manifest: manifest_digest,
            manifest_media_type: media_type,
            layers: records,
            repo_digests: Vec::new(),
            added: String::new(),
        };
        let tags: Vec<Reference> = if r.digest.is_none() {
            vec![r.clone()]
        } else {
            Vec::new()
        };
        self.commit_image(
            &config.digest,
            rec,
            &tags,
            Some(&r.with_digest(&top_digest)),
        )?;
        drop(layer_pins);
        tracing::info!(reference = %r, digest = %top_digest, id = %config.digest, "pulled image");
        let state = self.lock_state();
        self.image_of(&state, &config.digest)
    }

    /// Fetches blob `d` unless the store has it, verifying digest and size. Concurrent callers
    /// for one digest wait for the first and then find it present.
    async fn fetch_blob(
        &self,
        client: &oci_client::Client,
        r: &Reference,
        d: &Descriptor,
        progress: Option<ProgressFn<'_>>,
        pins: &mut PinGuard,
        ctx: &str,
    ) -> Result<()> {
        let short = short_id(&d.digest);
        let report = |p: Progress| {
            if let Some(f) = progress {
                f(p)
            }
        };
        let blob_path = self.inner.blobs.path(&d.digest)?;
        pins.pin(&d.digest);
        if blob_path.is_file() {
            report(Progress::new(&short, "Already exists"));
            return Ok(());
        }
        report(Progress::new(&short, "Pulling fs layer"));
        let lock = {
            let mut map = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            map.entry(d.digest.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        let guard = lock.lock().await;
        let result = if blob_path.is_file() {
            report(Progress::new(&short, "Download complete"));
            Ok(())
        } else {
            self.download(client, r, d, &report, pins, ctx).await
        };
        drop(guard);
        {
            let mut map = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if map.get(&d.digest).is_some_and(|l| Arc::ptr_eq(l, &lock)) {
                map.remove(&d.digest);
            }
        }
        result
    }

    async fn download(
        &self,
        client: &oci_client::Client,
        r: &Reference,
        d: &Descriptor,
        report: &(dyn Fn(Progress) + Send + Sync),
        pins: &mut PinGuard,
        ctx: &str,
    ) -> Result<()> {
        let short = short_id(&d.digest);
        let oref = r.to_oci();
        let desc = oci_client::manifest::OciDescriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size as i64,
            ..Default::default()
        };
        let ctx = format!("{ctx}: fetch blob {}", d.digest);
        let mut stream = client
            .pull_blob_stream(&oref, &desc)
            .await
            .map_err(map_err(ctx.clone(), r))?;
        let total = stream.content_length.or((d.size > 0).then_some(d.size));
        let t = temp_path(&self.inner.tmp, "pull");
        let result = async {
            let f = File::create(&t).map_err(Error::io("create", &t))?;
            let mut w = HashingWriter::new(BufWriter::new(f));
            let mut done = 0u64;
            let mut last = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(Error::io(ctx.clone(), &t))?;
                w.write_all(&chunk).map_err(Error::io("write", &t))?;
                done += chunk.len() as u64;
                if done - last >= PROGRESS_STEP || last == 0 {
                    last = done;
                    report(Progress {
                        id: short.clone(),
                        status: "Downloading".into(),
                        current: Some(done),
                        total,
                    });
                }
            }
            w.flush().map_err(Error::io("write", &t))?;
            let (digest, size) = w.digest();
            let f = w
                .inner
                .into_inner()
                .map_err(|e| Error::io("write", &t)(e.into_error()))?;
            f.sync_all().map_err(Error::io("sync", &t))?;
            report(Progress::new(&short, "Verifying Checksum"));
            if d.size > 0 && size != d.size {
                return Err(Error::Digest {
                    subject: format!("{ctx}: size"),
                    expected: d.size.to_string(),
                    actual: size.to_string(),
                });
            }
            self.inner
                .blobs
                .commit_temp(&t, &digest, Some(&d.digest), pins)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&t);
        }
        result?;
        report(Progress::new(&short, "Download complete"));
        Ok(())
    }
}
