#!/usr/bin/env bash
# `make bench`: one table of every figure pausebake has a target for, each beside what it is
# compared to. Each tests/bench/<topic>.sh prints its own rows; a topic whose script fails
# prints a row saying so rather than hiding it.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
[ -x "$PAUSEBAKE" ] || { echo "bench: build first: cargo build --release" >&2; exit 1; }

echo "| what | measured | compared to |"
echo "| --- | --- | --- |"
status=0
for topic in pause image bolt bake config release; do
  script="tests/bench/$topic.sh"
  [ -x "$script" ] || continue
  if ! out=$("$script" 2>"/tmp/pausebake-bench-$topic.err"); then
    echo "| $topic | FAILED: $(tail -n 1 "/tmp/pausebake-bench-$topic.err") | |"
    status=1
  fi
  printf '%s\n' "$out" | grep '^|' || true
done
exit $status
