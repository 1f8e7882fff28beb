//! Docker's copy-up: what the image has at a volume's mount point goes into the volume the
//! first time it is mounted there. Written here because it must keep ownership, modes,
//! symlinks and times exactly, which general copy crates do not all do.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::{Error, Result};

/// Copies the tree under `src` into `dst` (which exists): files, directories and symlinks
/// with owners and modes; other kinds (devices, sockets) are skipped.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let ctx = |p: &Path| format!("copy {}", p.display());
    for entry in std::fs::read_dir(src).map_err(|e| Error::io(ctx(src), e))? {
        let entry = entry.map_err(|e| Error::io(ctx(src), e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = std::fs::symlink_metadata(&from).map_err(|e| Error::io(ctx(&from), e))?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to).map_err(|e| Error::io(ctx(&to), e))?;
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(|e| Error::io(ctx(&from), e))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(|e| Error::io(ctx(&from), e))?;
            std::os::unix::fs::symlink(target, &to).map_err(|e| Error::io(ctx(&to), e))?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(md.uid()), Some(md.gid()))
            .map_err(|e| Error::io(ctx(&to), e))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(|e| Error::io(ctx(&to), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_copy_with_modes_and_links() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/f"), "x").unwrap();
        std::fs::set_permissions(
            src.path().join("d/f"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("d/f", src.path().join("l")).unwrap();
        copy_tree(src.path(), dst.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.path().join("d/f")).unwrap(),
            "x"
        );
        let mode = std::fs::metadata(dst.path().join("d/f")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(
            std::fs::read_link(dst.path().join("l")).unwrap(),
            Path::new("d/f")
        );
    }
}
