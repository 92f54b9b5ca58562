#!/usr/bin/env bash
# Bench rows for pause: binary size per architecture, and the resident memory of a running
# amd64 pause, each beside a static glibc pause built in the same run from a small
# libc-based equivalent (gcc -static -Os, stripped), as upstream builds it.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/row.sh
PAUSEBAKE=${PAUSEBAKE:-$PWD/target/release/pausebake}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$PAUSEBAKE" build --arch amd64,arm64,arm,ppc64le,s390x,riscv64 --out "$work" >/dev/null

# The libc comparison: the same behaviour through glibc's sigaction, psignal and pause.
cat >"$work/libc-pause.c" <<'C'
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void shutdown(int sig) { psignal(sig, "Shutting down, got signal"); exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction s = {.sa_handler = shutdown}, c = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &s, NULL) < 0) return 1;
  if (sigaction(SIGTERM, &s, NULL) < 0) return 2;
  if (sigaction(SIGCHLD, &c, NULL) < 0) return 3;
  for (;;) pause();
}
C
glibc=""
if gcc -static -Os -s -o "$work/libc-pause" "$work/libc-pause.c" 2>"$work/gcc.err"; then
  glibc="$work/libc-pause"
fi

size() { stat -c %s "$1"; }
comma() { echo "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }

for arch in amd64 arm64 arm ppc64le s390x riscv64; do
  bytes=$(size "$work/pause-linux-$arch")
  case $arch in
    amd64)
      if [ -n "$glibc" ]; then
        g=$(size "$glibc")
        theirs="static glibc pause $(comma "$g") B built here ($((g / bytes))× larger)"
        anchor=$g
      else
        theirs="static glibc pause not built here: $(tail -n 1 "$work/gcc.err")"
        anchor=""
      fi
      target="target ≤ 1,536 B; $theirs; 690,920 B in docs §4" ;;
    arm64) target="target ≤ 1,536 B; static glibc arm64 pause 600,096 B (docs §4)"; anchor=600096 ;;
    *) target="target < 4,096 B"; anchor=4096 ;;
  esac
  bench_row "pause binary, $arch" "$bytes" "$anchor" B "$(comma "$bytes") B" "$target"
done

# VmRSS of a sleeping process, in kB; waits until it sleeps (handlers installed).
rss_of() {
  "$1" 2>/dev/null &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = S ] && break
    sleep 0.01
  done
  awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"
  kill -TERM "$pid"
  wait "$pid" || true
}

# The stack's share varies by a page with where ASLR puts its top and how big the
# environment is, so each figure is the median of 5 runs, with the range.
rss_runs() {
  local runs=()
  for _ in 1 2 3 4 5; do runs+=("$(rss_of "$1")"); done
  printf '%s\n' "${runs[@]}" | sort -n | awk '{v[NR]=$1} END {print v[3], v[1], v[NR]}'
}

read -r ours ours_min ours_max < <(rss_runs "$work/pause-linux-amd64")
if [ -n "$glibc" ]; then
  read -r theirs theirs_min theirs_max < <(rss_runs "$glibc")
  ratio=$(awk -v a="$theirs" -v b="$ours" 'BEGIN { printf "%.0f", a / b }')
  bench_row "pause RSS, amd64 (VmRSS, median of 5)" "$ours" "$theirs" KiB \
    "${ours} KiB (${ours_min}–${ours_max})" \
    "target ≤ 16 KiB; static glibc pause ${theirs} KiB (${theirs_min}–${theirs_max}) measured here, ${ratio}× more"
else
  bench_row "pause RSS, amd64 (VmRSS, median of 5)" "$ours" "" KiB \
    "${ours} KiB (${ours_min}–${ours_max})" "target ≤ 16 KiB; static glibc pause not built here (no libc.a?)"
fi
