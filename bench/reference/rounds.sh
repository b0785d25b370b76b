#!/usr/bin/env bash
# Interleaved rounds for docs/PERFORMANCE.md "The references on this
# machine": sessionhost (run-all's server: SQLite, durable), Socket.IO and ws,
# one after the other for each scenario (A, B, C, A, B, C, …), each against a
# fresh server pinned to CPU 0 with sessionhost-load on CPU 1, and
# `wake_probe --cpus=0,1` once per round. Before each run: the load average;
# around it: the machine's steal (/proc/stat, all CPUs, CPU-s over the run).
#
#   bench/reference/rounds.sh BUILD_DIR [ROUNDS=3] [DURATION=5]
#   SCENARIOS='100x10' bench/reference/rounds.sh …   # only scenarios matching (grep -E)
#
# BUILD_DIR: a Release build with sessionhost, sessionhost-load and wake_probe,
# and the references installed in BUILD_DIR/reference (bench/run-all
# ONLY=reference does that, or bench/reference/README.md). Prints one line
# per run: round, server, scenario, load average, steal CPU-s, the JSON line.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=$(cd "$1" && pwd)
rounds=${2:-3}
duration=${3:-5}
[ -d "$bin/reference/node_modules/socket.io" ] || {
  echo "no references installed in $bin/reference (bench/reference/README.md)"; exit 2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
pid=
stop() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  pid=
}
trap 'stop; rm -rf "$tmp"' EXIT
start() { # sessionhost | socketio | ws
  stop
  rm -rf "$tmp/data"
  if [ "$1" = sessionhost ]; then
    taskset -c 0 "$bin/app/sessionhost" serve --listen=127.0.0.1:0 \
      --data-dir="$tmp/data" >"$tmp/serve.out" 2>&1 &
  else
    NODE_PATH=$bin/reference/node_modules taskset -c 0 node \
      "$root/bench/reference/$1-server.js" 0 >"$tmp/serve.out" 2>&1 &
  fi
  pid=$!
  url=
  for _ in $(seq 100); do
    url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$tmp/serve.out" | head -1)
    [ -n "$url" ] && return 0
    sleep 0.1
  done
  echo "$1 did not start:"; cat "$tmp/serve.out"; exit 1
}
steal() { awk '/^cpu / {print $9}' /proc/stat; } # all CPUs, 1/100 s
status=0
for round in $(seq "$rounds"); do
  echo "# round $round $(date -u +%H:%M:%S) $(git rev-parse --short HEAD 2>/dev/null || echo "${COMMIT:-?}")"
  "$bin/bench/wake_probe" --cpus=0,1 | grep '"tcp"' || status=1
  for scenario in "100x10-full --sessions=100 --clients=10 --window=2000" \
                  "100x10-20000/s --sessions=100 --clients=10 --rate=2000" \
                  "1000x1-full --sessions=1000 --clients=1 --window=2000" \
                  "idle-100x100 --idle --sessions=100 --clients=100"; do
    set -- $scenario
    name=$1; shift
    grep -qE -- "${SCENARIOS:-.}" <<<"$name" || continue
    d=$duration; [ "$name" = idle-100x100 ] && d=2
    for server in sessionhost socketio ws; do
      start "$server"
      load=$(cut -d' ' -f1-3 /proc/loadavg)
      s0=$(steal)
      line=$(taskset -c 1 "$bin/bench/sessionhost-load" --protocol="$server" \
        --url="$url" --server-pid="$pid" --duration="$d" --timeout=120 "$@") || status=1
      s1=$(steal)
      printf '%s %s %s load=%s steal_cpu_s=%s %s\n' "$round" "$server" "$name" \
        "${load// //}" "$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.2f", (b - a) / 100}')" "$line"
      stop
    done
  done
done
exit $status
