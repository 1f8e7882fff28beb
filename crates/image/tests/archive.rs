//! save → load round trips, OCI layouts, legacy docker-save layouts, and unsafe archives.

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use common::*;
use image::{Error, ImportOptions};

/// Archive members by name.
fn members(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut t = tar::Archive::new(archive);
    for e in t.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

fn archive_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = Tar::new();
    for (name, data) in files {
        t = t.file(name, data);
    }
    t.build()
}

#[test]
fn save_load_round_trip_keeps_the_id() {
    let (_d, a) = store();
    let Some(img) = import_busybox(&a, "busybox") else {
        return;
    };
    a.tag("busybox", "example.com/team/bb:v2").unwrap();
    let mut out = Vec::new();
    a.save(
        &["busybox".into(), "example.com/team/bb:v2".into()],
        &mut out,
    )
    .unwrap();

    let m = members(&out);
    for name in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(m.contains_key(name), "{name} missing: {:?}", m.keys());
    }
    let hex = &img.id["sha256:".len()..];
    assert!(m.contains_key(&format!("blobs/sha256/{hex}")));
    let manifest: serde_json::Value = serde_json::from_slice(&m["manifest.json"]).unwrap();
    assert_eq!(manifest[0]["Config"], format!("blobs/sha256/{hex}"));
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["busybox:latest", "example.com/team/bb:v2"])
    );
    let index: serde_json::Value = serde_json::from_slice(&m["index.json"]).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/busybox:latest"
    );

    let (_d2, b) = store();
    let lines = b.load(&mut &out[..]).unwrap();
    assert_eq!(
        lines,
        vec![
            "Loaded image: busybox:latest",
            "Loaded image: example.com/team/bb:v2"
        ]
    );
    let loaded = b.resolve("busybox").unwrap();
    assert_eq!(loaded.id, img.id);
    assert_eq!(loaded.size, img.size);
    assert_eq!(b.resolve("example.com/team/bb:v2").unwrap().id, img.id);
    assert!(b.layers(&loaded).unwrap()[0].join("bin/busybox").is_file());

    // By id: untagged.
    let mut out = Vec::new();
    a.save(std::slice::from_ref(&img.id), &mut out).unwrap();
    let (_d3, c) = store();
    assert_eq!(
        c.load(&mut &out[..]).unwrap(),
        vec![format!("Loaded image ID: {}", img.id)]
    );
    assert!(c.resolve(&img.id).unwrap().repo_tags.is_empty());

    // A gzip-compressed archive loads too, and loading twice is harmless.
    let gz = gzip(&out);
    assert_eq!(c.load(&mut &gz[..]).unwrap().len(), 1);
    assert_eq!(c.list().unwrap().len(), 1);

    assert!(a
        .save(&["nothing".into()], &mut Vec::new())
        .unwrap_err()
        .is_not_found());
}

#[test]
fn loads_an_oci_layout_without_manifest_json() {
    let (_d, a) = store();
    let layer = Tar::new().file("hello", b"world").build();
    let img = a
        .import(
            &mut &layer[..],
            ImportOptions {
                reference: Some("oci/only:1".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let mut out = Vec::new();
    a.save(&["oci/only:1".into()], &mut out).unwrap();
    let m = members(&out);
    let files: Vec<(&str, &[u8])> = m
        .iter()
        .filter(|(k, _)| *k != "manifest.json" && *k != "repositories" && !k.ends_with('/'))
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let oci = archive_of(&files);
    let (_d2, b) = store();
    assert_eq!(
        b.load(&mut &oci[..]).unwrap(),
        vec!["Loaded image: oci/only:1"]
    );
    let loaded = b.resolve("oci/only:1").unwrap();
    assert_eq!(loaded.id, img.id);
    assert_eq!(
        std::fs::read(b.layers(&loaded).unwrap()[0].join("hello")).unwrap(),
        b"world"
    );

    // A tampered blob is refused by digest.
    let cfg_name = format!("blobs/sha256/{}", &img.id[7..]);
    let mut cfg = m[&cfg_name].clone();
    cfg.push(b' ');
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(k, v)| {
            if *k == cfg_name {
                (*k, cfg.as_slice())
            } else {
                (*k, *v)
            }
        })
        .collect();
    let (_d3, c) = store();
    let err = c.load(&mut &archive_of(&files)[..]).unwrap_err();
    assert!(matches!(err, Error::Digest { .. }), "{err:?}");
}

#[test]
fn loads_a_legacy_docker_save_layout_with_linked_layers() {
    let layer = Tar::new().file("a", b"1").build();
    let diff = format!("sha256:{}", hex_sha256(&layer));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff, diff]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let id_hex = hex_sha256(&config);
    let manifest = serde_json::json!([{
        "Config": format!("{id_hex}.json"),
        "RepoTags": ["legacy:1"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
    }]);
    let gz_layer = gzip(&layer);
    let mut t = Tar::new()
        .file(&format!("{id_hex}.json"), &config)
        .file("aaa/layer.tar", &gz_layer)
        .symlink("bbb/layer.tar", "../aaa/layer.tar");
    t = t.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let archive = t.build();
    let (_d, s) = store();
    assert_eq!(
        s.load(&mut &archive[..]).unwrap(),
        vec!["Loaded image: legacy:1"]
    );
    let img = s.resolve("legacy:1").unwrap();
    assert_eq!(img.id, format!("sha256:{id_hex}"));
    assert_eq!(s.layers(&img).unwrap().len(), 2);

    // And it saves back out with uncompressed layers that another store loads.
    let mut out = Vec::new();
    s.save(&["legacy:1".into()], &mut out).unwrap();
    assert!(members(&out).contains_key(&format!("blobs/sha256/{}", &diff[7..])));
    let (_d2, b) = store();
    b.load(&mut &out[..]).unwrap();
    assert_eq!(b.resolve("legacy:1").unwrap().id, img.id);
}

#[test]
fn unsafe_archives_are_refused() {
    let (d, s) = store();
    let name = format!("cloudlet-load-escape-{}", std::process::id());
    let evil = Tar::new()
        .file(&format!("../../{name}"), b"x")
        .symlink("etc", "/etc")
        .file(&format!("etc/{name}"), b"x")
        .hardlink("passwd", "/etc/passwd")
        .build();
    let diff = format!("sha256:{}", hex_sha256(&evil));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff]},
    }))
    .unwrap();
    let id_hex = hex_sha256(&config);
    let manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{id_hex}"),
        "RepoTags": ["evil:latest"],
        "Layers": [format!("blobs/sha256/{}", &diff[7..])],
    }]);
    let archive = archive_of(&[
        (&format!("blobs/sha256/{id_hex}"), &config),
        (&format!("blobs/sha256/{}", &diff[7..]), &evil),
        ("manifest.json", &serde_json::to_vec(&manifest).unwrap()),
    ]);
    let err = s.load(&mut &archive[..]).unwrap_err();
    assert!(matches!(err, Error::Unsafe(_)), "{err:?}");
    assert!(err.to_string().contains("escapes the root"), "{err}");
    assert!(!std::path::Path::new("/etc").join(&name).exists());
    assert!(!d.path().join(&name).exists());
    assert!(s.list().unwrap().is_empty());
    assert_eq!(tree(&s.root().join("snapshots")), Vec::<String>::new());
    assert_eq!(tree(&s.root().join("blobs/sha256")), Vec::<String>::new());

    // Archive members themselves may not climb out either.
    let err = s
        .load(&mut &archive_of(&[(&format!("../{name}"), b"x")])[..])
        .unwrap_err();
    assert!(matches!(err, Error::Unsafe(_)), "{err:?}");
    let err = s
        .load(
            &mut &Tar::new()
                .symlink("manifest.json", "../../etc/passwd")
                .build()[..],
        )
        .unwrap_err();
    assert!(matches!(err, Error::Unsafe(_)), "{err:?}");
    let err = s.load(&mut &b"not a tar at all"[..]).unwrap_err();
    assert!(err.is_bad_input(), "{err:?}");
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
