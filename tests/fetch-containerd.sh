#!/usr/bin/env bash
# Fetches the containerd builds the tests run besides the system one (1.6 on bookworm):
# 1.7 from Debian trixie and 2.x from Debian sid, as .deb packages unpacked under
# $PAUSEBAKE_CACHE (default: ~/.cache/pausebake)/containerd/containerd-<debian version>/;
# and containerd 2.3.4, which no Debian suite has, from the project's shared test data
# ($PAUSEBAKE_SHARED, default ../shared beside the checkout: containerd/2.3.4/, a static
# build of tag v2.3.4 whose README says how it was made), checked against its sha256 and
# unpacked into containerd-2.3.4/usr/bin/ in the same layout.
#
# It uses a private apt directory (tests/private-apt.sh), so the system's apt state is never
# touched, and the Debian mirror the system's apt sources already name.
#
# Idempotent: a suite whose package is already unpacked is not fetched again, so later runs
# need no network. Prints one line per build: "<suite> <debian version> <dir>".
set -euo pipefail
. "$(dirname "$0")/private-apt.sh"
cache="${PAUSEBAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pausebake}/containerd"
suites=(trixie sid)

require_tools fetch-containerd "containerd 1.7 and 2.x" apt-get:apt dpkg-deb:dpkg

# Unpacks the containerd of one suite; prints "<suite> <version> <dir>".
fetch_suite() {
  local suite="$1" mirror="$2"
  local stamp="$cache/$suite.version"
  if [ -s "$stamp" ]; then
    local have
    have="$(cat "$stamp")"
    if [ -x "$cache/containerd-$have/usr/bin/containerd" ]; then
      echo "$suite $have $cache/containerd-$have"
      return
    fi
  fi
  if [ -z "$mirror" ]; then
    echo "fetch-containerd: no Debian mirror found in /etc/apt/sources.list(.d); cannot fetch $suite" >&2
    return 1
  fi
  local apt="$cache/apt-$suite"
  private_apt "$apt" "$mirror" "$suite" "$(dpkg --print-architecture)"
  local version
  version="$(private_apt_version containerd)"
  if [ -z "$version" ]; then
    echo "fetch-containerd: no containerd package in $suite" >&2
    return 1
  fi
  mkdir -p "$apt/download"
  rm -f "$apt/download/"*.deb
  (cd "$apt/download" && apt-get -qq download "containerd=$version" >&2)
  local dir="$cache/containerd-$version"
  rm -rf "$dir.tmp"
  dpkg-deb -x "$apt/download/"containerd_*.deb "$dir.tmp"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  # The binaries are linked against the suite's glibc; they must run on this host.
  if ! "$dir/usr/bin/containerd" --version >&2; then
    echo "fetch-containerd: containerd $version from $suite does not run on this host" >&2
    return 1
  fi
  echo "$version" >"$stamp"
  rm -rf "$apt/download"
  echo "$suite $version $dir"
}

# containerd 2.3.4 from the shared test data; prints "shared 2.3.4 <dir>".
shared="${PAUSEBAKE_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}"
c23_tarball="$shared/containerd/2.3.4/containerd-2.3.4-linux-amd64.tar.xz"
c23_sha256=341f31ccdd22828a05c2a6e4dee7a83638823b3ca1f33ef9b401038c4c2c2026
fetch_shared_2_3() {
  local dir="$cache/containerd-2.3.4"
  if [ -x "$dir/usr/bin/containerd" ] && [ -x "$dir/usr/bin/containerd-shim-runc-v2" ] &&
    [ -s "$cache/shared.version" ]; then
    echo "shared 2.3.4 $dir"
    return
  fi
  if [ "$(dpkg --print-architecture)" != amd64 ]; then
    echo "fetch-containerd: containerd 2.3.4 is built for amd64 only; not on $(dpkg --print-architecture)" >&2
    return 1
  fi
  if [ ! -f "$c23_tarball" ]; then
    echo "fetch-containerd: $c23_tarball not found (set PAUSEBAKE_SHARED to the shared test data)" >&2
    return 1
  fi
  if ! echo "$c23_sha256  $c23_tarball" | sha256sum -c --quiet -; then
    echo "fetch-containerd: $c23_tarball does not have sha256 $c23_sha256" >&2
    return 1
  fi
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp/usr/bin"
  tar -xJf "$c23_tarball" -C "$dir.tmp/usr/bin" containerd containerd-shim-runc-v2 ctr
  if ! "$dir.tmp/usr/bin/containerd" --version >&2; then
    echo "fetch-containerd: containerd 2.3.4 from $c23_tarball does not run on this host" >&2
    return 1
  fi
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  # the stamp names the directory, as a suite's does (tests/it/compat.rs reads it)
  echo 2.3.4 >"$cache/shared.version"
  echo "shared 2.3.4 $dir"
}

mkdir -p "$cache"
mirror="$(debian_mirror || true)"
for suite in "${suites[@]}"; do
  fetch_suite "$suite" "$mirror"
done
fetch_shared_2_3
