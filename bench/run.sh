#!/bin/bash
# cloudlet's benchmarks, side by side with its peers in one run on this machine (make bench).
# Prints a markdown report (also written to bench/out/report.md) with medians and ratios.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bench/out"
mkdir -p "$out"
bin="$root/target/release/cloudlet"
runs=${RUNS:-20}
work=$(mktemp -d /tmp/clb.XXXX)
sock="$work/run/d.sock"
export DOCKER_HOST="unix://$sock"
report="$out/report.md"
: > "$report"
say() { echo "$*" | tee -a "$report"; }

cleanup() {
  "$bin" rm -f $("$bin" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
  [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null || true
  [ -n "${registry:-}" ] && kill "$registry" 2>/dev/null || true
  podman rm -af >/dev/null 2>&1 || true
  for t in clbench clbcold; do nft delete table ip $t 2>/dev/null || true; ip link del ${t}0 2>/dev/null || true; done
  grep " $work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Each daemon gets its own nftables table, bridge and addresses, apart from a `make up` one.
"$bin" server --data-dir "$work/data" --exec-root "$work/run" --socket "$sock" \
  --network-prefix clbench --bip 10.213.0.1/24 --default-address-pool base=10.213.0.0/16,size=24 \
  --bind-address 127.0.0.1 --https-listen-port 0 --write-kubeconfig "$work/kubeconfig" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
"$root/scripts/busybox-rootfs.sh" "$work/bb.tar"
"$bin" import "$work/bb.tar" busybox:latest >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# time_ms CMD...: one run's wall time in ms
time_ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
bench() { local i; for i in $(seq 1 "$runs"); do time_ms "$@"; done | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

say "# cloudlet benchmarks"
say ""
say "$(date -u +%Y-%m-%d), $(nproc) cores, kernel $(uname -r), $runs runs each, medians. Command: \`make bench\`."
say ""

# --- 1. start latency -------------------------------------------------------------------
podman rm -af >/dev/null 2>&1 || true
podman rmi -f localhost/busybox:latest >/dev/null 2>&1 || true
podman import "$work/bb.tar" localhost/busybox:latest >/dev/null
mkdir -p "$work/bundle/rootfs" && tar -C "$work/bundle/rootfs" -xf "$work/bb.tar"
(cd "$work/bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/' config.json)

# A second daemon without the warm pool, for the start path that creates the container.
cold_sock="$work/run-cold/d.sock"
"$bin" server --data-dir "$work/data-cold" --exec-root "$work/run-cold" --socket "$cold_sock" --warm-pool 0 \
  --network-prefix clbcold --bip 10.214.0.1/24 --default-address-pool base=10.214.0.0/16,size=24 \
  --bind-address 127.0.0.1 --https-listen-port 0 --write-kubeconfig "$work/kubeconfig-cold" 2>"$work/daemon-cold.log" &
daemon_cold=$!
for _ in $(seq 1 100); do [ -S "$cold_sock" ] && break; sleep 0.1; done
DOCKER_HOST="unix://$cold_sock" "$bin" import "$work/bb.tar" busybox:latest >/dev/null

# hmed [hyperfine options] CMD: median ms of $runs runs (hyperfine, no shell in between).
hmed() {
  hyperfine -N --runs "$runs" --warmup 3 --export-json "$work/h.json" "$@" >/dev/null 2>&1
  jq '.results[0].median * 10000 | round / 10' "$work/h.json"
}
gap=(--prepare "sleep 0.05")  # 50 ms between runs, as between commands a person types
"$bin" run --rm --network none busybox true >/dev/null  # unpack the layer, fill the pool
c=$(hmed "${gap[@]}" "$bin run --rm --network none busybox true")
cb=$(hmed "$bin run --rm --network none busybox true")
cc=$(hmed "${gap[@]}" "env DOCKER_HOST=unix://$cold_sock $bin run --rm --network none busybox true")
p=$(hmed "${gap[@]}" "podman --runtime runc run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/busybox true")
r=$(hmed "${gap[@]}" "runc --root $work/runc run --bundle $work/bundle b1")
# The same with the default bridge network and a published port.
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])')
nb=$(hmed "${gap[@]}" "$bin run --rm -p $pport:80 busybox true")
nbc=$(hmed "${gap[@]}" "env DOCKER_HOST=unix://$cold_sock $bin run --rm -p $pport:80 busybox true")
pb=$(hmed "${gap[@]}" "podman --runtime runc run --rm -p $pport:80 --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/busybox true")
kill "$daemon_cold" 2>/dev/null; wait "$daemon_cold" 2>/dev/null || true
say "## Start latency: run --rm --network none busybox true"
say ""
say "hyperfine, $runs runs after 3 warm-ups, 50 ms apart unless said otherwise; medians."
say ""
say "| | median ms | cloudlet ÷ this |"
say "| --- | ---: | ---: |"
say "| cloudlet (end to end, CLI → API → shim; the container was made ahead of demand) | $c | 1.00 |"
say "| cloudlet, runs back to back (the pool refills while the next run starts) | $cb | $(ratio "$c" "$cb") |"
say "| cloudlet --warm-pool 0 (the start creates the container) | $cc | $(ratio "$c" "$cc") |"
say "| podman --runtime runc run --rm | $p | $(ratio "$c" "$p") |"
say "| runc run (prepared bundle, no image or API) | $r | $(ratio "$c" "$r") |"
say ""
say "Targets: ≤ 0.25 × podman, ≤ 0.5 × bare runc. Without the pool: $(ratio "$cc" "$p") × podman, $(ratio "$cc" "$r") × runc."
say ""

say "## Start latency with the default bridge network and a published port: run --rm -p P:80 busybox true"
say ""
say "| | median ms | cloudlet ÷ this |"
say "| --- | ---: | ---: |"
say "| cloudlet, bridge + published port | $nb | 1.00 |"
say "| cloudlet, --network none (from the table above) | $c | $(ratio "$nb" "$c") |"
say "| cloudlet --warm-pool 0, bridge + published port | $nbc | $(ratio "$nb" "$nbc") |"
say "| podman --runtime runc run --rm -p (its default network) | $pb | $(ratio "$nb" "$pb") |"
say ""
say "Targets: ≤ 10 ms added to --network none (added: $(awk -v a="$nb" -v b="$c" 'BEGIN {printf "%.1f", a - b}') ms pooled, $(awk -v a="$nbc" -v b="$cc" 'BEGIN {printf "%.1f", a - b}') ms with --warm-pool 0); ≤ 0.15 × podman ($(ratio "$nbc" "$pb") × without the pool)."
say ""

# --- 1b. throughput through a published port ---------------------------------------------
# The same server (busybox httpd, one small page) in a container of each, reached from the
# host through the published port on 127.0.0.1 with wrk.
mkdir -p "$work/www" && head -c 1024 /dev/urandom | base64 > "$work/www/index.html"
cport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])')
pport2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])')
"$bin" run -d --name web -p "$cport:80" -v "$work/www:/www" busybox httpd -f -p 80 -h /www >/dev/null
podman --runtime runc run -d --name web -p "$pport2:80" -v "$work/www:/www" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/busybox httpd -f -p 80 -h /www >/dev/null
sleep 1
# busybox httpd closes every connection, so each run leaves thousands of sockets in
# TIME_WAIT that slow the next one down: rounds alternate between the two, with pauses,
# and the medians are compared.
wrk_once() { wrk -t2 -c16 -d"${WRK_SECS:-5}"s --latency "$1" | awk '/Requests\/sec/ {r=$2} $1 == "50%" {l=$2} END {print r, l}'; }
: > "$work/wrk-c"; : > "$work/wrk-p"
for _ in $(seq 1 "${WRK_ROUNDS:-5}"); do
  wrk_once "http://127.0.0.1:$cport/index.html" >> "$work/wrk-c"; sleep 3
  wrk_once "http://127.0.0.1:$pport2/index.html" >> "$work/wrk-p"; sleep 3
done
tc=$(awk '{print $1}' "$work/wrk-c" | median); lc=$(awk '{print $2}' "$work/wrk-c" | sort | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
tp=$(awk '{print $1}' "$work/wrk-p" | median); lp=$(awk '{print $2}' "$work/wrk-p" | sort | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
"$bin" rm -f web >/dev/null; podman rm -f web >/dev/null
say "## Throughput through a published port (wrk -t2 -c16, ${WRK_ROUNDS:-5} alternating rounds of ${WRK_SECS:-5} s, busybox httpd, 1.4 KB page; medians)"
say ""
say "| | requests/s | median latency | cloudlet ÷ this (requests/s) |"
say "| --- | ---: | ---: | ---: |"
say "| cloudlet -p | $tc | $lc | 1.00 |"
say "| podman -p | $tp | $lp | $(ratio "$tc" "$tp") |"
say ""
say "Target: ≥ 1.0 × podman's throughput."
say ""

# --- 2. memory ---------------------------------------------------------------------------
# Per idle container the host pays for: its shim (PSS: the binary's shared pages are split
# among the shims that map them, as the kernel really does) and the kernel objects charged to
# the container's memory cgroup besides its own process (namespaces, mounts, page tables).
n=${IDLE:-20}
for i in $(seq 1 "$n"); do "$bin" run -d --network none busybox sleep 100000 >/dev/null; done
sleep 2
# The containers' own shims (the pool's waiting container and its init are not counted).
shims=$(for id in $("$bin" ps -q --no-trunc); do pgrep -f "^$bin shim .*/${id:0:32}.json" | head -1; done)
shim_pss=$(for p in $shims; do awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup; done | awk '{s+=$1; n++} END {printf "%.0f", s/n}')
shim_rss=$(for p in $shims; do awk '/^VmRSS/ {print $2}' /proc/$p/status; done | awk '{s+=$1; n++} END {printf "%.0f", s/n}')
cg_kib=$(for id in $("$bin" ps -q --no-trunc); do
  f=/sys/fs/cgroup/memory/cloudlet/$id/memory.usage_in_bytes
  [ -f "$f" ] || f=/sys/fs/cgroup/cloudlet/$id/memory.current
  cat "$f"
done | awk '{s+=$1; n++} END {printf "%.0f", s/n/1024}')
# What a container waiting in the pool costs: its shim and waiting init (PSS) and its cgroup.
warm_kib=0
for dir in "$work"/data/containers/*; do
  [ -e "$dir/config.v2.json" ] && continue
  id=$(basename "$dir")
  pss=$(for p in $(pgrep -f "^$bin shim .*/${id:0:32}.json"); do awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup; done | awk '{s+=$1} END {print s+0}')
  f=/sys/fs/cgroup/memory/cloudlet/$id/memory.usage_in_bytes
  [ -f "$f" ] || f=/sys/fs/cgroup/cloudlet/$id/memory.current
  warm_kib=$((pss + $(cat "$f" 2>/dev/null || echo 0) / 1024))
done
daemon_rss=$(awk '/VmRSS/ {print $2}' /proc/$daemon/status)
"$bin" rm -f $("$bin" ps -q) >/dev/null
sleep 1
daemon_idle=$(awk '/VmRSS/ {print $2}' /proc/$daemon/status)
say "## Memory"
say ""
say "| | KiB |"
say "| --- | ---: |"
say "| shim PSS per idle container (mean of $n) | $shim_pss |"
say "| shim RSS per idle container (counts the shared binary pages in full) | $shim_rss |"
say "| container cgroup charge (sleep process + kernel objects), mean | $cg_kib |"
say "| host memory per idle container: shim PSS + cgroup charge | $((shim_pss + cg_kib)) |"
say "| a container waiting in the warm pool (shim + init PSS + cgroup charge) | $warm_kib |"
say "| daemon RSS with $n containers | $daemon_rss |"
say "| daemon RSS idle, after removing them | $daemon_idle |"
say ""
say "Targets: ≤ 2048 KiB per idle container, ≤ 30720 KiB daemon idle."
say ""

# --- 3. pull from a loopback registry ----------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/reg.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/reg}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/reg.yml" >/dev/null 2>&1 &
registry=$!
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
python3 "$root/bench/make_image.py" "$work/big.tar" 4 25  # 4 layers of 25 MiB of random data
"$bin" load -i "$work/big.tar" >/dev/null
img="127.0.0.1:$port/bench/big:1"
"$bin" tag bench/big:1 "$img" && "$bin" push "$img" >/dev/null
pull_cloudlet() { "$bin" rmi -f "$img" bench/big:1 >/dev/null 2>&1; "$bin" pull "$img"; }
pull_podman() { podman rmi -f "$img" >/dev/null 2>&1; podman pull --tls-verify=false "$img"; }
pull_skopeo() { rm -rf "$work/oci" "$work/unpacked"; skopeo copy --src-tls-verify=false "docker://$img" "oci:$work/oci:big" && umoci unpack --image "$work/oci:big" "$work/unpacked"; }
runs_pull=${PULL_RUNS:-5}
pc=$(for i in $(seq 1 "$runs_pull"); do time_ms pull_cloudlet; done | median)
pp=$(for i in $(seq 1 "$runs_pull"); do time_ms pull_podman; done | median)
ps_=$(for i in $(seq 1 "$runs_pull"); do time_ms pull_skopeo; done | median)
say "## Pull of a 100 MiB, 4-layer image from a loopback registry (docker-registry), $runs_pull runs"
say ""
say "| | median ms | cloudlet ÷ this |"
say "| --- | ---: | ---: |"
say "| cloudlet pull (fetch, verify, unpack) | $pc | 1.00 |"
say "| podman pull | $pp | $(ratio "$pc" "$pp") |"
say "| skopeo copy + umoci unpack | $ps_ | $(ratio "$pc" "$ps_") |"
say ""
say "Target: ≤ 1.0 × their time."
say ""

# --- 4. the Kubernetes API server -------------------------------------------------------------
# The load generator (crates/apiserver/examples/loadgen.rs) starts the API server on loopback
# over each store and drives it over HTTPS with an admin client certificate.
(cd "$root" && cargo build -q --release -p cloudlet-apiserver --example loadgen)
loadgen="$root/target/release/examples/loadgen"
etcd_dir=$(mktemp -d /dev/shm/clb-etcd.XXXX 2>/dev/null || mktemp -d)
eport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
etcd --name bench --data-dir "$etcd_dir/data" --log-level error \
  --listen-client-urls "http://127.0.0.1:$eport" --advertise-client-urls "http://127.0.0.1:$eport" \
  --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
  --initial-cluster "bench=http://127.0.0.1:$pport" >"$etcd_dir/log" 2>&1 &
etcd_pid=$!
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$eport) 2>/dev/null && break; sleep 0.1; done
say "## Kubernetes API server (loadgen: 16 clients, 10,000 creates, LIST of 10,000 pods, 100 watchers)"
say ""
say "| store | measure | result | latency |"
say "| --- | --- | ---: | ---: |"
"$loadgen" sqlite | tee -a "$report"
on_etcd=$("$loadgen" "etcd://127.0.0.1:$eport" | tee -a "$report")
echo "$on_etcd"
# The ceiling: etcd's own write check against the same etcd, at its heaviest preset (1000
# clients asking for 15,000 puts/s for 60 s): what it reaches is the machine's raw put rate.
raw=$({ ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$eport" check perf --load=xl 2>&1 || true; } |
  sed -n 's/.*Throughput[^0-9]*\([0-9][0-9]*\) writes.*/\1/p' | head -1)
api=$(echo "$on_etcd" | awk -F'|' '/creates\/s/ {gsub(/ /, "", $4); print $4; exit}')
say "| raw etcd | puts/s (etcdctl check perf --load=xl) | ${raw:-?} | API server on etcd ÷ raw: $(ratio "${api:-0}" "${raw:-1}") |"
kill "$etcd_pid" 2>/dev/null; wait "$etcd_pid" 2>/dev/null || true
rm -rf "$etcd_dir"
say ""
say "Targets (SQLite): ≥ 2,000 creates/s, mutating p99 ≤ 10 ms, LIST of 10,000 pods p99 ≤ 100 ms, watch delay p99 ≤ 50 ms. On etcd: ≥ 0.5 × raw etcd's put rate."
