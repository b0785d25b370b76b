#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds and starts
# `sessionhost serve` (SQLite in ./data) with any options given.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target sessionhost
exec ./build/app/sessionhost serve "$@"
