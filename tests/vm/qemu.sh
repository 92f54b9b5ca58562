#!/usr/bin/env bash
# Boots a test VM (tests/vm/guest.sh made its root): one virtio disk, no network device, no
# display, the serial console to a file, and qemu exits when the guest powers off or
# reboots. TCG, as KVM hung at "Probing EDD" on the machine these tests were written on;
# QEMU_ACCEL=kvm uses KVM where it works. Used by tests/it/vm.rs and tests/bench/boot.sh.
# no_timer_check: on a loaded host the emulated guest is slow enough that the kernel's
# IO-APIC timer check fails ("Kernel panic - not syncing: IO-APIC + timer doesn't work!",
# seen here); panic=1: a panic reboots, which ends qemu (-no-reboot) instead of hanging.
#
#   tests/vm/qemu.sh DISK FORMAT ROOT_DEVICE KERNEL_DIR CONSOLE_LOG
#       KERNEL_DIR holds vmlinuz and initrd.img; ROOT_DEVICE is e.g. /dev/vda or /dev/vda2
set -euo pipefail
disk=$1 format=$2 rootdev=$3 kernel=$4 console=$5
exec qemu-system-x86_64 -accel "${QEMU_ACCEL:-tcg}" -m 1024 -smp 1 \
  -kernel "$kernel/vmlinuz" -initrd "$kernel/initrd.img" \
  -append "root=$rootdev rw console=ttyS0 quiet systemd.show_status=false no_timer_check panic=1" \
  -drive "file=$disk,format=$format,if=virtio" \
  -nic none -display none -serial "file:$console" -no-reboot
