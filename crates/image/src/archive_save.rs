//! `docker save`: one archive that is both a docker-save archive (`manifest.json`,
//! `repositories`) and an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256`), the
//! way docker 25+ writes it. Layers go in uncompressed, so their blob digest is the diff id.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::fsutil::{decompress, temp_path, HashingWriter};
use crate::manifest;
use crate::reference::parse_reference;
use crate::state::ImageRecord;
use crate::store::{resolve_id, ImageStore, Matched};

struct Saved {
    id: String,
    rec: ImageRecord,
    /// Full normalized tags to record, in order.
    tags: Vec<String>,
}

impl ImageStore {
    /// Writes the images `references` name to `out` as one archive. A reference by tag saves
    /// that tag; one by id saves the image untagged, as docker does.
    pub fn save(&self, references: &[String], out: &mut dyn Write) -> Result<(), Error> {
        let mut images: Vec<Saved> = Vec::new();
        {
            let state = self.lock_state();
            for r in references {
                let (id, matched) = resolve_id(&state, r)?;
                let rec = state
                    .images
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| Error::NotFound(r.clone()))?;
                let tag = match matched {
                    Matched::Tag(full) => Some(full),
                    _ => None,
                };
                match images.iter_mut().find(|s| s.id == id) {
                    Some(s) => s.tags.extend(tag.filter(|t| !s.tags.contains(t))),
                    None => images.push(Saved {
                        id,
                        rec,
                        tags: tag.into_iter().collect(),
                    }),
                }
            }
        }
        // Hold the blobs against a concurrent gc while they are read.
        let mut pins = self.pin_guard();
        for s in &images {
            pins.pin(&s.id);
            for l in &s.rec.layers {
                pins.pin(&l.blob);
            }
        }

        let mut tar = tar::Builder::new(out);
        let werr = |e: io::Error| Error::Io {
            context: "save: write archive".into(),
            path: "-".into(),
            source: e,
        };
        append_dir(&mut tar, "blobs/").map_err(werr)?;
        append_dir(&mut tar, "blobs/sha256/").map_err(werr)?;
        let mut written: HashSet<String> = HashSet::new();
        let mut docker_manifest = Vec::new();
        let mut index_entries = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for s in &images {
            let config = self.inner.blobs.read(&s.id)?;
            let mut layer_descs = Vec::new();
            let mut layer_paths = Vec::new();
            for l in &s.rec.layers {
                let name = blob_path(&l.diff_id);
                if written.insert(l.diff_id.clone()) {
                    self.append_layer(&mut tar, &l.blob, &l.diff_id, &name)?;
                }
                let size = self.uncompressed_size(&l.blob, &l.diff_id, l.size)?;
                layer_descs.push((
                    crate::fsutil::Compression::None
                        .oci_layer_media_type()
                        .to_string(),
                    l.diff_id.clone(),
                    size,
                ));
                layer_paths.push(name);
            }
            if written.insert(s.id.clone()) {
                append_bytes(&mut tar, &blob_path(&s.id), &config).map_err(werr)?;
            }
            let m = manifest::build((&s.id, config.len() as u64), &layer_descs);
            let m_digest = crate::fsutil::sha256_digest(&m);
            if written.insert(m_digest.clone()) {
                append_bytes(&mut tar, &blob_path(&m_digest), &m).map_err(werr)?;
            }
            let familiar: Vec<String> = s
                .tags
                .iter()
                .filter_map(|t| parse_reference(t).ok())
                .map(|r| r.to_string())
                .collect();
            docker_manifest.push(json!({
                "Config": blob_path(&s.id),
                "RepoTags": if familiar.is_empty() { Value::Null } else { json!(familiar) },
                "Layers": layer_paths,
            }));
            let desc = |annotations: Value| {
                let mut d = json!({
                    "mediaType": manifest::OCI_MANIFEST,
                    "digest": m_digest,
                    "size": m.len(),
                });
                if !annotations.is_null() {
                    d["annotations"] = annotations;
                }
                d
            };
            if s.tags.is_empty() {
                index_entries.push(desc(Value::Null));
            }
            for t in &s.tags {
                let Ok(r) = parse_reference(t) else { continue };
                let tag = r.tag.clone().unwrap_or_default();
                index_entries.push(desc(json!({
                    "io.containerd.image.name": r.full(),
                    "org.opencontainers.image.ref.name": tag,
                })));
                let top = s
                    .rec
                    .layers
                    .last()
                    .map(|l| l.diff_id.trim_start_matches("sha256:").to_string());
                repositories
                    .entry(r.familiar_name())
                    .or_default()
                    .insert(tag, top.unwrap_or_default());
            }
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_INDEX,
            "manifests": index_entries,
        });
        let enc = |v: &Value| serde_json::to_vec(v).expect("a json value always encodes");
        append_bytes(&mut tar, "index.json", &enc(&index)).map_err(werr)?;
        append_bytes(&mut tar, "manifest.json", &enc(&json!(docker_manifest))).map_err(werr)?;
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(werr)?;
        if !repositories.is_empty() {
            append_bytes(&mut tar, "repositories", &enc(&json!(repositories))).map_err(werr)?;
        }
        tar.into_inner().and_then(|w| w.flush()).map_err(werr)?;
        Ok(())
    }

    fn uncompressed_size(&self, blob: &str, diff_id: &str, known: u64) -> Result<u64> {
        if known > 0 || blob != diff_id {
            return Ok(known);
        }
        self.inner.blobs.size(blob)
    }

    /// Appends layer `blob` uncompressed as `name`, checking it against `diff_id`.
    fn append_layer<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        blob: &str,
        diff_id: &str,
        name: &str,
    ) -> Result<()> {
        let werr = |e: io::Error| Error::Io {
            context: "save: write archive".into(),
            path: "-".into(),
            source: e,
        };
        if blob == diff_id {
            let p = self.inner.blobs.path(blob)?;
            return append_file(tar, name, &p).map_err(werr);
        }
        // Compressed in the store: decompress into a temp file first, since tar needs sizes.
        let t = temp_path(&self.inner.tmp, "save");
        let res = (|| {
            let f = self.inner.blobs.open(blob)?;
            let (mut plain, _) = decompress(f).map_err(Error::io("save: read layer", &t))?;
            let mut w = HashingWriter::new(io::BufWriter::new(
                File::create(&t).map_err(Error::io("create", &t))?,
            ));
            io::copy(&mut plain, &mut w).map_err(Error::io("save: decompress layer", &t))?;
            w.flush().map_err(Error::io("save: write", &t))?;
            let (actual, _) = w.digest();
            if actual != diff_id {
                return Err(Error::Digest {
                    subject: format!("layer {blob}"),
                    expected: diff_id.to_string(),
                    actual,
                });
            }
            append_file(tar, name, &t).map_err(werr)
        })();
        let _ = fs::remove_file(&t);
        res
    }
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = header(0, 0o755, tar::EntryType::Directory);
    tar.append_data(&mut h, name, io::empty())
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = header(data.len() as u64, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, name, data)
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, name: &str, path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    let size = f.metadata()?.len();
    let mut h = header(size, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, name, f.take(size))
}
