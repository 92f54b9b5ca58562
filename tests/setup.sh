#!/usr/bin/env bash
# Installs what the test suite needs. As root on Debian: apt packages (compilers, qemu-user,
# containerd, runc, docker.io, skopeo, umoci, packer, protoc, Go and its bbolt). Elsewhere it only
# reports what is missing; the tests then skip loudly. Under CI (CI set to anything but
# empty, false or 0, the rule of src/strict.rs) what cannot be installed fails the setup,
# naming the packages.
set -euo pipefail
cd "$(dirname "$0")/.."

ci="$(printf %s "${CI:-}" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')"
case "$ci" in "" | false | 0) strict=false ;; *) strict=true ;; esac

# Reports what cannot be set up; exits under CI.
cannot() {
  if [ "$strict" = true ]; then
    echo "setup: under CI every test must run: $*" >&2
    exit 1
  fi
  echo "setup: $* (the tests that need it skip)" >&2
}

packages=(
  # compilers for the freestanding pause: clang + lld link every architecture but s390x,
  # which needs GNU ld from the cross binutils; gcc is the host fallback, and with
  # libc6-dev builds the static glibc pause the bench compares against
  clang lld llvm gcc binutils-s390x-linux-gnu libc6-dev
  # the pinned toolchain of the built-in pause programs (templates/pause-linux-*), which a
  # test rebuilds: clang and lld 19 link all six architectures, s390x included
  clang-19 lld-19
  # the <triple>-gcc fallback, tested for s390x, arm and arm64
  gcc-s390x-linux-gnu gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu
  # run foreign-architecture binaries in the behaviour suite
  qemu-user-static
  # the real programs the tests check pausebake against
  containerd runc skopeo umoci packer debootstrap
  # k8s-cri's build script needs protoc
  protobuf-compiler
  # the Go bbolt oracle under tests/bolt-check
  golang-go golang-github-coreos-bbolt-dev
  # unshare, chroot, ip, ps, file
  util-linux coreutils iproute2 procps file
  # SIGKILL at every write of bake (fault injection), tests/it/harden.rs
  strace
  # apt-get download / dpkg-deb for the containerd 1.7 and 2.1 packages
  dpkg apt
  # boot the baked node image (tests/it/vm.rs): a whole-system qemu
  qemu-system-x86
  # docker as a consumer of the docker-archive (tests/it/arch.rs starts its own dockerd)
  docker.io
  # peak RSS of the bolt bench rows (/usr/bin/time)
  time
  # the disk images of the --disk and VM tests (tests/it/disk.rs, vm.rs): partition tables,
  # ext4, vfat (the EFI system partition), xfs, and qcow2 through qemu-img
  fdisk e2fsprogs dosfstools xfsprogs qemu-utils
)

# Packages not installed (all of them where dpkg is unknown).
not_installed() {
  local p
  for p in "${packages[@]}"; do
    command -v dpkg-query >/dev/null &&
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      echo "$p"
  done
}

mapfile -t missing < <(not_installed)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    # A package's maintainer script must not start a system containerd or dockerd: RUNLEVEL=1
    # for invoke-rc.d without systemd, and a policy-rc.d (which deb-systemd-invoke also asks)
    # that refuses every start, unless the machine already has one.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      trap 'rm -f "$policy"' EXIT
      printf '#!/bin/sh\n# tests/setup.sh: no service starts while it installs\nexit 101\n' >"$policy"
      chmod 755 "$policy"
    fi
    apt_install() {
      DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
        --no-install-recommends "$@"
    }
    apt_install "${missing[@]}"
    # Resolving one package can remove another that was already there from a different suite
    # (a backported qemu-utils goes when bookworm's qemu-system-x86 comes in): one more
    # round installs what that took away, from the suites the rest came from.
    mapfile -t missing < <(not_installed)
    [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
    mapfile -t missing < <(not_installed)
    if [ "${#missing[@]}" -gt 0 ]; then
      echo "setup: apt-get did not install ${missing[*]}" >&2
      exit 1
    fi
  else
    cannot "not root or not Debian; cannot install ${missing[*]}"
  fi
fi
# containerd, the tmpfs of the full-disk test and the distribution root need root.
[ "$(id -u)" = 0 ] || cannot "not root: the containerd, full-disk and distribution tests need root"

# `make dist` builds static musl binaries for amd64 and arm64, linked by rust-lld
if command -v rustup >/dev/null; then
  rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl >/dev/null
else
  cannot "rustup not found: make dist and its test need the x86_64 and aarch64 musl targets"
fi

# containerd 1.7 (trixie) and 2.x (sid) beside the system 1.6, unpacked under ~/.cache/pausebake/containerd
tests/fetch-containerd.sh

# qemu-user 10 and arm64, armhf, ppc64el, s390x and riscv64 containerd sysroots for
# tests/it/arch.rs, unpacked under ~/.cache/pausebake/foreign (about 1 GB; the first run
# downloads roughly 500 MB)
tests/fetch-foreign.sh

# A debootstrapped Debian root for the distribution end-to-end test (cached after the first run)
# and a bullseye one (glibc 2.31) with sudo and systemd, where tests/it/release.rs runs the
# static release binary and the amazon-ebs example's shell step
if [ "$(id -u)" = 0 ]; then
  tests/debian-root.sh >/dev/null
  tests/debian-root.sh bullseye sudo,systemd >/dev/null
  # a bootable bookworm root (kernel, systemd, udev) for the VM first-boot tests (tests/it/vm.rs)
  tests/debian-root.sh bookworm systemd-sysv,linux-image-amd64,udev,kmod >/dev/null
fi
