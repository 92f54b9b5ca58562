#!/usr/bin/env bash
# Bench row for `bake --disk`: the cost of letting pausebake find, loop-mount and unmount the
# root partition itself. A 2 GiB raw GPT image (EFI + ext4 root, as tests/it/disk.rs makes
# it) is baked with `bake --disk IMAGE`, beside `bake --root` on the same root partition
# mounted beforehand (the mount and unmount outside the timing). Each run starts from a fresh
# copy of the image; RUNS runs, alternating, median reported, ratio taken in this run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/row.sh
PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
RUNS=${RUNS:-7}
VERSION=2.1.9 # the root has no containerd: the version is given, none is run

for p in sfdisk mkfs.ext4 mkfs.vfat losetup; do
  command -v "$p" >/dev/null || { echo "bench disk: needs $p" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench disk: needs root (loop mounts)" >&2; exit 1; }

work=$(mktemp -d)
mnt=""
cleanup() {
  [ -n "$mnt" ] && umount "$mnt" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

case "$(uname -m)" in
  x86_64) root_type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 ;;
  aarch64) root_type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE ;;
  *) root_type=L ;;
esac
mkdir -p "$work/root/etc"
echo "ID=debian" >"$work/root/etc/os-release"
image=$work/pristine.raw
truncate -s 2G "$image"
printf 'label: gpt\nsize=32MiB, type=U\ntype=%s\n' "$root_type" | sfdisk -q "$image"
read -r efi_start efi_size < <(sfdisk -d "$image" | awk -F'[=,]' '/start=/ { print $2, $4; exit }')
read -r start size < <(sfdisk -d "$image" | awk -F'[=,]' '/start=/ { s = $2; n = $4 } END { print s, n }')
mkfs.vfat -F 16 --offset "$efi_start" "$image" $((efi_size / 2)) >/dev/null 2>&1
mkfs.ext4 -q -d "$work/root" -E offset=$((start * 512)) "$image" $((size / 2))k
"$PAUSEBAKE" image --output "$work/pause.tar" >/dev/null

disk_once() {
  cp --sparse=always "$image" "$work/disk.raw"
  sync
  timed "$PAUSEBAKE" bake --disk "$work/disk.raw" --archive "$work/pause.tar" \
    --containerd-version "$VERSION" 2>/dev/null
}

root_once() {
  cp --sparse=always "$image" "$work/root.raw"
  mnt=$work/mnt
  mkdir -p "$mnt"
  mount -o loop,offset=$((start * 512)),sizelimit=$((size * 512)) "$work/root.raw" "$mnt"
  sync
  local ns
  ns=$(timed "$PAUSEBAKE" bake --root "$mnt" --archive "$work/pause.tar" \
    --containerd-version "$VERSION")
  umount "$mnt"
  mnt=""
  echo "$ns"
}

disk_ns=() root_ns=()
for _ in $(seq "$RUNS"); do
  disk_ns+=("$(disk_once)")
  root_ns+=("$(root_once)")
done
d=$(printf '%s\n' "${disk_ns[@]}" | median)
r=$(printf '%s\n' "${root_ns[@]}" | median)
ratio=$(awk -v d="$d" -v r="$r" 'BEGIN { printf "%.2f", d / r }')
# The difference is mostly the unmount's write-out of what bake wrote: the load is part of it.
load=$(cut -d' ' -f1 /proc/loadavg)
bench_row "bake --disk on a 2 GiB raw GPT image (median of $RUNS)" "$(ms "$d")" "$(ms "$r")" ms \
  "$(ms "$d") ms" "bake --root on the same partition already mounted: $(ms "$r") ms (${ratio}× for finding, mounting and unmounting it; load average $load)"
