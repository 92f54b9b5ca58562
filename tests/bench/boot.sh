#!/usr/bin/env bash
# Bench row for the first boot of a baked node image (issue 27): a bookworm root with a kernel,
# systemd and containerd 1.6.20 (tests/debian-root.sh), baked by $PAUSEBAKE, written as an
# ext4 disk image and booted under qemu (tests/vm/qemu.sh: TCG, no network device) RUNS times,
# each from a fresh copy of the image. A oneshot unit runs the tests' CRI check
# (tests/vm/cri-check.rs, built static) as soon as containerd's unit is up. Measured on the
# host from starting qemu: when CRI answers, when the pod sandbox is READY, when the VM is off.
set -euo pipefail
. "$(dirname "$0")/row.sh"
cd "$(dirname "$0")/../.."
PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
RUNS=${RUNS:-3}
cache=${PAUSEBAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pausebake}
for p in qemu-system-x86_64 mkfs.ext4; do
  command -v "$p" >/dev/null || { echo "bench boot: $p not installed (tests/setup.sh)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the guest's check, static, as tests/it/vm.rs builds it
CARGO_TARGET_DIR=$cache/vm-target CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
  cargo build --locked --quiet --example cri-check --target x86_64-unknown-linux-musl
check=$cache/vm-target/x86_64-unknown-linux-musl/debug/examples/cri-check

tarball=$(tests/debian-root.sh bookworm systemd-sysv,linux-image-amd64,udev,kmod)
mkdir "$work/root"
tar --numeric-owner -xf "$tarball" -C "$work/root"
name=$("$PAUSEBAKE" bake --root "$work/root" | awk '$1 == "name" { print $2; exit }')
[ -n "$name" ] || { echo "bench boot: bake printed no name" >&2; exit 1; }
cat >"$work/check.sh" <<SCRIPT
#!/bin/sh
/usr/local/bin/cri-check /run/containerd/containerd.sock wait
/usr/local/bin/cri-check /run/containerd/containerd.sock ready bench $name
SCRIPT
tests/vm/guest.sh "$work/root" "$check" "$work/check.sh" "$work/kernel"
mkfs.ext4 -q -F -d "$work/root" "$work/base.raw" 2G >/dev/null
rm -rf "$work/root"

s() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e9 }'; }

cri_times=() ready_times=() off_times=()
for i in $(seq "$RUNS"); do
  cp --sparse=always "$work/base.raw" "$work/run.raw"
  console=$work/console-$i.log
  : >"$console"
  stamp t0
  tests/vm/qemu.sh "$work/run.raw" raw /dev/vda "$work/kernel" "$console" 2>"$work/qemu.err" &
  qemu=$!
  cri="" ready=""
  while kill -0 "$qemu" 2>/dev/null; do
    stamp t
    [ -n "$cri" ] || ! grep -q "pausebake-vm: ok wait" "$console" || cri=$((t - t0))
    [ -n "$ready" ] || ! grep -q "pausebake-vm: ok ready" "$console" || ready=$((t - t0))
    if [ $((t - t0)) -gt 600000000000 ]; then
      kill "$qemu"
      echo "bench boot: the VM did not power off in 600 s" >&2
      exit 1
    fi
    sleep 0.05
  done
  wait "$qemu" || { echo "bench boot: qemu failed: $(tail -n 1 "$work/qemu.err")" >&2; exit 1; }
  stamp t
  off=$((t - t0))
  if [ -z "$ready" ] && grep -q "pausebake-vm: ok ready" "$console"; then ready=$off; fi
  [ -n "$ready" ] ||
    { echo "bench boot: no READY sandbox: $(grep pausebake-vm: "$console" | tail -n 1)" >&2; exit 1; }
  cri_times+=("${cri:-$off}") ready_times+=("$ready") off_times+=("$off")
done
c=$(printf '%s\n' "${cri_times[@]}" | median)
r=$(printf '%s\n' "${ready_times[@]}" | median)
o=$(printf '%s\n' "${off_times[@]}" | median)
bench_row "first boot to READY sandbox, TCG, containerd 1.6.20 (median of $RUNS)" \
  "$(awk -v ns="$r" 'BEGIN { printf "%.0f", ns / 1e6 }')" "$(awk -v ns="$c" 'BEGIN { printf "%.0f", ns / 1e6 }')" ms \
  "$(s "$r") s from power-on" "CRI answering at $(s "$c") s; powered off at $(s "$o") s"
