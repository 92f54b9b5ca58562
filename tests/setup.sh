#!/usr/bin/env bash
# Installs what the test suite needs. As root on Debian: apt packages (compilers, qemu-user,
# containerd, runc, skopeo, umoci, packer, protoc, Go and its bbolt). Elsewhere it only
# reports what is missing; the tests then skip loudly (and fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # compilers for the freestanding pause: clang + lld link every architecture but s390x,
  # which needs GNU ld from the cross binutils; gcc is the host fallback, and with
  # libc6-dev builds the static glibc pause the bench compares against
  clang lld llvm gcc binutils-s390x-linux-gnu libc6-dev
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
  # peak RSS of the bolt bench rows (/usr/bin/time)
  time
)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    # A package's maintainer script must not start a system containerd.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
else
  echo "setup: not root or not Debian; not installing packages (tests skip what is missing)" >&2
fi

# containerd 1.7 (trixie) and 2.x (sid) beside the system 1.6, unpacked under ~/.cache/pausebake/containerd
tests/fetch-containerd.sh

# A debootstrapped Debian root for the distribution end-to-end test (cached after the first run)
if [ "$(id -u)" = 0 ]; then tests/debian-root.sh >/dev/null; fi
