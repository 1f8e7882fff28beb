"""Writes a docker-save archive of LAYERS layers of MIB MiB of random data: a pull benchmark
image that compresses like real binaries do not (worst case for the transfer)."""
import hashlib, io, json, os, sys, tarfile

out, layers, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
diffs, names = [], []
with tarfile.open(out, "w") as archive:
    for i in range(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            data = os.urandom(mib << 20)
            ti = tarfile.TarInfo(f"data/layer{i}.bin")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        layer = buf.getvalue()
        diffs.append("sha256:" + hashlib.sha256(layer).hexdigest())
        name = f"layer{i}.tar"
        names.append(name)
        ti = tarfile.TarInfo(name)
        ti.size = len(layer)
        archive.addfile(ti, io.BytesIO(layer))
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
    cfg = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg, "RepoTags": ["bench/big:1"], "Layers": names}]).encode()
    for name, data in ((cfg, config), ("manifest.json", manifest)):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        archive.addfile(ti, io.BytesIO(data))
