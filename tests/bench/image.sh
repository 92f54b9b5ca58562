#!/usr/bin/env bash
# Image size per architecture: every blob a node stores for that platform (manifest, config,
# gzip layer), against upstream's pause image. Target: at most 4 KiB for amd64.
# Prints its rows through bench_row (row.sh); run by tests/bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/row.sh
PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Upstream figures (shared/docs/pause-and-anchors.md §4): pause:3.10 amd64 CRI size, and
# pause:3.10.2 arm64 as listed by crictl; other architectures are compared to amd64's.
upstream_for() {
  case $1 in
    arm64) echo "268000 pause:3.10.2 linux/arm64 (crictl, ~268 kB)" ;;
    *) echo "320368 pause:3.10 linux/amd64 (CRI size)" ;;
  esac
}

measured=0
for arch in amd64 arm64 arm ppc64le s390x riscv64; do
  if ! "$PAUSEBAKE" build --arch "$arch" --out "$tmp" >/dev/null 2>"$tmp/$arch.err"; then
    echo "bench image: skipping $arch: $(tail -n 1 "$tmp/$arch.err")" >&2
    continue
  fi
  json=$("$PAUSEBAKE" image --binary="$arch=$tmp/pause-linux-$arch" \
    --output "$tmp/$arch.oci.tar" --json)
  # the first platform's size (the only platform here)
  size=$(printf '%s' "$json" | grep -Eo '"size": *[0-9]+' | head -n 1 | grep -Eo '[0-9]+$') ||
    { echo "bench image: no size in image --json for $arch: $json" >&2; exit 1; }
  read -r up what < <(upstream_for "$arch")
  ratio=$(awk -v a="$up" -v b="$size" 'BEGIN { printf "%.0f", a / b }')
  target=""
  if [ "$arch" = amd64 ]; then
    if [ "$size" -le 4096 ]; then target=", within the 4 KiB target"; else target=", OVER the 4 KiB target"; fi
  fi
  bench_row "image size linux/$arch (all blobs, gzip)" "$size" "$up" B "$size B$target" \
    "$up B $what: ${ratio}x smaller"
  measured=$((measured + 1))
done
[ "$measured" -gt 0 ] || { echo "bench image: no architecture compiled" >&2; exit 1; }
