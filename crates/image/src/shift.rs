//! Id-shifted views of snapshots, for containers in a user namespace: the same files with
//! every owner moved up by the namespace's host id offset, so that the container's root
//! (host uid `shift`) owns what root owns in the image. Made once per snapshot and shift,
//! next to the snapshot, so GC removes them together.
//!
//! Written here rather than with `cp -a` + `chown -R` so hard links, whiteout devices and
//! overlay xattrs survive exactly, and a half-made copy is never visible (temp dir + rename).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag};
use nix::sys::time::TimeSpec;

use crate::error::{Error, Result};
use crate::fsutil::{remove_all, temp_path};
use crate::store::{Image, ImageStore};

impl ImageStore {
    /// Like [`ImageStore::layers`], with every uid and gid moved up by `shift` (0 gives the
    /// plain layers).
    pub fn layers_shifted(&self, image: &Image, shift: u32) -> Result<Vec<PathBuf>, Error> {
        let layers = self.layers(image)?;
        if shift == 0 {
            return Ok(layers);
        }
        layers
            .iter()
            .map(|fs_dir| {
                let snap = fs_dir.parent().unwrap_or(fs_dir);
                let target = snap.join(format!("shift-{shift}"));
                if !target.exists() {
                    let tmp = temp_path(&self.inner.tmp, "shift");
                    let made = copy_shifted(fs_dir, &tmp, shift, &mut HashMap::new());
                    if let Err(e) = made.and_then(|()| {
                        fs::rename(&tmp, &target).map_err(Error::io("rename", &target))
                    }) {
                        let _ = remove_all(&tmp);
                        // Another caller may have made it meanwhile.
                        if !target.exists() {
                            return Err(e);
                        }
                    }
                }
                Ok(target)
            })
            .collect()
    }
}

/// Copies `src` to `dst` (which must not exist), shifting owners; `links` maps source inodes
/// to their first copy so hard links stay links.
fn copy_shifted(
    src: &Path,
    dst: &Path,
    shift: u32,
    links: &mut HashMap<u64, PathBuf>,
) -> Result<()> {
    let md = fs::symlink_metadata(src).map_err(Error::io("stat", src))?;
    let ft = md.file_type();
    if ft.is_dir() {
        fs::create_dir(dst).map_err(Error::io("create", dst))?;
        let rd = fs::read_dir(src).map_err(Error::io("list", src))?;
        for e in rd {
            let e = e.map_err(Error::io("list", src))?;
            copy_shifted(&e.path(), &dst.join(e.file_name()), shift, links)?;
        }
    } else if ft.is_symlink() {
        let to = fs::read_link(src).map_err(Error::io("read link", src))?;
        std::os::unix::fs::symlink(&to, dst).map_err(Error::io("symlink", dst))?;
    } else if ft.is_file() {
        if md.nlink() > 1 {
            if let Some(first) = links.get(&md.ino()) {
                return fs::hard_link(first, dst).map_err(Error::io("link", dst));
            }
            links.insert(md.ino(), dst.to_path_buf());
        }
        fs::copy(src, dst).map_err(Error::io("copy", dst))?;
    } else {
        // Only whiteouts (0/0 character devices) get into a snapshot; unpack refuses others.
        let kind = SFlag::from_bits_truncate(md.mode() & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(md.mode() & 0o7777);
        mknod(dst, kind, perm, md.rdev()).map_err(|e| Error::io("mknod", dst)(e.into()))?;
    }
    lchown(dst, Some(md.uid() + shift), Some(md.gid() + shift)).map_err(Error::io("chown", dst))?;
    if !ft.is_symlink() {
        // After chown, which clears set-id bits.
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(Error::io("chmod", dst))?;
        if let Ok(names) = xattr::list(src) {
            for name in names {
                if let Ok(Some(value)) = xattr::get(src, &name) {
                    let _ = xattr::set(dst, &name, &value);
                }
            }
        }
    }
    let times = [
        TimeSpec::new(md.atime(), md.atime_nsec()),
        TimeSpec::new(md.mtime(), md.mtime_nsec()),
    ];
    let _ = nix::sys::stat::utimensat(
        None,
        dst,
        &times[0],
        &times[1],
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}
