#!/usr/bin/env bash
# Makes a Debian root (from tests/debian-root.sh with systemd-sysv, linux-image-amd64, udev
# and kmod) a test VM's guest: the static CRI check (tests/vm/cri-check.rs) in
# /usr/local/bin, the check script SCRIPT, and a oneshot unit that runs it once containerd's
# own unit is up, with its output on the serial console (ttyS0), then powers the VM off.
# Also the files a booted node has and a minbase root lacks (/etc/hosts: CRI copies it into
# every sandbox). Copies the kernel and initrd out to OUT/vmlinuz and OUT/initrd.img, for
# qemu's -kernel and -initrd. Used by tests/it/vm.rs and tests/bench/boot.sh.
#
#   tests/vm/guest.sh ROOT CRI_CHECK SCRIPT OUT
set -euo pipefail
root=$1 check=$2 script=$3 out=$4

install -D -m 0755 "$check" "$root/usr/local/bin/cri-check"
install -D -m 0755 "$script" "$root/usr/local/lib/pausebake-vm/check.sh"
[ -e "$root/etc/hosts" ] || echo "127.0.0.1 localhost" >"$root/etc/hosts"
[ -e "$root/etc/hostname" ] || echo node >"$root/etc/hostname"

cat >"$root/etc/systemd/system/pausebake-vm.service" <<'UNIT'
[Unit]
Description=pausebake test VM: the first-boot check on the serial console
Wants=containerd.service
After=containerd.service

[Service]
Type=oneshot
ExecStart=/usr/local/lib/pausebake-vm/check.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
# whatever the check said, the VM powers off at once (its disk synced): the test waits for
# qemu to exit, and an orderly shutdown would only add time
ExecStopPost=/bin/sh -c 'sync; echo o >/proc/sysrq-trigger'

[Install]
WantedBy=multi-user.target
UNIT
# No login prompt on the serial console: the getty's vhangup() of ttyS0 cut off the check's
# output mid-run on a loaded machine (verdicts lost, the VM powered off with only "login:")
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/pausebake-vm.service \
  "$root/etc/systemd/system/multi-user.target.wants/pausebake-vm.service"
# containerd starts from the package's own unit, enabled by its maintainer script
[ -e "$root/etc/systemd/system/multi-user.target.wants/containerd.service" ] ||
  { echo "guest: containerd.service is not enabled in $root" >&2; exit 1; }

mkdir -p "$out"
kernels=("$root"/boot/vmlinuz-*) initrds=("$root"/boot/initrd.img-*)
[ -f "${kernels[0]}" ] && [ -f "${initrds[0]}" ] ||
  { echo "guest: no kernel and initrd in $root/boot (the root needs linux-image-amd64)" >&2; exit 1; }
cp "${kernels[0]}" "$out/vmlinuz"
cp "${initrds[0]}" "$out/initrd.img"
