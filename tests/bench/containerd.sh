# Sourced by the bench scripts that run containerd (bake.sh, live.sh): a containerd started
# as the tests start it (private /run and no network through unshare, its own root, state
# and socket under a temporary directory, stopped by pid); the clock helpers are row.sh's.
# Sets `work`, a temporary directory removed on exit, and `pid` while a containerd runs
# (killed on exit); CONTAINERD and CTR default to the ones on PATH.
CONTAINERD=${CONTAINERD:-$(command -v containerd || true)}
CTR=${CTR:-$(command -v ctr || true)}
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT


# bench_containerd_required TOPIC: exits unless root, containerd and ctr are there; prints
# containerd's version.
bench_containerd_required() {
  if [ -z "${CONTAINERD:-}" ] || [ -z "${CTR:-}" ] || [ "$(id -u)" != 0 ]; then
    echo "bench $1: needs root, containerd and ctr" >&2
    exit 1
  fi
  "$CONTAINERD" --version | awk '{print $3}'
}

# start_containerd ROOT RUN [EXTRA_TOML]: containerd on ROOT's store, its state, socket
# (RUN/sock) and log under RUN; returns once it answers.
start_containerd() {
  local root=$1 run=$2 extra=${3:-}
  cat >"$run/config.toml" <<TOML
version = 2
root = "$root/var/lib/containerd"
state = "$run/state"
[grpc]
  address = "$run/sock"
[ttrpc]
  address = "$run/sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$run/opt"
$extra
TOML
  unshare --mount --propagation private --net -- sh -c \
    'mount -t tmpfs -o mode=0755 tmpfs /run && exec "$0" --config "$1"' \
    "$CONTAINERD" "$run/config.toml" >"$run/log" 2>&1 &
  pid=$!
  until "$CTR" --address "$run/sock" version >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "containerd exited: $(tail -n 3 "$run/log")" >&2; exit 1; }
    sleep 0.01
  done
}

# stop_containerd: SIGTERM to the containerd start_containerd started, and wait for it.
stop_containerd() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
}
