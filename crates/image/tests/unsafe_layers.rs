//! Malicious layers are refused with a clear message and write nothing outside the store.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use image::{Error, ImageStore, ImportOptions};

fn unique(tag: &str) -> String {
    format!(
        "cloudlet-escape-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    )
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn import_err(s: &ImageStore, tar: &[u8]) -> Error {
    let err = s
        .import(&mut &tar[..], ImportOptions::default())
        .expect_err("a malicious layer was accepted");
    assert!(matches!(err, Error::Unsafe(_)), "{err:?}");
    err
}

fn assert_no_snapshot_left(s: &ImageStore) {
    assert_eq!(tree(&s.root().join("snapshots")), Vec::<String>::new());
    assert_eq!(tree(&s.root().join("tmp")), Vec::<String>::new());
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn path_traversal_is_refused() {
    let (d, s) = store();
    let name = unique("dotdot");
    let deep = format!("{}{name}", "../".repeat(12));
    let err = import_err(
        &s,
        &Tar::new()
            .file("ok", b"1")
            .file(&format!("../../{name}"), b"x")
            .build(),
    );
    assert!(err.to_string().contains("escapes the root"), "{err}");
    assert!(err.to_string().contains(&format!("../../{name}")), "{err}");
    import_err(&s, &Tar::new().file(&deep, b"x").build());
    assert!(!Path::new("/").join(&name).exists());
    assert!(!Path::new("/tmp").join(&name).exists());
    assert!(!d.path().join(&name).exists());
    assert_no_snapshot_left(&s);
}

#[test]
fn writing_through_a_symlink_is_refused() {
    let (d, s) = store();
    let host = tempfile::tempdir().unwrap();
    let target = host.path().to_str().unwrap().to_string();
    let err = import_err(
        &s,
        &Tar::new()
            .symlink("etc", &target)
            .file("etc/x", b"pwned")
            .build(),
    );
    assert!(err.to_string().contains("\"etc/x\""), "{err}");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(!host.path().join("x").exists());
    // A relative link out of the root is refused as such.
    let err = import_err(&s, &Tar::new().symlink("a/up", "../../../..").build());
    assert!(err.to_string().contains("escapes the root"), "{err}");
    // Absolute links are fine: they resolve against the container's root.
    let ok = Tar::new()
        .dir("bin/")
        .file("bin/busybox", b"")
        .symlink("bin/sh", "/bin/busybox")
        .build();
    let img = s.import(&mut &ok[..], ImportOptions::default()).unwrap();
    let fs = &s.layers(&img).unwrap()[0];
    assert_eq!(
        std::fs::read_link(fs.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    drop(d);
}

#[test]
fn hard_links_out_of_the_layer_are_refused() {
    let (_d, s) = store();
    let before = std::fs::metadata("/etc/passwd").unwrap().nlink();
    for target in ["/etc/passwd", "../../../../../../etc/passwd", "etc/passwd"] {
        let err = import_err(&s, &Tar::new().hardlink("evil", target).build());
        assert!(err.to_string().contains("hard link"), "{err}");
        assert!(err.to_string().contains("evil"), "{err}");
    }
    assert_eq!(std::fs::metadata("/etc/passwd").unwrap().nlink(), before);
    assert_no_snapshot_left(&s);
}

#[test]
fn device_nodes_are_refused() {
    let (_d, s) = store();
    let err = import_err(&s, &Tar::new().char_dev("dev/mem").build());
    assert!(err.to_string().contains("dev/mem"), "{err}");
    assert_no_snapshot_left(&s);
}

#[test]
fn the_issue_case_all_together() {
    let (_d, s) = store();
    let name = unique("issue");
    let tar = Tar::new()
        .file(&format!("../../{name}"), b"x")
        .symlink("etc", "/etc")
        .file(&format!("etc/{name}"), b"x")
        .hardlink("passwd", "/etc/passwd")
        .build();
    let err = import_err(&s, &tar);
    assert!(err.to_string().starts_with("layer sha256:"), "{err}");
    assert!(!Path::new("/etc").join(&name).exists());
    assert_no_snapshot_left(&s);
    // Each piece on its own, in any order, also fails.
    let tar = Tar::new()
        .symlink("etc", "/etc")
        .file(&format!("etc/{name}"), b"x")
        .build();
    import_err(&s, &tar);
    assert!(!Path::new("/etc").join(&name).exists());
}
