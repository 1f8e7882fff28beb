"""The Python docker SDK (PyPI `docker`) against cloudlet: the same operations as the CLI."""
import sys, time
import docker

client = docker.DockerClient(base_url=sys.argv[1], version="auto")
assert client.ping()
assert client.version()["ApiVersion"].startswith("1.")
assert client.info()["OSType"] == "linux"
assert any("busybox:latest" in i.tags for i in client.images.list())

assert client.containers.run("busybox", ["echo", "hello"], remove=True) == b"hello\n"

c = client.containers.run("busybox", ["sh", "-c", "echo hi; sleep 1000"], detach=True, name="py1")
for _ in range(100):
    if c.logs() == b"hi\n":
        break
    time.sleep(0.1)
assert c.logs() == b"hi\n", c.logs()
c.reload()
assert c.status == "running"
code, out = c.exec_run(["sh", "-c", "echo in; exit 2"])
assert (code, out) == (2, b"in\n"), (code, out)
assert any("sleep" in " ".join(p) for p in c.top()["Processes"])
stats = c.stats(stream=False)
assert stats["memory_stats"]["usage"] > 0
c.pause(); c.reload(); assert c.status == "paused"
c.unpause()
c.stop(timeout=1)
assert c.wait()["StatusCode"] == 137
c.remove()

img = client.images.get("busybox")
img.tag("py/bb", "1")
assert "py/bb:1" in client.images.get("py/bb:1").tags
data = b"".join(img.save(named=True))
client.images.remove("py/bb:1")
loaded = client.images.load(data)
assert loaded and loaded[0].id == img.id

since = int(time.time()) - 1
client.containers.run("busybox", "true", remove=True, name="py2")
actions = [e["Action"] for e in client.events(since=since, until=int(time.time()) + 1, decode=True, filters={"container": "py2"})]
for a in ("create", "start", "die", "destroy"):
    assert a in actions, actions
print("python sdk: ok")
