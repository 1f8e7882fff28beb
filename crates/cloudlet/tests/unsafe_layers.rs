//! Acceptance 4: a layer that would write outside the root is refused, and writes nothing.

mod common;
use common::{stderr, Daemon};
use std::process::Command;

/// A `docker save` archive with one layer built by Python's tarfile, which (unlike a careful
/// tar writer) lets us put hostile names in.
fn hostile_archive(dir: &std::path::Path, entries: &str) -> std::path::PathBuf {
    let out = dir.join("hostile.tar");
    let script = format!(
        r#"
import hashlib, io, json, tarfile
def add(t, name, data=b"", **kw):
    ti = tarfile.TarInfo(name); ti.size = len(data)
    for k, v in kw.items(): setattr(ti, k, v)
    t.addfile(ti, io.BytesIO(data) if data else None)
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
{entries}
layer = layer.getvalue()
diff = "sha256:" + hashlib.sha256(layer).hexdigest()
config = json.dumps({{"architecture": "amd64", "os": "linux", "config": {{}}, "rootfs": {{"type": "layers", "diff_ids": [diff]}}}}).encode()
cfg = hashlib.sha256(config).hexdigest()
with tarfile.open({out:?}, "w") as t:
    add(t, "layer.tar", layer)
    add(t, cfg + ".json", config)
    add(t, "manifest.json", json.dumps([{{"Config": cfg + ".json", "RepoTags": ["hostile:1"], "Layers": ["layer.tar"]}}]).encode())
"#,
        out = out.display().to_string()
    );
    let st = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

fn assert_refused(d: &Daemon, entries: &str, host_paths: &[&str]) {
    let archive = hostile_archive(d.dir.path(), entries);
    let out = d.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(!out.status.success(), "a hostile layer was loaded");
    let err = stderr(&out);
    assert!(
        err.contains("escapes") || err.contains("outside") || err.contains("refuse"),
        "unclear message: {err}"
    );
    for p in host_paths {
        assert!(
            !std::path::Path::new(p).exists(),
            "{p} was written on the host"
        );
    }
    assert!(
        !d.ok(&["images"]).contains("hostile"),
        "a refused image was tagged"
    );
}

#[test]
fn path_traversal_is_refused() {
    require_machine!();
    let d = Daemon::start_bare();
    let marker = format!("cloudlet-escape-{}", std::process::id());
    assert_refused(
        &d,
        &format!("    add(t, '../../../../../../tmp/{marker}', b'x')"),
        &[&format!("/tmp/{marker}")],
    );
}

#[test]
fn writing_through_a_symlink_to_etc_is_refused() {
    require_machine!();
    let d = Daemon::start_bare();
    let marker = format!("cloudlet-escape-{}", std::process::id());
    let entries = format!(
        "    add(t, 'etc', type=tarfile.SYMTYPE, linkname='/etc')\n    add(t, 'etc/{marker}', b'x')"
    );
    assert_refused(&d, &entries, &[&format!("/etc/{marker}")]);
}

#[test]
fn hard_link_out_of_the_root_is_refused() {
    require_machine!();
    let d = Daemon::start_bare();
    assert_refused(
        &d,
        "    add(t, 'passwd', type=tarfile.LNKTYPE, linkname='../../../../../../etc/passwd')",
        &[],
    );
}

#[test]
fn the_issues_combined_layer_is_refused() {
    require_machine!();
    let d = Daemon::start_bare();
    let marker = format!("cloudlet-x-{}", std::process::id());
    let entries = format!(
        "    add(t, '../../etc/{marker}', b'x')\n    add(t, 'e', type=tarfile.SYMTYPE, linkname='/etc')\n    add(t, 'h', type=tarfile.LNKTYPE, linkname='../../etc/passwd')"
    );
    assert_refused(&d, &entries, &[&format!("/etc/{marker}")]);
}
