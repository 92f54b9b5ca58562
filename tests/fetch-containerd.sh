#!/usr/bin/env bash
# Fetches the containerd builds the tests run besides the system one (1.6 on bookworm):
# 1.7 from Debian trixie and 2.x from Debian sid, as .deb packages unpacked under
# $PAUSEBAKE_CACHE (default: ~/.cache/pausebake)/containerd/containerd-<debian version>/.
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

mkdir -p "$cache"
mirror="$(debian_mirror || true)"
for suite in "${suites[@]}"; do
  fetch_suite "$suite" "$mirror"
done
