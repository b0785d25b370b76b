#!/usr/bin/env bash
# A tiny sessionhost-load run against each reference server (Socket.IO, ws;
# bench/reference/), so --protocol=socketio|ws keeps working. Runs only where
# node and an installed bench/reference node_modules already exist (it never
# installs anything); otherwise exits 77, which ctest reports as skipped.
# Usage: reference_smoke.sh SESSIONHOST_LOAD NODE_MODULES_DIR
#   (SESSIONHOST_REFERENCE_MODULES in the environment overrides the directory)
set -euo pipefail
load_bin=$1
modules=${SESSIONHOST_REFERENCE_MODULES:-$2}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null; then
  echo "skipped: node is not installed"; exit 77
fi
if [ ! -d "$modules/socket.io" ] || [ ! -d "$modules/ws" ]; then
  echo "skipped: no installed reference servers in $modules (bench/reference/README.md)"; exit 77
fi
dir=$(mktemp -d)
pid=
stop() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  pid=
}
trap 'stop; rm -rf "$dir"' EXIT
for proto in socketio ws; do
  NODE_PATH=$modules node "$here/reference/$proto-server.js" 0 >"$dir/$proto.out" 2>&1 &
  pid=$!
  url=
  for _ in $(seq 200); do # up to 20 s for the ready line (node under load)
    url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$dir/$proto.out" | head -1)
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/$proto.out"; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "$proto-server.js printed no address"; cat "$dir/$proto.out"; exit 1; }
  # Each fails (exit 1) on a gap, a duplicate, an error or a timeout.
  "$load_bin" --protocol="$proto" --url="$url" --server-pid="$pid" --sessions=2 \
    --clients=2 --window=16 --duration=1 --warmup=0.2 --timeout=20
  "$load_bin" --protocol="$proto" --url="$url" --server-pid="$pid" --sessions=2 \
    --clients=2 --rate=200 --duration=1 --warmup=0.2 --timeout=20
  "$load_bin" --protocol="$proto" --url="$url" --server-pid="$pid" --sessions=2 \
    --clients=3 --idle --duration=0.5 --timeout=20
  stop
done
