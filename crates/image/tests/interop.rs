//! Archives exchanged with skopeo, an independent implementation of both formats.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const SKOPEO: &str = "/usr/bin/skopeo";

fn skopeo(args: &[&str]) -> String {
    let out = Command::new(SKOPEO).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn skopeo_reads_our_archives_and_we_read_its() {
    if !Path::new(SKOPEO).exists() {
        eprintln!("skipping: {SKOPEO} is missing (install skopeo)");
        return;
    }
    let (d, s) = store();
    let Some(img) = import_busybox(&s, "busybox") else {
        return;
    };
    let saved = d.path().join("saved.tar");
    let mut out = Vec::new();
    s.save(&["busybox".into()], &mut out).unwrap();
    std::fs::write(&saved, &out).unwrap();
    let diff = img.config.rootfs().diff_ids()[0].clone();

    // Our archive is both formats at once.
    for transport in ["docker-archive", "oci-archive"] {
        let inspect = skopeo(&["inspect", &format!("{transport}:{}", saved.display())]);
        assert!(inspect.contains(&diff), "{transport}: {inspect}");
        let config = skopeo(&[
            "inspect",
            "--raw",
            "--config",
            &format!("{transport}:{}", saved.display()),
        ]);
        assert!(config.contains("\"Cmd\":[\"sh\"]"), "{config}");
    }

    // skopeo's own archives (gzip layers in the OCI one) load back.
    let sk_oci = d.path().join("sk-oci.tar");
    let sk_docker = d.path().join("sk-docker.tar");
    skopeo(&[
        "copy",
        &format!("docker-archive:{}", saved.display()),
        &format!("oci-archive:{}:bb:v1", sk_oci.display()),
    ]);
    skopeo(&[
        "copy",
        &format!("oci-archive:{}", saved.display()),
        &format!("docker-archive:{}:busybox:latest", sk_docker.display()),
    ]);
    let (_d2, t) = store();
    let lines = t
        .load(&mut std::fs::File::open(&sk_docker).unwrap())
        .unwrap();
    assert_eq!(lines, vec!["Loaded image: busybox:latest"]);
    assert_eq!(t.resolve("busybox").unwrap().id, img.id);
    let (_d3, u) = store();
    let lines = u.load(&mut std::fs::File::open(&sk_oci).unwrap()).unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let loaded = u.list().unwrap();
    // skopeo re-encodes the config when it converts formats, so compare content, not ids.
    assert_eq!(
        loaded[0].config.rootfs().diff_ids(),
        img.config.rootfs().diff_ids()
    );
    assert_eq!(
        loaded[0]
            .config
            .config()
            .clone()
            .unwrap()
            .cmd()
            .clone()
            .unwrap(),
        vec!["sh"]
    );
    assert!(u.layers(&loaded[0]).unwrap()[0]
        .join("bin/busybox")
        .is_file());
}
