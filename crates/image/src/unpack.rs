//! Unpacks one layer tar into its own directory, overlayfs style, refusing unsafe content.
//!
//! Every path is checked component by component with `symlink_metadata` before anything is
//! created, and nothing is ever written through a symlink: an entry whose parent is a symlink
//! is refused, so a layer cannot reach outside its directory however its links point.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use crate::error::{Error, Result};
use crate::fsutil::{decompress, remove_all, HashingReader};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What unpacking learned about the layer.
pub(crate) struct Unpacked {
    /// Digest of the uncompressed tar (the layer's diff id).
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub size: u64,
}

/// Unpacks the (plain, gzip or zstd) layer tar `blob` into `dest`, which must exist and be
/// empty. `subject` names the layer in errors. On error `dest` is left for the caller to
/// remove.
pub(crate) fn unpack_layer(blob: &mut dyn Read, dest: &Path, subject: &str) -> Result<Unpacked> {
    let io_err =
        |what: &str, path: &Path| Error::io(format!("{subject}: {what}"), path.to_path_buf());
    let (plain, _) = decompress(blob).map_err(io_err("read layer", dest))?;
    let mut hashing = HashingReader::new(plain);
    let mut dirs: Vec<(PathBuf, i64)> = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        // xattrs are set by us, best effort: a label this kernel refuses must not fail a pull.
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        let entries = archive
            .entries()
            .map_err(|e| Error::InvalidInput(format!("{subject}: not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| Error::InvalidInput(format!("{subject}: bad tar entry: {e}")))?;
            unpack_entry(&mut entry, dest, subject, &mut dirs)?;
        }
    }
    // Directory mtimes last, deepest first: creating children changed them.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
    for (dir, mtime) in dirs {
        let t = TimeSpec::new(mtime.max(1), 0);
        let _ = utimensat(None, &dir, &t, &t, UtimensatFlags::NoFollowSymlink);
    }
    let (diff_id, size) = hashing
        .finish()
        .map_err(|e| Error::InvalidInput(format!("{subject}: read layer: {e}")))?;
    Ok(Unpacked { diff_id, size })
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    subject: &str,
    dirs: &mut Vec<(PathBuf, i64)>,
) -> Result<()> {
    let raw = entry
        .path()
        .map_err(|e| Error::InvalidInput(format!("{subject}: bad entry name: {e}")))?
        .into_owned();
    let shown = raw.display().to_string();
    let unsafe_entry = |why: &str| Error::Unsafe(format!("{subject}: entry {shown:?} {why}"));
    let Some(rel) = clean_path(&raw) else {
        return Err(unsafe_entry("escapes the root"));
    };
    let kind = entry.header().entry_type();
    if matches!(
        kind,
        EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
    ) {
        return Ok(());
    }
    let Some(file_name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        // The root itself ("./"): its attributes belong to the container, not the layer.
        return Ok(());
    };
    let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else {
                continue;
            };
            // overlayfs reads its own xattrs from the layers; content must not forge them.
            if name.starts_with("trusted.overlay.") {
                return Err(unsafe_entry("carries an overlayfs xattr"));
            }
            xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
        }
    }
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let parent = ensure_dir(root, parent_rel, subject, &shown)?;
    let io_err = |what: &str, path: &Path| {
        Error::io(format!("{subject}: {what} {shown:?}"), path.to_path_buf())
    };

    if file_name == OPAQUE_MARKER {
        xattr::set(&parent, "trusted.overlay.opaque", b"y")
            .map_err(io_err("mark opaque directory for", &parent))?;
        return Ok(());
    }
    if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(unsafe_entry("is not a valid whiteout"));
        }
        let dst = parent.join(hidden);
        remove_all(&dst).map_err(io_err("replace", &dst))?;
        // overlayfs hides a lower file under a 0/0 character device of the same name.
        mknod(&dst, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| io_err("create whiteout for", &dst)(io::Error::from(e)))?;
        let (uid, gid) = owner(entry);
        let _ = std::os::unix::fs::lchown(&dst, Some(uid), Some(gid));
        return Ok(());
    }

    let dst = parent.join(&file_name);
    let existing = fs::symlink_metadata(&dst).ok();
    if !(kind.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir())) && existing.is_some() {
        remove_all(&dst).map_err(io_err("replace", &dst))?;
    }
    let mtime = entry.header().mtime().unwrap_or(0) as i64;

    match kind {
        EntryType::Directory => {
            entry.unpack(&dst).map_err(io_err("unpack", &dst))?;
            set_xattrs(&dst, &xattrs);
            dirs.push((dst, mtime));
        }
        EntryType::Regular | EntryType::Continuous => {
            write_regular(entry, &dst, mtime).map_err(io_err("unpack", &dst))?;
            set_xattrs(&dst, &xattrs);
        }
        EntryType::GNUSparse => {
            // tar's own unpack keeps the holes.
            entry.unpack(&dst).map_err(io_err("unpack", &dst))?;
            set_xattrs(&dst, &xattrs);
        }
        EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|e| Error::InvalidInput(format!("{subject}: bad link in {shown:?}: {e}")))?
                .ok_or_else(|| unsafe_entry("is a symlink without a target"))?
                .into_owned();
            // Absolute targets resolve against the container's root, so they are fine; a
            // relative one may not climb above the root.
            if target.is_relative() && !stays_inside(parent_rel, &target) {
                return Err(Error::Unsafe(format!(
                    "{subject}: symlink {shown:?} -> {:?} escapes the root",
                    target.display().to_string()
                )));
            }
            symlink(&target, &dst).map_err(io_err("create symlink", &dst))?;
            let (uid, gid) = owner(entry);
            let _ = std::os::unix::fs::lchown(&dst, Some(uid), Some(gid));
            let t = TimeSpec::new(mtime.max(1), 0);
            let _ = utimensat(None, &dst, &t, &t, UtimensatFlags::NoFollowSymlink);
        }
        EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(|e| Error::InvalidInput(format!("{subject}: bad link in {shown:?}: {e}")))?
                .ok_or_else(|| unsafe_entry("is a hard link without a target"))?
                .into_owned();
            let shown_target = target.display().to_string();
            let out = || {
                Error::Unsafe(format!(
                    "{subject}: hard link {shown:?} -> {shown_target:?} points outside the layer"
                ))
            };
            let target_rel = clean_path(&target).ok_or_else(out)?;
            let src = existing_in_layer(root, &target_rel).ok_or_else(out)?;
            fs::hard_link(&src, &dst).map_err(io_err("create hard link", &dst))?;
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            return Err(unsafe_entry(
                "is a device node or fifo, which layers may not carry",
            ));
        }
        _ => {
            tracing::debug!(entry = %shown, ?kind, "{subject}: skipping unsupported tar entry");
        }
    }
    Ok(())
}

/// Best effort: xattrs the filesystem or kernel refuses (say, SELinux labels without SELinux)
/// are logged and skipped. The `xattr` crate does not follow symlinks.
fn set_xattrs(path: &Path, xattrs: &[(String, Vec<u8>)]) {
    for (name, value) in xattrs {
        if let Err(e) = xattr::set(path, name, value) {
            tracing::debug!(path = %path.display(), %name, error = %e, "cannot set xattr");
        }
    }
}

/// Writes a regular file (`dst` is known not to exist) in writes of up to 1 MiB, then its
/// owner, mode and mtime. The page cache keeps the folio size of the write that filled it,
/// and every fork and exec of a binary maps it folio by folio: tar's own unpack writes
/// 8 KiB at a time, which left a forking server in the container (busybox httpd, a process
/// per connection) ~10% slower than the same image unpacked by podman.
fn write_regular<R: Read>(entry: &mut tar::Entry<'_, R>, dst: &Path, mtime: i64) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(dst)?;
    let mut buf = vec![0u8; (entry.size() as usize).clamp(1, 1 << 20)];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match entry.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        f.write_all(&buf[..filled])?;
    }
    let (uid, gid) = owner(entry);
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    // After the owner: chown clears the setuid and setgid bits.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    let t = TimeSpec::new(mtime.max(1), 0);
    nix::sys::stat::futimens(f.as_raw_fd(), &t, &t).map_err(io::Error::from)
}

fn owner<R: Read>(entry: &tar::Entry<'_, R>) -> (u32, u32) {
    let h = entry.header();
    (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32)
}

/// The entry name made relative, with `.` dropped; `None` if it has a `..` component.
pub(crate) fn clean_path(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    Some(out)
}

/// Whether the relative symlink `target`, placed in directory `dir` (relative to the root),
/// resolves lexically to a place inside the root.
fn stays_inside(dir: &Path, target: &Path) -> bool {
    let mut depth = dir.components().count() as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    true
}

/// Makes sure `root/rel` is a real directory, creating missing components; refuses to go
/// through a symlink. Returns the absolute path.
fn ensure_dir(root: &Path, rel: &Path, subject: &str, shown: &str) -> Result<PathBuf> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                let via = cur.strip_prefix(root).unwrap_or(&cur).display().to_string();
                return Err(Error::Unsafe(format!(
                    "{subject}: entry {shown:?} would be written through symlink {via:?}, which may lead outside the root"
                )));
            }
            Ok(_) => {
                // A file (or whiteout) replaced by a directory later in the same layer.
                remove_all(&cur).map_err(Error::io(format!("{subject}: replace"), &cur))?;
                fs::create_dir(&cur)
                    .map_err(Error::io(format!("{subject}: create directory"), &cur))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur)
                    .map_err(Error::io(format!("{subject}: create directory"), &cur))?;
            }
            Err(e) => return Err(Error::io(format!("{subject}: stat"), &cur)(e)),
        }
    }
    Ok(cur)
}

/// `root/rel` if it already exists in this layer as a non-directory, reached without any
/// symlink on the way.
fn existing_in_layer(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut cur = root.to_path_buf();
    let n = rel.components().count();
    if n == 0 {
        return None;
    }
    for (i, c) in rel.components().enumerate() {
        cur.push(c);
        let m = fs::symlink_metadata(&cur).ok()?;
        if i + 1 < n && !m.is_dir() {
            return None;
        }
        if i + 1 == n && m.is_dir() {
            return None;
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        assert_eq!(clean_path(Path::new("/a/./b")).unwrap(), Path::new("a/b"));
        assert!(clean_path(Path::new("a/../../b")).is_none());
    }

    #[test]
    fn relative_symlinks_must_stay_inside() {
        assert!(stays_inside(Path::new("bin"), Path::new("busybox")));
        assert!(stays_inside(
            Path::new("usr/bin"),
            Path::new("../../bin/sh")
        ));
        assert!(!stays_inside(
            Path::new("usr/bin"),
            Path::new("../../../etc")
        ));
    }
}
