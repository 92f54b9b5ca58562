#!/usr/bin/env bash
# Fetches the containerd builds the tests run besides the system one (1.6 on bookworm):
# 1.7 from Debian trixie and 2.x from Debian sid, as .deb packages unpacked under
# $PAUSEBAKE_CACHE (default: ~/.cache/pausebake)/containerd/containerd-<debian version>/.
#
# It uses apt's own tools on a private apt directory (its own sources list, lists, cache and
# status), so the system's apt state is never touched, and it reuses the Debian mirror the
# system's apt sources already name, so no registry host is written here. Release files are
# checked against the system's debian-archive-keyring (bookworm's carries the trixie keys,
# which also sign sid).
#
# Idempotent: a suite whose package is already unpacked is not fetched again, so later runs
# need no network. Prints one line per build: "<suite> <debian version> <dir>".
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${PAUSEBAKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pausebake}/containerd"
suites=(trixie sid)
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# Without apt's tools the tests skip containerd 1.7 and 2.x: loudly, and under CI (CI set to
# anything but empty, false or 0, as in src/strict.rs) as a failure naming the package.
ci="$(printf %s "${CI:-}" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')"
for tool in apt-get:apt dpkg-deb:dpkg; do
  if ! command -v "${tool%:*}" >/dev/null; then
    echo "fetch-containerd: ${tool%:*} not found (package ${tool#*:}); the tests skip containerd 1.7 and 2.x" >&2
    case "$ci" in "" | false | 0) exit 0 ;; *) exit 1 ;; esac
  fi
done

# The URI of the system's Debian archive entry: the first source (deb822 .sources or one-line
# .list) whose suites include this system's codename. Security and backports entries name
# other suites, so they are not picked.
debian_mirror() {
  local codename
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  # Only the names apt itself reads: *.list and *.sources, sorted as apt reads them.
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  local f
  for f in "${files[@]}"; do
    case "$f" in
      *.sources)
        # deb822: stanzas separated by blank lines; take URIs and Suites of each stanza.
        awk -v want="$codename" '
          function flush() {
            if (types ~ /(^| )deb( |$)/ && enabled != "no") {
              n = split(suites, s, " ")
              for (i = 1; i <= n; i++) if (s[i] == want) { split(uris, u, " "); print u[1]; exit }
            }
            uris = ""; suites = ""; types = ""; enabled = ""
          }
          /^[ \t]*#/ { next }
          /^[ \t]*$/ { flush(); next }
          tolower($1) == "uris:"    { $1 = ""; uris = $0 }
          tolower($1) == "suites:"  { $1 = ""; suites = $0 }
          tolower($1) == "types:"   { $1 = ""; types = $0 }
          tolower($1) == "enabled:" { enabled = tolower($2) }
          END { flush() }
        ' "$f"
        ;;
      *)
        # one-line: deb [options] uri suite components...
        awk -v want="$codename" '
          $1 != "deb" { next }
          { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } }
          $(i + 1) == want { print $i; exit }
        ' "$f"
        ;;
    esac
  done | head -n 1
}

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
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/download"
  touch "$apt/status"
  echo "deb [signed-by=$keyring] $mirror $suite main" >"$apt/sources.list"
  local opts=(
    -o "Dir::Etc::SourceList=$apt/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::State::Status=$apt/status"
    -o "Dir::Cache=$apt/cache"
    -o "APT::Architecture=$(dpkg --print-architecture)"
    -o "Acquire::Languages=none"
    # the private directories belong to the caller; apt's _apt sandbox user cannot write them
    -o "APT::Sandbox::User=root"
  )
  apt-get "${opts[@]}" -qq update >&2
  local version
  version="$(apt-cache "${opts[@]}" show --no-all-versions containerd | sed -n 's/^Version: //p' | head -n 1)"
  if [ -z "$version" ]; then
    echo "fetch-containerd: no containerd package in $suite" >&2
    return 1
  fi
  rm -f "$apt/download/"*.deb
  (cd "$apt/download" && apt-get "${opts[@]}" -qq download "containerd=$version" >&2)
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
