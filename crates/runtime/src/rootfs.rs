//! Overlay mounts for container root filesystems.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::Error;

fn check_path(p: &Path) -> Result<&str, Error> {
    let s = p
        .to_str()
        .ok_or_else(|| Error::InvalidArgument(format!("{}: path is not utf-8", p.display())))?;
    // overlayfs splits its options on ',' and lowerdir on ':'.
    if s.contains(',') || s.contains(':') {
        return Err(Error::InvalidArgument(format!(
            "{s}: overlay paths may not contain ',' or ':'"
        )));
    }
    Ok(s)
}

/// Mounts an overlay of `lowers` (lowest first) with `upper`/`work` at `target`.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), Error> {
    if lowers.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "overlay {}: no lower layers",
            target.display()
        )));
    }
    // overlayfs wants the topmost lower first.
    let lower = lowers
        .iter()
        .rev()
        .map(|p| check_path(p))
        .collect::<Result<Vec<_>, _>>()?
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        check_path(upper)?,
        check_path(work)?
    );
    // The kernel caps mount data at one page.
    if data.len() >= 4096 {
        return Err(Error::InvalidArgument(format!(
            "overlay {}: too many layers for one mount ({} bytes of options)",
            target.display(),
            data.len()
        )));
    }
    for d in [upper, work, target] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(format!("create {}", d.display()), e))?;
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| Error::io(format!("mount overlay at {}", target.display()), e.into()))
}

/// Unmounts `target`; not mounted (or missing) is fine.
pub fn unmount(target: &Path) -> Result<(), Error> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io(format!("unmount {}", target.display()), e.into())),
    }
}
