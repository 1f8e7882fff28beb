//! Runtime classes and HEALTHCHECK through the docker CLI.

mod common;
use common::Daemon;

#[test]
fn runc_runs_the_same_bundle() {
    require_machine!();
    if std::process::Command::new("runc")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: runc is not installed");
        return;
    }
    let d = Daemon::start();
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--runtime",
            "runc",
            "busybox",
            "echo",
            "via runc"
        ]),
        "via runc\n"
    );
    d.ok(&[
        "run",
        "-d",
        "--name",
        "rc",
        "--runtime",
        "runc",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(d.ok(&["exec", "rc", "echo", "exec"]), "exec\n");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.HostConfig.Runtime}}", "rc"])
            .trim(),
        "runc"
    );
    d.ok(&["rm", "-f", "rc"]);
    let out = d.docker(&["run", "--rm", "--runtime", "nope", "busybox", "true"]);
    assert!(common::stderr(&out).contains("unknown or invalid runtime name: nope"));
}

#[test]
fn health_checks_report_in_inspect() {
    require_machine!();
    let d = Daemon::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -e /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    ]);
    let status = || {
        d.ok(&["inspect", "-f", "{{.State.Health.Status}}", "hc"])
            .trim()
            .to_string()
    };
    common::eventually("unhealthy", 20, || status() == "unhealthy");
    d.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    common::eventually("healthy", 20, || status() == "healthy");
    let ps = d.ok(&["ps", "--format", "{{.Status}}", "--filter", "name=hc"]);
    assert!(ps.contains("(healthy)"), "{ps}");
}

/// An image whose config carries docker's HEALTHCHECK (as `docker build` writes it): the
/// container gets the check without any --health flag.
#[test]
fn healthcheck_from_the_image() {
    require_machine!();
    let d = Daemon::start();
    let saved = d.dir.path().join("bb.tar");
    let with_hc = d.dir.path().join("hc.tar");
    d.ok(&["save", "-o", saved.to_str().unwrap(), "busybox"]);
    let script = r#"
import hashlib, io, json, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(src) as t:
    man = json.load(t.extractfile("manifest.json"))[0]
    cfg = json.load(t.extractfile(man["Config"]))
    layers = {name: t.extractfile(name).read() for name in man["Layers"]}
cfg["config"]["Healthcheck"] = {"Test": ["CMD-SHELL", "true"], "Interval": 1000000000, "Retries": 1}
raw = json.dumps(cfg).encode()
name = hashlib.sha256(raw).hexdigest() + ".json"
manifest = json.dumps([{"Config": name, "RepoTags": ["hc:1"], "Layers": man["Layers"]}]).encode()
with tarfile.open(dst, "w") as t:
    for n, data in [(name, raw), ("manifest.json", manifest), *layers.items()]:
        ti = tarfile.TarInfo(n); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
"#;
    let st = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            saved.to_str().unwrap(),
            with_hc.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    d.ok(&["load", "-i", with_hc.to_str().unwrap()]);
    d.ok(&["run", "-d", "--name", "imghc", "hc:1", "sleep", "1000"]);
    common::eventually("healthy from the image's check", 20, || {
        d.ok(&["inspect", "-f", "{{.State.Health.Status}}", "imghc"])
            .trim()
            == "healthy"
    });
}
