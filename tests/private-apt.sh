# Sourced by the fetch scripts: apt's own tools on a private apt directory (its own sources
# list, lists, cache and an empty status file, through APT_CONFIG), so the system's apt and
# dpkg state is never touched, pointed at the Debian mirror the system's apt sources already
# name, so no registry host is written in the repository. Release files are checked against
# the system's debian-archive-keyring (bookworm's carries the trixie keys, which also sign
# sid and bookworm-backports).

private_apt_keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# require_tools SCRIPT WHAT TOOL:PACKAGE...: when a TOOL is missing, ends the calling script
# naming the tool and its package: successfully (the tests that need WHAT then skip loudly),
# or under CI (CI set to anything but empty, false or 0, the rule of src/strict.rs) as a
# failure.
require_tools() {
  local script="$1" what="$2" tool ci
  shift 2
  ci="$(printf %s "${CI:-}" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')"
  for tool in "$@"; do
    if ! command -v "${tool%:*}" >/dev/null; then
      echo "$script: ${tool%:*} not found (package ${tool#*:}); the tests skip $what" >&2
      case "$ci" in "" | false | 0) exit 0 ;; *) exit 1 ;; esac
    fi
  done
}

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

# private_apt DIR MIRROR SUITE ARCH...: writes DIR/apt.conf for SUITE's main component and
# the architectures ARCH... (the first is apt's native one, so no other architecture's
# index is fetched), exports APT_CONFIG pointing at it and runs `apt-get update`.
private_apt() {
  local dir="$1" mirror="$2" suite="$3"
  shift 3
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  : >"$dir/status"
  echo "deb [signed-by=$private_apt_keyring] $mirror $suite main" >"$dir/sources.list"
  {
    echo "Dir::Etc::SourceList \"$dir/sources.list\";"
    echo "Dir::Etc::SourceParts \"/dev/null\";"
    echo "Dir::State::Lists \"$dir/lists\";"
    echo "Dir::State::Status \"$dir/status\";"
    echo "Dir::Cache \"$dir/cache\";"
    echo "APT::Architecture \"$1\";"
    echo "APT::Architectures { $(printf '"%s"; ' "$@")};"
    echo "Acquire::Languages \"none\";"
    # only the package lists: no AppStream metadata or Contents that apt.conf.d may enable
    echo "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";"
    echo "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled \"false\";"
    echo "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled \"false\";"
    echo "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled \"false\";"
    # the private directories belong to the caller; apt's _apt sandbox user cannot write them
    echo "APT::Sandbox::User \"root\";"
  } >"$dir/apt.conf"
  export APT_CONFIG="$dir/apt.conf"
  apt-get -qq update >&2
}

# The candidate version of package $1 (e.g. containerd:s390x) in the private apt, or nothing.
private_apt_version() {
  apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1
}
