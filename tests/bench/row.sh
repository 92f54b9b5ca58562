# Sourced by every tests/bench/<topic>.sh: `bench_row` prints one row of the `make bench`
# table and records its figures for target/bench.json, so runs can be compared by machine.
#
#   bench_row NAME OURS ANCHOR UNIT MEASURED COMPARED [RATIO]
#
# NAME names the row (stable from run to run), OURS and ANCHOR are pausebake's figure and the
# figure it is compared to (plain numbers; empty when there is none), UNIT their unit (ms, B,
# KiB, ...). MEASURED and COMPARED are the table's two text columns. RATIO, when given, is
# the ratio the row states (taken in the run, so not always OURS / ANCHOR of best figures).

# A JSON string, or the number itself when it is one, or null when empty.
bench_json_value() {
  if [ -z "$1" ]; then
    printf 'null'
  elif printf '%s' "$1" | grep -Eq '^-?[0-9]+(\.[0-9]+)?$'; then
    printf '%s' "$1"
  else
    printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
  fi
}

bench_row() {
  local name=$1 ours=$2 anchor=$3 unit=$4 measured=$5 compared=$6 ratio=${7:-}
  echo "| $name | $measured | $compared |"
  # run.sh sets PAUSEBAKE_BENCH_ROWS; a topic script run on its own only prints.
  if [ -n "${PAUSEBAKE_BENCH_ROWS:-}" ]; then
    printf '{"name": %s, "ours": %s, "anchor": %s, "unit": %s%s}\n' \
      "$(bench_json_value "$name")" "$(bench_json_value "$ours")" \
      "$(bench_json_value "$anchor")" "$(bench_json_value "$unit")" \
      "${ratio:+, \"ratio\": $(bench_json_value "$ratio")}" >>"$PAUSEBAKE_BENCH_ROWS"
  fi
}
