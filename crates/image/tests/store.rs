//! Import, resolve, layers, tag, rmi, prune and gc against real files.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::*;
use image::{ImportOptions, RemoveAction};

fn never(_: &str) -> bool {
    false
}

#[test]
fn import_resolve_and_unpack_busybox() {
    let (_d, s) = store();
    let Some(img) = import_busybox(&s, "busybox") else {
        return;
    };
    assert!(img.id.starts_with("sha256:") && img.id.len() == 71);
    assert_eq!(img.repo_tags, vec!["busybox:latest"]);
    assert!(img.created.is_some());
    assert!(img.size > 1_000_000, "size {}", img.size);
    let cfg = img.config.config().clone().unwrap();
    assert_eq!(cfg.cmd().clone().unwrap(), vec!["sh"]);
    assert_eq!(img.config.rootfs().diff_ids().len(), 1);
    assert_eq!(img.config.history().clone().unwrap().len(), 1);

    let hex = &img.id["sha256:".len()..];
    for r in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        img.id.as_str(),
        &hex[..12],
        &hex[..1],
        &format!("sha256:{}", &hex[..5]),
    ] {
        assert_eq!(s.resolve(r).unwrap().id, img.id, "{r}");
    }
    assert!(s.resolve("busybox:2").unwrap_err().is_not_found());
    assert!(s.resolve("nothing").unwrap_err().is_not_found());
    assert!(s.resolve("Bad Name").unwrap_err().is_bad_input());

    let dirs = s.layers(&img).unwrap();
    assert_eq!(dirs.len(), 1);
    let bb = dirs[0].join("bin/busybox");
    let meta = std::fs::metadata(&bb).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o755);
    assert_eq!(meta.len(), std::fs::metadata(BUSYBOX).unwrap().len());
    assert_eq!(
        std::fs::read_link(dirs[0].join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
    assert_eq!(meta.mtime(), 1_700_000_000);
    // Unpacked once: a second call reuses the snapshot.
    assert_eq!(s.layers(&img).unwrap(), dirs);

    // The same rootfs imported again shares the snapshot (same chain id).
    let again = s
        .import(
            &mut &busybox_rootfs().unwrap()[..],
            ImportOptions::default(),
        )
        .unwrap();
    assert_ne!(again.id, img.id, "created times differ");
    assert_eq!(s.layers(&again).unwrap(), dirs);
    assert!(again.repo_tags.is_empty());

    // A reopened store sees the same images.
    let s2 = image::ImageStore::open(s.root(), Default::default()).unwrap();
    assert_eq!(s2.list().unwrap().len(), 2);
    assert_eq!(s2.resolve("busybox").unwrap().id, img.id);
}

#[test]
fn import_applies_changes_and_message() {
    let (_d, s) = store();
    let tar = Tar::new().file("hello", b"hi").build();
    let img = s
        .import(
            &mut &tar[..],
            ImportOptions {
                reference: Some("127.0.0.1:5000/demo/app:1".into()),
                changes: vec![
                    "ENV A=1".into(),
                    "ENTRYPOINT /bin/sh".into(),
                    "EXPOSE 8080".into(),
                    "WORKDIR /srv".into(),
                ],
                message: Some("from a test".into()),
            },
        )
        .unwrap();
    assert_eq!(img.repo_tags, vec!["127.0.0.1:5000/demo/app:1"]);
    let cfg = img.config.config().clone().unwrap();
    assert_eq!(cfg.env().clone().unwrap(), vec!["A=1"]);
    assert_eq!(
        cfg.entrypoint().clone().unwrap(),
        vec!["/bin/sh", "-c", "/bin/sh"]
    );
    assert_eq!(cfg.working_dir().as_deref(), Some("/srv"));
    let hist = img.config.history().clone().unwrap();
    assert_eq!(hist[0].comment().as_deref(), Some("from a test"));
    let err = s
        .import(
            &mut &tar[..],
            ImportOptions {
                changes: vec!["RUN rm -rf /".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
}

#[test]
fn gzip_zstd_and_plain_layers() {
    let (_d, s) = store();
    let plain = Tar::new().dir("d/").file("d/f", b"content").build();
    let mut ids = Vec::new();
    for (name, data) in [
        ("plain", plain.clone()),
        ("gz", gzip(&plain)),
        ("zst", zstd(&plain)),
    ] {
        let img = s
            .import(
                &mut &data[..],
                ImportOptions {
                    reference: Some(format!("fmt:{name}")),
                    ..Default::default()
                },
            )
            .unwrap();
        let dirs = s.layers(&img).unwrap();
        assert_eq!(std::fs::read(dirs[0].join("d/f")).unwrap(), b"content");
        // The layer is stored uncompressed, so every form has the same diff id.
        ids.push(img.config.rootfs().diff_ids()[0].clone());
    }
    assert!(ids.iter().all(|i| *i == ids[0]));
}

#[test]
fn whiteouts_become_overlay_markers() {
    let (_d, s) = store();
    let tar = Tar::new()
        .dir("etc/")
        .file("etc/.wh.passwd", b"")
        .dir("var/")
        .file("var/.wh..wh..opq", b"")
        .file("var/new", b"x")
        .file("keep", b"k")
        .hardlink("keep2", "keep")
        .build();
    let img = s.import(&mut &tar[..], ImportOptions::default()).unwrap();
    let fs = &s.layers(&img).unwrap()[0];
    let wh = std::fs::symlink_metadata(fs.join("etc/passwd")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!fs.join("etc/.wh.passwd").exists());
    assert_eq!(
        xattr::get(fs.join("var"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!fs.join("var/.wh..wh..opq").exists());
    assert_eq!(std::fs::read(fs.join("var/new")).unwrap(), b"x");
    let k = std::fs::metadata(fs.join("keep")).unwrap();
    let k2 = std::fs::metadata(fs.join("keep2")).unwrap();
    assert_eq!((k.ino(), k.nlink()), (k2.ino(), 2));
}

#[test]
fn xattrs_are_kept_and_overlay_ones_refused() {
    let (_d, s) = store();
    let tar = Tar::new()
        .pax(&[
            ("SCHILY.xattr.user.note", b"kept"),
            (
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:bin_t:s0",
            ),
        ])
        .file("f", b"x")
        .build();
    let img = s.import(&mut &tar[..], ImportOptions::default()).unwrap();
    let fs = &s.layers(&img).unwrap()[0];
    assert_eq!(
        xattr::get(fs.join("f"), "user.note").unwrap().as_deref(),
        Some(&b"kept"[..])
    );

    let forged = Tar::new()
        .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")])
        .dir("d/")
        .build();
    let err = s
        .import(&mut &forged[..], ImportOptions::default())
        .unwrap_err();
    assert!(matches!(err, image::Error::Unsafe(_)), "{err:?}");
}

#[test]
fn tag_remove_prune_gc() {
    let (_d, s) = store();
    let Some(img) = import_busybox(&s, "busybox") else {
        return;
    };
    s.tag("busybox", "mine/bb:v1").unwrap();
    s.tag(&img.id, "other").unwrap();
    let mut tags = s.resolve("busybox").unwrap().repo_tags;
    tags.sort();
    assert_eq!(tags, vec!["busybox:latest", "mine/bb:v1", "other:latest"]);
    assert!(s.tag("nothing", "x").unwrap_err().is_not_found());
    assert!(s.tag("busybox", "Bad").unwrap_err().is_bad_input());

    // By id with several tags needs force.
    assert!(s.remove(&img.id, false, &never).unwrap_err().is_conflict());
    // Removing one of several tags only untags, even when in use.
    let used = |id: &str| id == img.id;
    assert_eq!(
        s.remove("other", false, &used).unwrap(),
        vec![RemoveAction::Untagged("other:latest".into())]
    );
    assert_eq!(
        s.remove("mine/bb:v1", false, &never).unwrap(),
        vec![RemoveAction::Untagged("mine/bb:v1".into())]
    );
    // The last tag of an image in use needs force, and then the image stays.
    assert!(s.remove("busybox", false, &used).unwrap_err().is_conflict());
    assert_eq!(
        s.remove("busybox", true, &used).unwrap(),
        vec![RemoveAction::Untagged("busybox:latest".into())]
    );
    assert!(s.resolve(&img.id).unwrap().repo_tags.is_empty());
    // Dangling but used: prune keeps it; unused: prune deletes it and frees space.
    let usage = s.disk_usage().unwrap();
    assert!(usage > 1_000_000);
    assert!(s.prune(false, &used).unwrap().deleted.is_empty());
    let report = s.prune(false, &never).unwrap();
    assert_eq!(report.deleted, vec![RemoveAction::Deleted(img.id.clone())]);
    assert!(report.space_reclaimed >= usage / 2, "{report:?}");
    assert!(s.list().unwrap().is_empty());
    assert!(s.disk_usage().unwrap() < 4096);
    assert_eq!(
        common::tree(&s.root().join("snapshots")),
        Vec::<String>::new()
    );

    // Removing the last tag of an unused image deletes it.
    let img = import_busybox(&s, "busybox").unwrap();
    let acts = s.remove("busybox:latest", false, &never).unwrap();
    assert_eq!(
        acts,
        vec![
            RemoveAction::Untagged("busybox:latest".into()),
            RemoveAction::Deleted(img.id.clone())
        ]
    );
    assert!(s.resolve(&img.id).unwrap_err().is_not_found());
    assert_eq!(s.gc().unwrap(), 0);

    // prune --all deletes tagged images no container uses.
    let a = import_busybox(&s, "a").unwrap();
    let b = s
        .import(
            &mut &Tar::new().file("f", b"1").build()[..],
            ImportOptions {
                reference: Some("b".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let used = |id: &str| id == a.id;
    let report = s.prune(true, &used).unwrap();
    assert_eq!(
        report.deleted,
        vec![
            RemoveAction::Untagged("b:latest".into()),
            RemoveAction::Deleted(b.id.clone())
        ]
    );
    assert_eq!(s.list().unwrap().len(), 1);
    assert!(s.layers(&a).unwrap()[0].join("bin/busybox").is_file());
}

#[test]
fn unpacked_files_keep_content_mode_and_mtime() {
    let (_d, s) = store();
    // Over 1 MiB (written in several writes), a setuid one, and a name given twice.
    let big: Vec<u8> = (0..(2 << 20) + 4321).map(|i| (i * 7 % 251) as u8).collect();
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, "big", tar::EntryType::Regular, None, &big, 0o640);
    raw_entry(&mut b, "su", tar::EntryType::Regular, None, b"x", 0o4755);
    raw_entry(
        &mut b,
        "twice",
        tar::EntryType::Regular,
        None,
        b"first",
        0o644,
    );
    raw_entry(
        &mut b,
        "twice",
        tar::EntryType::Regular,
        None,
        b"2nd",
        0o600,
    );
    raw_entry(&mut b, "empty", tar::EntryType::Regular, None, b"", 0o644);
    let tar = b.into_inner().unwrap();
    let img = s.import(&mut &tar[..], ImportOptions::default()).unwrap();
    let dir = &s.layers(&img).unwrap()[0];
    assert_eq!(std::fs::read(dir.join("big")).unwrap(), big);
    let mode = |n: &str| std::fs::metadata(dir.join(n)).unwrap().mode() & 0o7777;
    assert_eq!(mode("big"), 0o640);
    assert_eq!(mode("su"), 0o4755, "setuid survives the chown");
    assert_eq!(std::fs::read(dir.join("twice")).unwrap(), b"2nd");
    assert_eq!(mode("twice"), 0o600);
    assert_eq!(std::fs::read(dir.join("empty")).unwrap(), b"");
    assert_eq!(
        std::fs::metadata(dir.join("big")).unwrap().mtime(),
        1_700_000_000
    );
}
