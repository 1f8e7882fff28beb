//! Pushing images: layers and config the registry lacks, then the stored manifest as is, so
//! the pushed digest is the one the store records.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::reference::parse_reference;
use crate::registry::{auth_of, map_err};
use crate::store::{resolve_id, short_id, Credentials, ImageStore, Progress};

/// Blobs up to this size are sent in one piece (with oci-client's monolithic fallback);
/// larger ones are streamed from disk in chunks.
const STREAM_THRESHOLD: u64 = 16 * 1024 * 1024;
const CHUNK: usize = 8 * 1024 * 1024;

enum StreamError {
    Io(std::io::Error),
    Registry(oci_client::errors::OciDistributionError),
}

impl ImageStore {
    /// Pushes the image tagged `reference`; returns the manifest digest (`sha256:…`).
    pub async fn push(
        &self,
        reference: &str,
        creds: Option<Credentials>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<String, Error> {
        let r = parse_reference(reference)?;
        if r.digest.is_some() {
            return Err(Error::InvalidReference(format!(
                "{reference}: push needs a tag, not a digest"
            )));
        }
        let ctx = format!("push {r}");
        let (id, rec) = {
            let state = self.lock_state();
            let (id, _) = resolve_id(&state, &r.full())
                .map_err(|_| Error::NotFound(format!("{r}: tag does not exist")))?;
            let rec = state
                .images
                .get(&id)
                .cloned()
                .ok_or_else(|| Error::NotFound(reference.to_string()))?;
            (id, rec)
        };
        // Hold what we send against a concurrent gc.
        let mut pins = self.pin_guard();
        pins.pin(&id);
        pins.pin(&rec.manifest);
        for l in &rec.layers {
            pins.pin(&l.blob);
        }
        let manifest = self.inner.blobs.read(&rec.manifest)?;

        let client = self.client_for(&r);
        let auth = auth_of(creds);
        let oref = r.to_oci();
        client
            .store_auth_if_needed(oref.resolve_registry(), &auth)
            .await;

        for l in &rec.layers {
            progress(Progress::new(&short_id(&l.blob), "Preparing"));
        }
        for blob in rec
            .layers
            .iter()
            .map(|l| &l.blob)
            .chain(std::iter::once(&id))
        {
            let is_layer = *blob != id;
            let short = short_id(blob);
            let report = |status: &str| {
                if is_layer {
                    progress(Progress::new(&short, status));
                }
            };
            let exists = client
                .blob_exists(&oref, blob)
                .await
                .map_err(map_err(format!("{ctx}: check blob {blob}"), &r))?;
            if exists {
                report("Layer already exists");
                continue;
            }
            let path = self.inner.blobs.path(blob)?;
            let size = self.inner.blobs.size(blob)?;
            if is_layer {
                progress(Progress {
                    id: short.clone(),
                    status: "Pushing".into(),
                    current: Some(0),
                    total: Some(size),
                });
            }
            let upload_ctx = format!("{ctx}: upload blob {blob}");
            if size <= STREAM_THRESHOLD {
                let data = tokio::fs::read(&path)
                    .await
                    .map_err(Error::io(format!("{ctx}: read blob"), &path))?;
                client
                    .push_blob(&oref, data, blob)
                    .await
                    .map_err(map_err(upload_ctx, &r))?;
            } else {
                self.push_streamed(&client, &oref, blob, &path, size, &|sent| {
                    if is_layer {
                        progress(Progress {
                            id: short.clone(),
                            status: "Pushing".into(),
                            current: Some(sent),
                            total: Some(size),
                        });
                    }
                })
                .await
                .map_err(|e| match e {
                    StreamError::Io(e) => Error::io(format!("{ctx}: read blob"), &path)(e),
                    StreamError::Registry(e) => map_err(upload_ctx, &r)(e),
                })?;
            }
            report("Pushed");
        }

        let content_type = http::HeaderValue::from_str(&rec.manifest_media_type).map_err(|_| {
            Error::InvalidInput(format!(
                "{ctx}: bad media type {:?}",
                rec.manifest_media_type
            ))
        })?;
        client
            .push_manifest_raw(&oref, manifest, content_type)
            .await
            .map_err(map_err(format!("{ctx}: upload manifest"), &r))?;

        // The registry names the manifest by the digest of the bytes we sent.
        let digest = rec.manifest.clone();
        let mut state = self.lock_state();
        if let Some(img) = state.images.get_mut(&id) {
            let full = r.with_digest(&digest).full();
            if !img.repo_digests.contains(&full) {
                img.repo_digests.push(full);
            }
            self.save_state(&state)?;
        }
        tracing::info!(reference = %r, %digest, "pushed image");
        Ok(digest)
    }
}

impl ImageStore {
    /// Streams the blob at `path` to the registry in chunks, reporting bytes sent.
    async fn push_streamed(
        &self,
        client: &oci_client::Client,
        oref: &oci_client::Reference,
        digest: &str,
        path: &Path,
        size: u64,
        report: &(dyn Fn(u64) + Send + Sync),
    ) -> std::result::Result<(), StreamError> {
        let file = tokio::fs::File::open(path).await.map_err(StreamError::Io)?;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let stream = futures::stream::try_unfold(file, move |mut f| {
            let counter = counter.clone();
            async move {
                let mut buf = vec![0u8; CHUNK];
                let mut n = 0;
                while n < CHUNK {
                    let got = f.read(&mut buf[n..]).await?;
                    if got == 0 {
                        break;
                    }
                    n += got;
                }
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                counter.fetch_add(n as u64, Ordering::Relaxed);
                Ok(Some((bytes::Bytes::from(buf), f)))
            }
        });
        let upload = client.push_blob_stream(oref, stream, digest, Some(size));
        tokio::pin!(upload);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                res = &mut upload => return res.map(|_| ()).map_err(StreamError::Registry),
                _ = tick.tick() => report(sent.load(Ordering::Relaxed)),
            }
        }
    }
}
