#!/usr/bin/env bash
# Bench rows for the live path (`--address`):
# - `pausebake import --address` of the pause archive into a running containerd, beside
#   `ctr -n k8s.io images import` (the ctr of the same release) of the same archive into the
#   same containerd, for each containerd the tests run: the system one (1.6 on bookworm),
#   each unpacked in the machine cache by tests/fetch-containerd.sh (1.7, 2.1, 2.3), and
#   2.3.4 from the shared test data ($PAUSEBAKE_SHARED, default ../shared beside the
#   checkout) when the cache has no 2.3 yet. Before each run (untimed) the image is removed
#   with a synchronous GC so both write everything. Runs alternate; the best of RUNS each is
#   reported and the ratio is taken in this run, beside the median ratio of each run to the
#   ctr run after it. `--trace` shows where the time goes. The row is the static release
#   binary's (`make dist`, or STATIC): the one Packer uploads to a node and an air-gapped
#   host runs; the glibc build ($PAUSEBAKE) runs beside it and its figures are shown too.
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
cache=${PAUSEBAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pausebake}/containerd
shared=${PAUSEBAKE_SHARED:-$(cd .. && pwd)/shared}

bench_containerd_required live >/dev/null

"$PAUSEBAKE" image --name "$NAME" --output "$work/pause.tar" >/dev/null 2>&1

case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) echo "bench live: static binaries exist for amd64 and arm64 only" >&2; exit 1 ;;
esac
if [ -z "${STATIC:-}" ]; then
  make --no-print-directory dist >/dev/null
  STATIC=$PWD/dist/pausebake-linux-$arch
fi

best() { sort -n | head -n 1; }

# The containerd and ctr programs to bench, one pair per line.
programs() {
  echo "$CONTAINERD $CTR"
  local dir
  for dir in "$cache"/containerd-*/usr/bin; do
    [ -x "$dir/containerd" ] && [ -x "$dir/ctr" ] && echo "$dir/containerd $dir/ctr"
  done
  local tarball=$shared/containerd/2.3.4/containerd-2.3.4-linux-amd64.tar.xz
  if ! compgen -G "$cache/containerd-2.3*" >/dev/null && [ -f "$tarball" ]; then
    mkdir -p "$work/2.3.4"
    tar -xJf "$tarball" -C "$work/2.3.4"
    echo "$work/2.3.4/containerd $work/2.3.4/ctr"
  fi
}

# bench_version CONTAINERD CTR: the import row for that containerd, with its own ctr.
bench_version() {
  CONTAINERD=$1 CTR=$2
  local version run=$work/run-$3 root=$work/root-$3
  version=$("$CONTAINERD" --version | awk '{print $3}')
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
    timed "$1" import "$work/pause.tar" --address "$run/sock" --root "$root"
  }
  ctr_once() {
    forget
    timed ctr images import "$work/pause.tar"
  }

  local static_ns=() glibc_ns=() ctr_ns=()
  for _ in $(seq "$RUNS"); do
    static_ns+=("$(live_once "$STATIC")")
    glibc_ns+=("$(live_once "$PAUSEBAKE")")
    ctr_ns+=("$(ctr_once)")
  done
  stop_containerd
  local s g c ratio glibc_ratio paired load
  s=$(printf '%s\n' "${static_ns[@]}" | best)
  g=$(printf '%s\n' "${glibc_ns[@]}" | best)
  c=$(printf '%s\n' "${ctr_ns[@]}" | best)
  ratio=$(awk -v c="$c" -v l="$s" 'BEGIN { printf "%.2f", l / c }')
  glibc_ratio=$(awk -v c="$c" -v l="$g" 'BEGIN { printf "%.2f", l / c }')
  paired=$(paired_median static_ns ctr_ns)
  load=$(cut -d' ' -f1 /proc/loadavg)
  bench_row "import --address into a running containerd $version, static release binary (best of $RUNS)" "$(ms "$s")" "$(ms "$c")" ms "$(ms "$s") ms" \
    "ctr -n k8s.io images import of the same archive ($version's ctr): $(ms "$c") ms (pausebake takes ${ratio}× ctr's time, ${paired}× as the median of the runs paired; goal ≤ 0.5; the glibc build: $(ms "$g") ms, ${glibc_ratio}×, $(paired_median glibc_ns ctr_ns)× paired; load average $load)" \
    "$ratio"
}

# paired_median OURS THEIRS (names of arrays): the median of each run's time over the ctr
# run's right after it. The disk's sync time drifts from minute to minute, and two bests may
# come from different minutes.
paired_median() {
  local -n ours=$1 theirs=$2
  local k
  for k in "${!ours[@]}"; do
    awk -v l="${ours[$k]}" -v c="${theirs[$k]}" 'BEGIN { printf "%.3f\n", l / c }'
  done | median | awk '{ printf "%.2f", $1 }'
}

i=0
while read -r containerd ctr_program; do
  i=$((i + 1))
  bench_version "$containerd" "$ctr_program" "$i"
done < <(programs)

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
