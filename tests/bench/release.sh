#!/usr/bin/env bash
# Bench rows for the release binary (issue 12): the static pausebake's size against the goal
# (5 MB) and the glibc release build, and a cold `bake` (new process, fresh root, built-in
# pause) of the static binary against the dynamic one, RUNS times each, alternating, median
# reported; the ratio is taken in this run. Builds the static binary with `make dist` unless
# STATIC names one.
set -euo pipefail
. "$(dirname "$0")/row.sh"
cd "$(dirname "$0")/../.."
PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
RUNS=${RUNS:-15}
static_release release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }

bake_once() {
  local bin=$1 root=$work/$2
  mkdir -p "$root"
  timed "$bin" bake --root "$root"
}

static_times=() dynamic_times=()
for i in $(seq "$RUNS"); do
  static_times+=("$(bake_once "$STATIC" "s$i")")
  dynamic_times+=("$(bake_once "$PAUSEBAKE" "d$i")")
done
s=$(printf '%s\n' "${static_times[@]}" | median)
d=$(printf '%s\n' "${dynamic_times[@]}" | median)
size=$(stat -c %s "$STATIC")
dyn_size=$(stat -c %s "$PAUSEBAKE")
bench_row "static pausebake-linux-$arch size" "$size" "$dyn_size" B \
  "$(mb "$size")" "goal < 5 MB; glibc release build $(mb "$dyn_size")"
bench_row "cold bake, static binary (median of $RUNS)" "$(ms "$s")" "$(ms "$d")" ms \
  "$(ms "$s") ms" "dynamic (glibc) binary $(ms "$d") ms; ratio $(awk -v a="$s" -v b="$d" 'BEGIN { printf "%.2f", a / b }')"
