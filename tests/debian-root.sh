#!/usr/bin/env bash
# Prints the path of a minimal Debian root filesystem (bookworm, or the SUITE given) with
# containerd and runc from the distribution, made with debootstrap once and cached as a
# tarball. The mirror is the one this machine's apt already uses, so no host name lives in
# the repository.
#
#   tests/debian-root.sh [SUITE [PACKAGES]]
#       -> prints the cached tarball's path, building it if needed; PACKAGES (comma-separated)
#          are included besides containerd and runc, and named in the tarball's name
set -euo pipefail
suite=${1:-bookworm}
extra=${2:-}
cache=${PAUSEBAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pausebake}
tarball="$cache/debian-$suite-containerd${extra:++${extra//,/+}}.tar"
if [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "debian-root: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debian-root: debootstrap not installed" >&2; exit 1; }

# The first Debian archive URI apt is configured with (deb822 .sources or one-line lists).
mirror=$(
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" {print $2}'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) {print $i; break}}'
  } | awk '/\/debian\/?$/ {print; exit}' || true
)
[ -n "$mirror" ] || { echo "debian-root: no Debian mirror found in apt's sources" >&2; exit 1; }

mkdir -p "$cache"
work=$(mktemp -d "$cache/debootstrap.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "debian-root: debootstrap $suite from $mirror (cached afterwards)" >&2
debootstrap --variant=minbase --include="containerd,runc${extra:+,$extra}" "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 ||
  { tail -n 30 "$work/log" >&2; exit 1; }
# Drop the package cache: it is half the size and the tests never need it.
rm -rf "$work/root/var/cache/apt/archives"/*.deb
tar -C "$work/root" --numeric-owner -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
