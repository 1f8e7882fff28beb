"""The Python kubernetes client against cloudlet: list, create, and watch a change."""
import sys
import threading
import time

from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()

names = {n.metadata.name for n in v1.list_namespace().items}
assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names, names

v1.create_namespaced_config_map(
    "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py"), data={"a": "1"})
)
listed = v1.list_namespaced_config_map("default")
assert [c.data for c in listed.items if c.metadata.name == "py"] == [{"a": "1"}]


def change():
    time.sleep(0.5)
    v1.patch_namespaced_config_map("py", "default", {"data": {"a": "2"}})


threading.Thread(target=change).start()
w = watch.Watch()
seen = None
for ev in w.stream(
    v1.list_namespaced_config_map,
    "default",
    resource_version=listed.metadata.resource_version,
    timeout_seconds=10,
):
    if ev["type"] == "MODIFIED" and ev["object"].metadata.name == "py":
        seen = ev["object"].data
        w.stop()
assert seen == {"a": "2"}, seen
print("python kubernetes: ok")
