#!/usr/bin/env bash
# Bench row for the effective containerd config: `pausebake verify --json` on a root whose
# main config imports 100 drop-ins (a glob), beside the same command on the main file alone,
# so the difference is the resolution of the 100 drop-ins. Best of 5 wall-clock runs each.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/row.sh
PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

make_root() { # DIR N: a root whose config imports N drop-ins
  mkdir -p "$1/etc/containerd/conf.d"
  printf 'version = 3\nimports = ["/etc/containerd/conf.d/*.toml"]\n' >"$1/etc/containerd/config.toml"
  for i in $(seq -w 1 "$2"); do
    printf 'version = 3\n[plugins."io.containerd.cri.v1.images".pinned_images]\nsandbox = "example.invalid/pause:%s"\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.r%s]\nruntime_type = "io.containerd.runc.v2"\n' "$i" "$i" \
      >"$1/etc/containerd/conf.d/$i.toml"
  done
}
make_root "$work/r100" 100
make_root "$work/r0" 0

best_ms() {
  local best=999999 t0 t1 ms
  for _ in 1 2 3 4 5; do
    stamp t0
    "$@" >/dev/null 2>&1 || true
    stamp t1
    ms=$(((t1 - t0) / 1000000))
    [ "$ms" -lt "$best" ] && best=$ms
  done
  echo "$best"
}
verify() { "$PAUSEBAKE" verify --json --containerd-version 2.1.9 --platform linux/amd64 --root "$1"; }
# the answer must be the last drop-in's, or the figure means nothing
# (verify exits 3 here: the root has no store; only the config part matters)
answer=$(verify "$work/r100" || true)
grep -q '"sandbox_image": "example.invalid/pause:100"' <<<"$answer"
with=$(best_ms verify "$work/r100")
without=$(best_ms verify "$work/r0")
bench_row "config: verify with 100 drop-ins (effective config resolution)" "$with" "$without" ms \
  "$with ms" "same root without drop-ins: $without ms (difference = resolving 100 drop-ins); target < 50 ms for the resolution"
