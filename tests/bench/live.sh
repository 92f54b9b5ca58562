#!/usr/bin/env bash
# Bench rows for the live path (`--address`):
# - `pausebake import --address` of the pause archive into a running containerd, beside
#   `ctr -n k8s.io images import` of the same archive into the same containerd; before each
#   run (untimed) the image is removed with a synchronous GC so both write everything. Runs
#   alternate; the best of RUNS each is reported and the ratio is taken in this run.
# - the size of the release binary with and without the `live` feature (the one without is
#   built once into target/bench-no-live, or taken from PAUSEBAKE_NO_LIVE).
# containerd runs as the tests run it (tests/bench/containerd.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/row.sh
. tests/bench/containerd.sh
PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
RUNS=${RUNS:-7}
NAME=registry.k8s.io/pause:3.10

version=$(bench_containerd_required live)

"$PAUSEBAKE" image --name "$NAME" --output "$work/pause.tar" >/dev/null 2>&1

best() { sort -n | head -n 1; }

run=$work/run root=$work/root
mkdir -p "$run" "$root"
start_containerd "$root" "$run" '[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true'
ctr() { "$CTR" --address "$run/sock" -n k8s.io "$@"; }

# Untimed: every image record (CRI adds a sha256:<config> twin of ours) and, by synchronous
# GC, their content gone, so the next import writes everything.
forget() {
  local names
  names=$(ctr images ls -q)
  [ -z "$names" ] || ctr images rm --sync $names >/dev/null
  if [ -n "$(ctr content ls -q)" ]; then
    echo "bench live: content left after removing the image: $(ctr content ls -q | head -n 3)" >&2
    exit 1
  fi
}

live_once() {
  forget
  local t0; t0=$(now)
  "$PAUSEBAKE" import "$work/pause.tar" --address "$run/sock" --root "$root" >/dev/null
  echo $(($(now) - t0))
}

ctr_once() {
  forget
  local t0; t0=$(now)
  ctr images import "$work/pause.tar" >/dev/null
  echo $(($(now) - t0))
}

live_ns=() ctr_ns=()
for _ in $(seq "$RUNS"); do
  live_ns+=("$(live_once)")
  ctr_ns+=("$(ctr_once)")
done
stop_containerd
l=$(printf '%s\n' "${live_ns[@]}" | best)
c=$(printf '%s\n' "${ctr_ns[@]}" | best)
ratio=$(awk -v c="$c" -v l="$l" 'BEGIN { printf "%.2f", l / c }')
load=$(cut -d' ' -f1 /proc/loadavg)
bench_row "import --address into a running containerd $version (best of $RUNS)" "$(ms "$l")" "$(ms "$c")" ms "$(ms "$l") ms" \
  "ctr -n k8s.io images import of the same archive: $(ms "$c") ms (pausebake takes ${ratio}× ctr's time; goal ≤ 0.5; load average $load)"

# Binary size with and without the live path.
no_live=${PAUSEBAKE_NO_LIVE:-}
if [ -z "$no_live" ]; then
  CARGO_TARGET_DIR=$PWD/target/bench-no-live cargo build --release --locked --quiet >&2
  no_live=$PWD/target/bench-no-live/release/pausebake
fi
with=$(stat -c %s "$PAUSEBAKE")
without=$(stat -c %s "$no_live")
grow=$(awk -v w="$with" -v o="$without" 'BEGIN { printf "%.2f", w / o }')
bench_row "release binary with the live feature" "$with" "$without" B "$with bytes" \
  "without: $without bytes (${grow}×)"
