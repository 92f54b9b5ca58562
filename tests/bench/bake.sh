#!/usr/bin/env bash
# Bench rows for bake: `pausebake bake --archive` of a prebuilt image into a fresh root,
# beside what image pipelines do today on the same archive and an identical fresh root:
# start containerd on the root, `ctr -n k8s.io images import`, stop containerd. Each is run
# RUNS times, alternating, and the median is reported; the ratio is taken in this run.
# containerd runs as the tests run it: private /run and no network (unshare), its own
# root, state and socket under a temporary directory, stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/row.sh
PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
CONTAINERD=${CONTAINERD:-$(command -v containerd || true)}
CTR=${CTR:-$(command -v ctr || true)}
RUNS=${RUNS:-7}
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "$CONTAINERD" ] || [ -z "$CTR" ] || [ "$(id -u)" != 0 ]; then
  echo "bench bake: needs root, containerd and ctr" >&2
  exit 1
fi
version=$("$CONTAINERD" --version | awk '{print $3}')

"$PAUSEBAKE" image --output "$work/pause.tar" >/dev/null

now() { date +%s%N; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e6 }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# The pausebake way: one process, no daemon.
bake_once() {
  local root=$work/bake-$1
  mkdir -p "$root"
  local t0; t0=$(now)
  "$PAUSEBAKE" bake --root "$root" --archive "$work/pause.tar" \
    --containerd-version "$version" >/dev/null
  echo $(($(now) - t0))
}

# The daemon way: start containerd on the root, import, stop it.
ctr_once() {
  local root=$work/ctr-$1 run=$work/run-$1
  mkdir -p "$root" "$run"
  cat >"$run/config.toml" <<EOF
version = 2
root = "$root/var/lib/containerd"
state = "$run/state"
[grpc]
  address = "$run/sock"
[ttrpc]
  address = "$run/sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$run/opt"
EOF
  local t0; t0=$(now)
  unshare --mount --propagation private --net -- sh -c \
    'mount -t tmpfs -o mode=0755 tmpfs /run && exec "$0" --config "$1"' \
    "$CONTAINERD" "$run/config.toml" >"$run/log" 2>&1 &
  pid=$!
  until "$CTR" --address "$run/sock" version >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "containerd exited: $(tail -n 3 "$run/log")" >&2; exit 1; }
    sleep 0.01
  done
  "$CTR" --address "$run/sock" -n k8s.io images import "$work/pause.tar" >/dev/null
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
  echo $(($(now) - t0))
}

bake_ns=() ctr_ns=()
for i in $(seq "$RUNS"); do
  bake_ns+=("$(bake_once "$i")")
  ctr_ns+=("$(ctr_once "$i")")
done
b=$(printf '%s\n' "${bake_ns[@]}" | median)
c=$(printf '%s\n' "${ctr_ns[@]}" | median)
ratio=$(awk -v c="$c" -v b="$b" 'BEGIN { printf "%.0f", c / b }')
# Both sides are fsync-bound: a busy disk narrows the ratio, so the load is part of the figure.
load=$(cut -d' ' -f1 /proc/loadavg)
bench_row "bake --archive into a fresh root (median of $RUNS)" "$(ms "$b")" "$(ms "$c")" ms "$(ms "$b") ms" \
  "start containerd $version + ctr images import + stop: $(ms "$c") ms (${ratio}× slower; target ≥ 10×; load average $load)"
