#!/bin/bash
# Runs `cloudlet server` in the foreground and, once its socket answers, makes sure an image
# named busybox exists (from Debian's busybox-static) so a first `cloudlet run busybox …`
# works with no network.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sock=/run/cloudlet/docker.sock
cloudlet server "$@" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
for _ in $(seq 1 300); do
  curl -sf --unix-socket "$sock" http://cloudlet/_ping >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { wait $pid; exit $?; }
  sleep 0.1
done
if ! curl -sf --unix-socket "$sock" http://cloudlet/images/busybox/json >/dev/null; then
  echo "up: creating the busybox image from Debian's busybox-static" >&2
  "$here/busybox-rootfs.sh" | curl -sf --unix-socket "$sock" -X POST \
    -H 'Content-Type: application/x-tar' --data-binary @- \
    'http://cloudlet/images/create?fromSrc=-&repo=busybox&tag=latest' >/dev/null
fi
echo "up: cloudlet is serving the Docker API on unix://$sock and the Kubernetes API on :6443" >&2
echo "up: KUBECONFIG=/etc/cloudlet/cloudlet.yaml kubectl get ns (Ctrl-C stops the daemon; containers keep running)" >&2
wait $pid
