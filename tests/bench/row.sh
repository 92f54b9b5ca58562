# Sourced by every tests/bench/<topic>.sh: `bench_row` prints one row of the `make bench`
# table and records its figures for target/bench.json, so runs can be compared by machine.
#
#   bench_row NAME OURS ANCHOR UNIT MEASURED COMPARED [RATIO]
#
# NAME names the row (stable from run to run), OURS and ANCHOR are pausebake's figure and the
# figure it is compared to (plain numbers; empty when there is none), UNIT their unit (ms, B,
# KiB, ...). MEASURED and COMPARED are the table's two text columns. RATIO, when given, is
# the ratio the row states (taken in the run, so not always OURS / ANCHOR of best figures);
# otherwise it is OURS / ANCHOR when both are numbers. Every row prints it in the table's last
# column (below 1: pausebake is smaller or faster) and records it.

# stamp VAR: the wall clock in nanoseconds, into VAR. Read from bash's EPOCHREALTIME, not
# `date`: a clock that starts a process adds that process to every timed run, which for a
# run of a few milliseconds is a good part of it (and pulls every ratio towards 1).
stamp() {
  # (a local named like the caller's VAR would take the value instead)
  local stamp_us=${EPOCHREALTIME//[!0-9]/}
  printf -v "$1" '%s' "$((10#$stamp_us * 1000))"
}

# static_release TOPIC: STATIC, the static release binary of this machine's architecture
# (`arch`), built by `make dist` unless STATIC already names one.
static_release() {
  case $(uname -m) in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) echo "bench $1: static binaries exist for amd64 and arm64 only" >&2; exit 1 ;;
  esac
  if [ -z "${STATIC:-}" ]; then
    make --no-print-directory dist >/dev/null
    STATIC=$PWD/dist/pausebake-linux-$arch
  fi
}

# bolt_check DIR: builds tests/bolt-check (Go's bbolt, from Debian's packaged source) into
# DIR, its build cache there too, and prints the program's path.
bolt_check() {
  GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$1/go-cache" \
    go build -o "$1/bolt-check" ./tests/bolt-check && echo "$1/bolt-check"
}

# timed CMD...: runs CMD, its output dropped, and prints the nanoseconds it took.
timed() {
  local timed_t0 timed_t1
  stamp timed_t0
  "$@" >/dev/null
  stamp timed_t1
  echo $((timed_t1 - timed_t0))
}

# ms NS: nanoseconds as milliseconds, one decimal.
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e6 }'; }

# The median of the numbers on stdin, one per line.
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Whether $1 is a plain number.
bench_is_number() {
  printf '%s' "$1" | grep -Eq '^-?[0-9]+(\.[0-9]+)?$'
}

# A JSON string, or the number itself when it is one, or null when empty.
bench_json_value() {
  if [ -z "$1" ]; then
    printf 'null'
  elif bench_is_number "$1"; then
    printf '%s' "$1"
  else
    printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
  fi
}

bench_row() {
  local name=$1 ours=$2 anchor=$3 unit=$4 measured=$5 compared=$6 ratio=${7:-}
  if [ -z "$ratio" ] && bench_is_number "$ours" && bench_is_number "$anchor"; then
    # two significant digits: 0.91, 2.7, and 0.0019 rather than 0.00
    ratio=$(awk -v o="$ours" -v a="$anchor" 'BEGIN { if (a != 0) printf "%.2g", o / a }')
  fi
  echo "| $name | $measured | $compared | ${ratio:+${ratio}×} |"
  # run.sh sets PAUSEBAKE_BENCH_ROWS; a topic script run on its own only prints.
  if [ -n "${PAUSEBAKE_BENCH_ROWS:-}" ]; then
    printf '{"name": %s, "ours": %s, "anchor": %s, "unit": %s%s}\n' \
      "$(bench_json_value "$name")" "$(bench_json_value "$ours")" \
      "$(bench_json_value "$anchor")" "$(bench_json_value "$unit")" \
      "${ratio:+, \"ratio\": $(bench_json_value "$ratio")}" >>"$PAUSEBAKE_BENCH_ROWS"
  fi
}
