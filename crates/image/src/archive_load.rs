//! `docker load`: docker-save archives (`manifest.json`, including the legacy `<id>/layer.tar`
//! layout) and OCI image layouts (`index.json`, `blobs/sha256`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::blob::PinGuard;
use crate::error::{Error, Result};
use crate::fsutil::{decompress, remove_all, sha256_digest, temp_path, Compression};
use crate::manifest::{self, Parsed};
use crate::reference::{parse_reference, Reference};
use crate::state::LayerRecord;
use crate::store::{Image, ImageStore};
use crate::unpack::clean_path;

/// How many links may be followed to find one archive member.
const MAX_LINK_HOPS: usize = 16;

#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The archive's regular files, extracted under a scratch dir. Links between members are kept
/// as a map, never created on disk, so nothing can be written or read through them.
struct Extracted {
    dir: PathBuf,
    links: HashMap<PathBuf, PathBuf>,
}

impl Extracted {
    fn resolve(&self, name: &str) -> Result<PathBuf> {
        let bad = || Error::Unsafe(format!("load: archive member {name:?} escapes the archive"));
        let mut rel = clean_path(Path::new(name)).ok_or_else(bad)?;
        for _ in 0..MAX_LINK_HOPS {
            match self.links.get(&rel) {
                Some(next) => rel = next.clone(),
                None => return Ok(self.dir.join(rel)),
            }
        }
        Err(Error::InvalidInput(format!(
            "load: too many links resolving {name:?}"
        )))
    }

    fn open(&self, name: &str) -> Result<File> {
        let p = self.resolve(name)?;
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                Error::InvalidInput(format!("load: archive member {name:?} is missing"))
            }
            _ => Error::io("load: open archive member", &p)(e),
        })
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        let p = self.resolve(name)?;
        self.open(name)?
            .read_to_end(&mut data)
            .map_err(Error::io("load: read archive member", &p))?;
        Ok(data)
    }

    fn has(&self, name: &str) -> bool {
        self.resolve(name).is_ok_and(|p| p.is_file())
    }
}

impl ImageStore {
    /// Loads a docker-save archive or an OCI layout tar (plain or compressed); returns docker's
    /// "Loaded image: …" / "Loaded image ID: …" lines. Every layer is unpacked, so unsafe
    /// content is refused here.
    pub fn load(&self, archive: &mut dyn Read) -> Result<Vec<String>, Error> {
        let work = temp_path(&self.inner.tmp, "load");
        let mut pins = self.pin_guard();
        let result = self
            .extract_archive(archive, &work)
            .and_then(|ex| self.load_extracted(&ex, &mut pins));
        let _ = remove_all(&work);
        if result.is_err() {
            drop(pins);
            let _ = self.gc();
        }
        result
    }

    fn extract_archive(&self, archive: &mut dyn Read, work: &Path) -> Result<Extracted> {
        fs::create_dir_all(work).map_err(Error::io("load: create scratch dir", work))?;
        let (plain, _) = decompress(archive).map_err(Error::io("load: read archive", work))?;
        let mut tar = tar::Archive::new(plain);
        let bad_tar =
            |e: io::Error| Error::InvalidInput(format!("load: not a valid tar archive: {e}"));
        let mut links = HashMap::new();
        for entry in tar.entries().map_err(bad_tar)? {
            let mut entry = entry.map_err(bad_tar)?;
            let name = entry.path().map_err(bad_tar)?.into_owned();
            let shown = name.display().to_string();
            let rel = clean_path(&name).ok_or_else(|| {
                Error::Unsafe(format!("load: archive entry {shown:?} escapes the root"))
            })?;
            if rel.as_os_str().is_empty() {
                continue;
            }
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dst = work.join(&rel);
                    if let Some(parent) = dst.parent() {
                        fs::create_dir_all(parent).map_err(Error::io("load: create", parent))?;
                    }
                    let mut f = File::create(&dst).map_err(Error::io("load: create", &dst))?;
                    io::copy(&mut entry, &mut f).map_err(bad_tar)?;
                    links.remove(&rel);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(bad_tar)?
                        .ok_or_else(|| {
                            Error::InvalidInput(format!("load: link {shown:?} has no target"))
                        })?
                        .into_owned();
                    // Symlinks are relative to their directory, hard links to the archive root.
                    let joined = if kind == tar::EntryType::Symlink && target.is_relative() {
                        rel.parent().unwrap_or(Path::new("")).join(&target)
                    } else {
                        target.clone()
                    };
                    let resolved = normalize(&joined).ok_or_else(|| {
                        Error::Unsafe(format!(
                            "load: archive link {shown:?} -> {:?} escapes the archive",
                            target.display().to_string()
                        ))
                    })?;
                    links.insert(rel, resolved);
                }
                _ => {}
            }
        }
        Ok(Extracted {
            dir: work.to_path_buf(),
            links,
        })
    }

    fn load_extracted(&self, ex: &Extracted, pins: &mut PinGuard) -> Result<Vec<String>> {
        if ex.has("manifest.json") {
            let data = ex.read("manifest.json")?;
            let entries: Vec<DockerManifestEntry> =
                serde_json::from_slice(&data).map_err(Error::json("load: parse manifest.json"))?;
            let mut out = Vec::new();
            for e in entries {
                let tags = e
                    .repo_tags
                    .unwrap_or_default()
                    .iter()
                    .map(|t| parse_reference(t))
                    .collect::<Result<Vec<_>>>()?;
                let config = ex.read(&e.config)?;
                let layers = e
                    .layers
                    .iter()
                    .map(|l| self.load_layer_file(ex, l, None, pins))
                    .collect::<Result<Vec<_>>>()?;
                let img = self.load_image(&config, layers, None, &tags, pins)?;
                report(&mut out, &img, &tags);
            }
            return Ok(out);
        }
        if ex.has("index.json") {
            return self.load_oci_layout(ex, pins);
        }
        Err(Error::InvalidInput(
            "load: the archive has neither manifest.json nor index.json (docker save archives from before docker 1.10 are not supported)".into(),
        ))
    }

    fn load_oci_layout(&self, ex: &Extracted, pins: &mut PinGuard) -> Result<Vec<String>> {
        let index = ex.read("index.json")?;
        let Parsed::Index { manifests } =
            manifest::parse(&index, Some(manifest::OCI_INDEX), "index.json")?
        else {
            return Err(Error::InvalidInput(
                "load: index.json is not an image index".into(),
            ));
        };
        let mut out = Vec::new();
        for desc in &manifests {
            let tags: Vec<Reference> = desc
                .annotations
                .as_ref()
                .and_then(|a| {
                    a.get("io.containerd.image.name").or_else(|| {
                        a.get("org.opencontainers.image.ref.name")
                            .filter(|n| n.contains([':', '/']))
                    })
                })
                .and_then(|n| parse_reference(n).ok())
                .filter(|r| r.tag.is_some())
                .into_iter()
                .collect();
            let mut digest = desc.digest.clone();
            let mut hint = desc.media_type.clone();
            let mut data = read_blob(ex, &digest)?;
            // Nested indexes: take this machine's platform.
            for _ in 0..4 {
                match manifest::parse(&data, Some(&hint), &digest)? {
                    Parsed::Index { manifests } => {
                        let pick = manifest::pick_platform(&manifests).ok_or_else(|| {
                            Error::Unsupported(format!(
                                "load: index {digest} has no linux/{} image",
                                manifest::host_arch()
                            ))
                        })?;
                        digest = pick.digest.clone();
                        hint = pick.media_type.clone();
                        data = read_blob(ex, &digest)?;
                    }
                    Parsed::Manifest {
                        media_type,
                        config,
                        layers,
                    } => {
                        let config_data = read_blob(ex, &config.digest)?;
                        let layers = layers
                            .iter()
                            .map(|l| {
                                let name = blob_name(&l.digest);
                                self.load_layer_file(ex, &name, Some(&l.digest), pins)
                            })
                            .collect::<Result<Vec<_>>>()?;
                        let img = self.load_image(
                            &config_data,
                            layers,
                            Some((&data, &media_type)),
                            &tags,
                            pins,
                        )?;
                        report(&mut out, &img, &tags);
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Stores one layer file as a blob (verifying it when its digest is known).
    fn load_layer_file(
        &self,
        ex: &Extracted,
        name: &str,
        digest: Option<&str>,
        pins: &mut PinGuard,
    ) -> Result<LayerRecord> {
        let mut f = ex.open(name)?;
        let mut head = [0u8; 8];
        let n = f
            .read(&mut head)
            .map_err(Error::io("load: read layer", ex.resolve(name)?))?;
        let compression = Compression::detect(&head[..n]);
        let mut r = io::Read::chain(&head[..n], f);
        let (blob, _) = self.inner.blobs.write(&mut r, digest, pins)?;
        Ok(LayerRecord {
            blob,
            media_type: compression.oci_layer_media_type().to_string(),
            diff_id: String::new(),
            size: 0,
        })
    }

    /// Checks the layers against the config's diff ids while unpacking them, then records.
    fn load_image(
        &self,
        config: &[u8],
        mut layers: Vec<LayerRecord>,
        manifest: Option<(&[u8], &str)>,
        tags: &[Reference],
        pins: &mut PinGuard,
    ) -> Result<Image> {
        let id = sha256_digest(config);
        let diff_ids = diff_ids(config, &id)?;
        if diff_ids.len() != layers.len() {
            return Err(Error::InvalidInput(format!(
                "load: image {id} has {} layers but its config lists {}",
                layers.len(),
                diff_ids.len()
            )));
        }
        for (l, d) in layers.iter_mut().zip(diff_ids) {
            l.diff_id = d;
        }
        self.snapshot_all(&mut layers, pins)?;
        self.finish_image(config, layers, manifest, tags, pins)
    }
}

/// The diff ids a config lists.
pub(crate) fn diff_ids(config: &[u8], id: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    let c: Config = serde_json::from_slice(config)
        .map_err(Error::json(format!("parse config of image {id}")))?;
    if let Some(bad) = c
        .rootfs
        .diff_ids
        .iter()
        .find(|d| !crate::reference::is_digest(d))
    {
        return Err(Error::InvalidInput(format!(
            "image {id}: unsupported diff id {bad:?}"
        )));
    }
    Ok(c.rootfs.diff_ids)
}

fn report(out: &mut Vec<String>, img: &Image, tags: &[Reference]) {
    if tags.is_empty() {
        out.push(format!("Loaded image ID: {}", img.id));
    }
    for t in tags {
        out.push(format!("Loaded image: {t}"));
    }
}

fn blob_name(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// Reads a blob of an OCI layout and checks its digest.
fn read_blob(ex: &Extracted, digest: &str) -> Result<Vec<u8>> {
    if !crate::reference::is_digest(digest) {
        return Err(Error::InvalidInput(format!(
            "load: unsupported digest {digest:?}"
        )));
    }
    let data = ex.read(&blob_name(digest))?;
    let actual = sha256_digest(&data);
    if actual != digest {
        return Err(Error::Digest {
            subject: format!("load: blob {digest}"),
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(data)
}

/// Lexically resolves `.` and `..`; `None` if it climbs above the start.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir if !out.pop() => return None,
            _ => {}
        }
    }
    Some(out)
}
