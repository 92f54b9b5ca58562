#!/usr/bin/env bash
# `make bench`: one table of every figure pausebake has a target for, each beside what it is
# compared to. Each tests/bench/<topic>.sh prints its own rows through bench_row (row.sh),
# which also records them; a topic whose script fails prints a row saying so rather than
# hiding it. The figures are written to target/bench.json as well: a JSON array with one
# object per row, {"name", "ours", "anchor", "unit", "ratio"} (no "ratio" where a row has
# nothing to compare with; failed topics: "error" too).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
[ -x "$PAUSEBAKE" ] || { echo "bench: build first: cargo build --release" >&2; exit 1; }
. tests/bench/row.sh
PAUSEBAKE_BENCH_ROWS=$(mktemp)
export PAUSEBAKE_BENCH_ROWS
trap 'rm -f "$PAUSEBAKE_BENCH_ROWS"' EXIT
json=${BENCH_JSON:-target/bench.json}

echo "| what | measured | compared to | ours ÷ theirs |"
echo "| --- | --- | --- | --- |"
status=0
for topic in ${BENCH_TOPICS:-pause image bolt bake config release live disk boot}; do
  script="tests/bench/$topic.sh"
  [ -x "$script" ] || continue
  if ! out=$("$script" 2>"/tmp/pausebake-bench-$topic.err"); then
    err=$(tail -n 1 "/tmp/pausebake-bench-$topic.err")
    echo "| $topic | FAILED: $err | | |"
    printf '{"name": %s, "ours": null, "anchor": null, "unit": null, "error": %s}\n' \
      "$(bench_json_value "$topic")" "$(bench_json_value "$err")" >>"$PAUSEBAKE_BENCH_ROWS"
    status=1
  fi
  printf '%s\n' "$out" | grep '^|' || true
done
mkdir -p "$(dirname "$json")"
{
  echo "["
  sed '$!s/$/,/; s/^/  /' "$PAUSEBAKE_BENCH_ROWS"
  echo "]"
} >"$json.tmp" && mv "$json.tmp" "$json"
echo "bench: figures written to $json" >&2
exit $status
