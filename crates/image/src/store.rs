//! The image store: opening it, resolving references, listing and tagging.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use oci_spec::image::ImageConfiguration;
use serde::Serialize;

use crate::blob::{Blobs, PinGuard, Pins};
use crate::error::{Error, Result};
use crate::reference::{parse_reference, Reference};
use crate::state::{ImageRecord, State};

/// Settings of an [`ImageStore`].
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// Registries (`host[:port]`) spoken to over plain HTTP. Loopback registries (127.0.0.0/8,
    /// `localhost`, `::1`) always are.
    pub insecure_registries: Vec<String>,
}

/// An image as the engine sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Image {
    /// `sha256:<hex of the config blob>`, as docker.
    pub id: String,
    /// Familiar form, e.g. `busybox:latest`.
    pub repo_tags: Vec<String>,
    /// `busybox@sha256:<manifest digest>` when known (pulled or pushed).
    pub repo_digests: Vec<String>,
    /// RFC 3339, from the config.
    pub created: Option<String>,
    /// Sum of the uncompressed layer sizes.
    pub size: u64,
    /// The whole config blob.
    pub config: ImageConfiguration,
    pub manifest_digest: Option<String>,
}

/// One step of `docker rmi`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum RemoveAction {
    Untagged(String),
    Deleted(String),
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub deleted: Vec<RemoveAction>,
    pub space_reclaimed: u64,
}

/// Registry credentials; bearer tokens are obtained with them by oci-client.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A progress event of pull or push, in docker's words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// 12-hex short layer digest, or "".
    pub id: String,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

impl Progress {
    pub(crate) fn new(id: &str, status: &str) -> Progress {
        Progress {
            id: id.to_string(),
            status: status.to_string(),
            current: None,
            total: None,
        }
    }
}

/// The OCI content store. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub root: PathBuf,
    pub tmp: PathBuf,
    pub snapshots: PathBuf,
    pub state_path: PathBuf,
    pub blobs: Blobs,
    pub state: Mutex<State>,
    pub pins: Arc<Pins>,
    pub opts: StoreOptions,
    /// Per-blob locks so concurrent pulls fetch each blob once.
    pub inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Serializes snapshot creation so each layer is unpacked once.
    pub unpack_lock: Mutex<()>,
}

/// How a reference matched an image.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Matched {
    Tag(String),
    Digest(String),
    Id,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: impl Into<PathBuf>, opts: StoreOptions) -> Result<ImageStore, Error> {
        let root = root.into();
        let tmp = root.join("tmp");
        let blob_dir = root.join("blobs").join("sha256");
        let snapshots = root.join("snapshots");
        for d in [&root, &blob_dir, &snapshots] {
            fs::create_dir_all(d).map_err(Error::io("create store directory", d))?;
        }
        // Leftovers of interrupted writes and unpacks.
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(Error::io("create store directory", &tmp))?;
        let state_path = root.join("images.json");
        let state = State::load(&state_path)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(ImageStore {
            inner: Arc::new(Inner {
                blobs: Blobs {
                    dir: blob_dir,
                    tmp: tmp.clone(),
                },
                root,
                tmp,
                snapshots,
                state_path,
                state: Mutex::new(state),
                pins: Arc::new(Pins::default()),
                opts,
                inflight: Mutex::new(HashMap::new()),
                unpack_lock: Mutex::new(()),
            }),
        })
    }

    /// The directory everything lives under.
    /// The image's config blob as JSON, with the docker fields OCI's struct drops
    /// (`config.Healthcheck`, `config.OnBuild`, `config.Shell`).
    pub fn raw_config(&self, image: &Image) -> Result<serde_json::Value, Error> {
        let raw = self.inner.blobs.read(&image.id)?;
        serde_json::from_slice(&raw).map_err(Error::json(format!("config of image {}", image.id)))
    }

    pub fn root(&self) -> &std::path::Path {
        &self.inner.root
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn save_state(&self, state: &State) -> Result<()> {
        state.save(&self.inner.tmp, &self.inner.state_path)
    }

    pub(crate) fn pin_guard(&self) -> PinGuard {
        PinGuard::new(&self.inner.pins)
    }

    /// Finds an image by name, `name:tag`, `name@digest`, full id or unique id prefix.
    pub fn resolve(&self, reference: &str) -> Result<Image, Error> {
        let state = self.lock_state();
        let (id, _) = resolve_id(&state, reference)?;
        self.image_of(&state, &id)
    }

    /// All images, newest first.
    pub fn list(&self) -> Result<Vec<Image>, Error> {
        let state = self.lock_state();
        let mut ids: Vec<(&String, &ImageRecord)> = state.images.iter().collect();
        ids.sort_by(|a, b| b.1.added.cmp(&a.1.added).then(a.0.cmp(b.0)));
        // One unreadable image must not hide the others.
        Ok(ids
            .iter()
            .filter_map(|(id, _)| match self.image_of(&state, id) {
                Ok(img) => Some(img),
                Err(e) => {
                    tracing::warn!(image = %id, error = %e, "skipping unreadable image");
                    None
                }
            })
            .collect())
    }

    /// Points `target` at the image `source` resolves to.
    pub fn tag(&self, source: &str, target: &str) -> Result<(), Error> {
        let r = parse_reference(target)?;
        if r.digest.is_some() {
            return Err(Error::InvalidReference(format!(
                "{target}: a tag cannot carry a digest"
            )));
        }
        let mut state = self.lock_state();
        let (id, _) = resolve_id(&state, source)?;
        state.tags.insert(r.full(), id);
        self.save_state(&state)
    }

    pub(crate) fn image_of(&self, state: &State, id: &str) -> Result<Image> {
        let rec = state
            .images
            .get(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let raw = self.inner.blobs.read(id)?;
        let config: ImageConfiguration = serde_json::from_slice(&raw)
            .map_err(Error::json(format!("parse config of image {id}")))?;
        let familiar = |full: &String| {
            parse_reference(full)
                .map(|r| r.to_string())
                .unwrap_or_else(|_| full.clone())
        };
        Ok(Image {
            id: id.to_string(),
            repo_tags: state.tags_of(id).iter().map(familiar).collect(),
            repo_digests: rec.repo_digests.iter().map(familiar).collect(),
            created: config.created().clone(),
            size: rec.size(),
            config,
            manifest_digest: Some(rec.manifest.clone()),
        })
    }

    /// Records an image and points `tags` at it, in one metadata write.
    pub(crate) fn commit_image(
        &self,
        id: &str,
        mut rec: ImageRecord,
        tags: &[Reference],
        repo_digest: Option<&Reference>,
    ) -> Result<()> {
        let mut state = self.lock_state();
        if let Some(old) = state.images.get(id) {
            for d in &old.repo_digests {
                if !rec.repo_digests.contains(d) {
                    rec.repo_digests.push(d.clone());
                }
            }
            if !old.added.is_empty() {
                rec.added = old.added.clone();
            }
        }
        if let Some(d) = repo_digest {
            let full = d.full();
            if !rec.repo_digests.contains(&full) {
                rec.repo_digests.push(full);
            }
        }
        if rec.added.is_empty() {
            rec.added = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        }
        state.images.insert(id.to_string(), rec);
        for t in tags {
            if let Some(tag) = &t.tag {
                state.tags.insert(t.with_tag(tag).full(), id.to_string());
            }
        }
        self.save_state(&state)
    }
}

/// Resolves `reference` to an image id, saying how it matched.
pub(crate) fn resolve_id(state: &State, reference: &str) -> Result<(String, Matched)> {
    let not_found = || Error::NotFound(reference.to_string());
    if let Some(hex) = reference.strip_prefix("sha256:") {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidReference(reference.to_string()));
        }
        return by_prefix(state, hex).ok_or_else(not_found);
    }
    if let Ok(r) = parse_reference(reference) {
        if let Some(d) = &r.digest {
            let full = r.with_digest(d).full();
            if let Some((id, _)) = state
                .images
                .iter()
                .find(|(_, rec)| rec.repo_digests.contains(&full))
            {
                return Ok((id.clone(), Matched::Digest(full)));
            }
        } else if let Some(id) = state.tags.get(&r.full()) {
            return Ok((id.clone(), Matched::Tag(r.full())));
        }
    }
    let is_hex = !reference.is_empty()
        && reference.len() <= 64
        && reference
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if is_hex {
        if let Some(found) = by_prefix(state, reference) {
            return Ok(found);
        }
    }
    if parse_reference(reference).is_err() && !is_hex {
        return Err(Error::InvalidReference(reference.to_string()));
    }
    Err(not_found())
}

fn by_prefix(state: &State, hex: &str) -> Option<(String, Matched)> {
    let mut found = state
        .images
        .keys()
        .filter(|id| id["sha256:".len()..].starts_with(hex));
    let first = found.next()?;
    if found.next().is_some() {
        return None;
    }
    Some((first.clone(), Matched::Id))
}

/// `sha256:0123456789ab` → `0123456789ab`.
pub(crate) fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}
