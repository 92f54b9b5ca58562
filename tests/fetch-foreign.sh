#!/usr/bin/env bash
# Fetches what tests/it/arch.rs needs to run other architectures' containerd on this host,
# unpacked under $PAUSEBAKE_CACHE (default: ~/.cache/pausebake)/foreign/:
#
# - qemu-<debian version>/usr/bin/qemu-{aarch64,arm,ppc64le,s390x,riscv64}: qemu-user 10
#   from bookworm-backports (bookworm's 7.2 rejects the shim's PR_SET_CHILD_SUBREAPER), beside
#   the system's qemu, which stays as it is;
# - <debian arch>-<suite>-containerd-<debian version>/: a sysroot with that architecture's containerd,
#   libc6 and libseccomp2 (dpkg -x, nothing installed): bookworm's 1.6 for arm64, armhf,
#   ppc64el and s390x; trixie's 1.7 for arm64 and riscv64 (riscv64 starts at trixie); sid's
#   2.x for all five.
#
# Private apt directories (tests/private-apt.sh) keep the system's apt and dpkg state
# untouched. Idempotent: what is unpacked is not fetched again, so later runs need no
# network. Each directory appears complete or not at all (unpacked beside, then renamed).
# Prints one line per directory: "<what> <debian version> <dir>".
set -euo pipefail
tests="$(cd "$(dirname "$0")" && pwd)"
. "$tests/private-apt.sh"
cache="${PAUSEBAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pausebake}/foreign"

# Debian architecture -> qemu-user's name for it.
declare -A qemu_name=([arm64]=aarch64 [armhf]=arm [ppc64el]=ppc64le [s390x]=s390x [riscv64]=riscv64)
# suite -> the architectures whose containerd the tests take from it
declare -A suite_arches=(
  [bookworm]="arm64 armhf ppc64el s390x"
  [trixie]="arm64 riscv64"
  [sid]="arm64 armhf ppc64el s390x riscv64"
)

require_tools fetch-foreign "foreign architectures" apt-get:apt dpkg-deb:dpkg tar:tar

# The unpacked directory a stamp file names, if it is complete; else nothing.
cached() {
  local stamp="$1" probe="$2"
  [ -s "$stamp" ] || return 0
  local dir="$cache/$(cat "$stamp")"
  [ -e "$dir/$probe" ] && echo "$dir"
  return 0
}

# Turns every absolute symlink under $1 into a relative one inside $1: qemu's
# QEMU_LD_PREFIX lookup follows links on the host, so ppc64el's /lib64/ld64.so.2 ->
# /lib/powerpc64le-linux-gnu/ld64.so.2 would otherwise point out of the sysroot.
relativize_links() {
  local root="$1" link target
  while IFS= read -r -d '' link; do
    target="$(readlink "$link")"
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root$target")" "$link"
  done < <(find "$root" -type l -lname '/*' -print0)
}

# From trixie on, libc6 ships the dynamic loader under /usr/lib and base-files provides the
# /lib -> usr/lib link the binaries' interpreter path goes through: add the links it would.
merge_usr() {
  local root="$1" d
  for d in bin sbin lib lib64; do
    if [ -d "$root/usr/$d" ] && [ ! -e "$root/$d" ] && [ ! -L "$root/$d" ]; then
      ln -s "usr/$d" "$root/$d"
    fi
  done
}

fetch_qemu() {
  local mirror="$1" stamp="$cache/qemu.dir"
  local dir
  dir="$(cached "$stamp" usr/bin/qemu-riscv64)"
  if [ -n "$dir" ]; then
    local name="${dir##*/}"
    echo "qemu ${name#qemu-} $dir"
    return
  fi
  private_apt "$cache/apt-bookworm-backports" "$mirror" bookworm-backports amd64
  local version
  version="$(private_apt_version qemu-user)"
  case "$version" in
    1:1[0-9].* | 1:[2-9][0-9].*) ;;
    *) echo "fetch-foreign: bookworm-backports has qemu-user '$version', not 10 or newer" >&2; return 1 ;;
  esac
  local download="$cache/apt-bookworm-backports/download"
  rm -rf "$download" && mkdir -p "$download"
  (cd "$download" && apt-get -qq download "qemu-user=$version" >&2)
  dir="$cache/qemu-${version#*:}"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  # Only the five emulators (static binaries), not the other 300 MB.
  local a members=()
  for a in "${qemu_name[@]}"; do members+=("./usr/bin/qemu-$a"); done
  dpkg-deb --fsys-tarfile "$download"/qemu-user_*.deb | tar -x -C "$dir.tmp" "${members[@]}"
  "$dir.tmp/usr/bin/qemu-aarch64" --version | head -n 1 >&2
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  rm -rf "$download"
  basename "$dir" >"$stamp.tmp" && mv "$stamp.tmp" "$stamp"
  echo "qemu $version $dir"
}

# Unpacks containerd, libc6 and libseccomp2 of one architecture from the suite whose private
# apt is configured (APT_CONFIG) into a sysroot; prints "<suite>/<arch> <version> <dir>".
fetch_sysroot() {
  local suite="$1" arch="$2" version="$3" apt="$4"
  local download="$apt/download-$arch"
  rm -rf "$download" && mkdir -p "$download"
  (cd "$download" && apt-get -qq download "containerd:$arch=$version" "libc6:$arch" "libseccomp2:$arch" >&2)
  # the suite is in the name: two suites may one day carry the same version
  local dir="$cache/$arch-$suite-containerd-$version"
  rm -rf "$dir.tmp"
  local deb
  for deb in "$download"/*.deb; do dpkg-deb -x "$deb" "$dir.tmp"; done
  merge_usr "$dir.tmp"
  relativize_links "$dir.tmp"
  # The binaries must start under this qemu with this sysroot.
  QEMU_LD_PREFIX="$dir.tmp" "$qemu_dir/usr/bin/qemu-${qemu_name[$arch]}" \
    "$dir.tmp/usr/bin/containerd" --version >&2
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  rm -rf "$download"
  basename "$dir" >"$cache/$suite-$arch.dir.tmp" && mv "$cache/$suite-$arch.dir.tmp" "$cache/$suite-$arch.dir"
  echo "$suite/$arch $version $dir"
}

# The sysroots of one suite, one per architecture in suite_arches, downloaded side by side.
fetch_suite() {
  local suite="$1" mirror="$2" arch missing=()
  for arch in ${suite_arches[$suite]}; do
    local dir
    dir="$(cached "$cache/$suite-$arch.dir" usr/bin/containerd)"
    if [ -n "$dir" ]; then
      local name="${dir##*/}"
      echo "$suite/$arch ${name##*-containerd-} $dir"
    else
      missing+=("$arch")
    fi
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  local apt="$cache/apt-$suite"
  private_apt "$apt" "$mirror" "$suite" "${missing[@]}"
  # Versions first: the package cache is built once, before the downloads share it.
  local versions=()
  for arch in "${missing[@]}"; do
    versions+=("$(private_apt_version "containerd:$arch")")
    if [ -z "${versions[-1]}" ]; then
      echo "fetch-foreign: no containerd for $arch in $suite" >&2
      return 1
    fi
  done
  local i pids=() status=0
  for i in "${!missing[@]}"; do
    fetch_sysroot "$suite" "${missing[$i]}" "${versions[$i]}" "$apt" &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do
    wait "$i" || status=1
  done
  return "$status"
}

mkdir -p "$cache"
mirror="$(debian_mirror || true)"
if [ -z "$mirror" ]; then
  # Only a problem when something is missing; cached() decides below.
  echo "fetch-foreign: no Debian mirror found in /etc/apt/sources.list(.d)" >&2
fi
qemu_line="$(fetch_qemu "$mirror")"
echo "$qemu_line"
qemu_dir="${qemu_line##* }"
# The suites download side by side (each has its own apt directory); any failure fails.
pids=()
for suite in bookworm trixie sid; do
  fetch_suite "$suite" "$mirror" &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit "$status"
