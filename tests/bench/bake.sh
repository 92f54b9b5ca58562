#!/usr/bin/env bash
# Bench rows for bake: `pausebake bake --archive` of a prebuilt image into a fresh root,
# beside what image pipelines do today on the same archive and an identical fresh root:
# start containerd on the root, `ctr -n k8s.io images import`, stop containerd. Each is run
# RUNS times, alternating, and the median is reported; the ratio is taken in this run.
# containerd runs as the tests run it (tests/bench/containerd.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/row.sh
. tests/bench/containerd.sh
PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
RUNS=${RUNS:-7}

version=$(bench_containerd_required bake)

"$PAUSEBAKE" image --output "$work/pause.tar" >/dev/null

# The pausebake way: one process, no daemon.
bake_once() {
  local root=$work/bake-$1
  mkdir -p "$root"
  timed "$PAUSEBAKE" bake --root "$root" --archive "$work/pause.tar" \
    --containerd-version "$version"
}

# The daemon way: start containerd on the root, import, stop it.
daemon_import() {
  start_containerd "$1" "$2"
  "$CTR" --address "$2/sock" -n k8s.io images import "$work/pause.tar"
  stop_containerd
}

ctr_once() {
  local root=$work/ctr-$1 run=$work/run-$1
  mkdir -p "$root" "$run"
  timed daemon_import "$root" "$run"
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
