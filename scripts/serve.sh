#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds and starts
# `sessionhost serve` (SQLite in ./data) with any options given, e.g. --demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if ! cmake --build build -j "$(nproc)" --target sessionhost 2>/dev/null; then
  echo "sessionhost serve is not built yet (issue 4: REST/WebSocket transport)." >&2
  exit 1
fi
exec ./build/app/sessionhost serve "$@"
