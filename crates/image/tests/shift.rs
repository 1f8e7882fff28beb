//! Id-shifted snapshot views for user-namespaced containers.

mod common;
use common::{store, Tar};
use image::ImportOptions;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

#[test]
fn shifted_layers_keep_everything_but_owners() {
    let (_d, s) = store();
    let tar = Tar::new()
        .dir("etc/")
        .file("etc/.wh.passwd", b"")
        .dir("var/")
        .file("var/.wh..wh..opq", b"")
        .file("var/new", b"x")
        .file("keep", b"k")
        .hardlink("keep2", "keep")
        .symlink("link", "keep")
        .build();
    let img = s.import(&mut &tar[..], ImportOptions::default()).unwrap();
    let plain = &s.layers(&img).unwrap()[0];
    let shifted = &s.layers_shifted(&img, 100_000).unwrap()[0];
    assert_ne!(plain, shifted);
    for rel in ["", "etc/passwd", "var", "var/new", "keep", "link"] {
        let a = std::fs::symlink_metadata(plain.join(rel)).unwrap();
        let b = std::fs::symlink_metadata(shifted.join(rel)).unwrap();
        assert_eq!(
            (b.uid(), b.gid()),
            (a.uid() + 100_000, a.gid() + 100_000),
            "{rel}"
        );
        assert_eq!(a.mode(), b.mode(), "{rel}");
    }
    assert!(std::fs::symlink_metadata(shifted.join("etc/passwd"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(
        xattr::get(shifted.join("var"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    let k = std::fs::metadata(shifted.join("keep")).unwrap();
    assert_eq!(
        k.ino(),
        std::fs::metadata(shifted.join("keep2")).unwrap().ino()
    );
    assert_eq!(
        std::fs::read_link(shifted.join("link")).unwrap().to_str(),
        Some("keep")
    );
    // Made once: a second call returns the same dirs.
    assert_eq!(&s.layers_shifted(&img, 100_000).unwrap()[0], shifted);
    // No shift is the plain layers.
    assert_eq!(&s.layers_shifted(&img, 0).unwrap()[0], plain);
}
