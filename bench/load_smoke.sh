#!/usr/bin/env bash
# CI's tiny sessionhost-load run: a real `sessionhost serve` on a free port
# with SQLite in a temporary directory, 2 sessions × 2 subscribers for 1 s.
# Fails when the load tool reports a gap, a duplicate or an error.
# Usage: load_smoke.sh SESSIONHOST SESSIONHOST_LOAD
set -euo pipefail
server_bin=$1 load_bin=$2
dir=$(mktemp -d)
out=$dir/serve.out
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
"$server_bin" serve --listen=127.0.0.1:0 --data-dir="$dir/data" >"$out" 2>&1 &
pid=$!
url=
for _ in $(seq 100); do # up to 10 s for the first line
  url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$out" | head -1)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$out"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "serve printed no address"; cat "$out"; exit 1; }
"$load_bin" --url="$url" --server-pid="$pid" --sessions=2 --clients=2 \
  --window=16 --duration=1 --warmup=0.2 --timeout=20
# At a rate, spinning (--busy-poll): the line names the diagnostic and
# carries the server's stage latencies from /metrics over the window.
line=$("$load_bin" --url="$url" --server-pid="$pid" --sessions=2 --clients=2 \
  --rate=500 --duration=1 --warmup=0.2 --timeout=20 --busy-poll)
echo "$line"
for want in '"busy_poll_diagnostic":true' '"server_latency_us":{"source"' \
            '"publish_to_durable":{"count":[1-9]' \
            '"publish_to_send":{"count":[1-9]' '"publish_to_ack":{"count":[1-9]'; do
  grep -q "$want" <<<"$line" || { echo "missing $want"; exit 1; }
done
