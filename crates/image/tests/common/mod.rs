//! Helpers shared by the integration tests: real tars built in memory.
#![allow(dead_code)]

use std::path::Path;

use image::{ImageStore, ImportOptions, StoreOptions};
use tar::{EntryType, Header};

pub const BUSYBOX: &str = "/bin/busybox";

/// A store in a fresh temp dir (kept alive by the returned guard).
pub fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = ImageStore::open(dir.path().join("store"), StoreOptions::default()).unwrap();
    (dir, s)
}

/// Appends an entry whose name is written raw, so that `..` and absolute names survive.
pub fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: EntryType,
    link: Option<&str>,
    data: &[u8],
    mode: u32,
) {
    let mut h = Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

pub struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    pub fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }
    pub fn dir(mut self, name: &str) -> Tar {
        raw_entry(&mut self.0, name, EntryType::Directory, None, b"", 0o755);
        self
    }
    pub fn file(mut self, name: &str, data: &[u8]) -> Tar {
        raw_entry(&mut self.0, name, EntryType::Regular, None, data, 0o644);
        self
    }
    pub fn exe(mut self, name: &str, data: &[u8]) -> Tar {
        raw_entry(&mut self.0, name, EntryType::Regular, None, data, 0o755);
        self
    }
    pub fn symlink(mut self, name: &str, target: &str) -> Tar {
        raw_entry(
            &mut self.0,
            name,
            EntryType::Symlink,
            Some(target),
            b"",
            0o777,
        );
        self
    }
    pub fn hardlink(mut self, name: &str, target: &str) -> Tar {
        raw_entry(&mut self.0, name, EntryType::Link, Some(target), b"", 0o644);
        self
    }
    pub fn char_dev(mut self, name: &str) -> Tar {
        raw_entry(&mut self.0, name, EntryType::Char, None, b"", 0o644);
        self
    }
    /// A PAX extended header for the next entry.
    pub fn pax(mut self, records: &[(&str, &[u8])]) -> Tar {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        raw_entry(
            &mut self.0,
            "PaxHeaders/x",
            EntryType::XHeader,
            None,
            &data,
            0o644,
        );
        self
    }
    pub fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A rootfs with Debian's static busybox and `bin/sh -> busybox`.
pub fn busybox_rootfs() -> Option<Vec<u8>> {
    let data = std::fs::read(BUSYBOX).ok()?;
    Some(
        Tar::new()
            .dir("bin/")
            .exe("bin/busybox", &data)
            .symlink("bin/sh", "busybox")
            .dir("etc/")
            .file("etc/hostname", b"cloudlet\n")
            .build(),
    )
}

/// Imports the busybox rootfs as `reference`, or says why the test must skip.
pub fn import_busybox(s: &ImageStore, reference: &str) -> Option<image::Image> {
    let Some(tar) = busybox_rootfs() else {
        eprintln!("skipping: {BUSYBOX} is missing (install busybox-static)");
        return None;
    };
    let img = s
        .import(
            &mut &tar[..],
            ImportOptions {
                reference: Some(reference.to_string()),
                changes: vec!["CMD [\"sh\"]".to_string()],
                message: None,
            },
        )
        .unwrap();
    Some(img)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// Every path under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}
