#!/usr/bin/env bash
# The README's test command: installs the Debian packages, configures, builds
# and runs every test. `scripts/test.sh --asan` does the same in build-asan/
# with AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
dir=build; flags=()
if [ "${1:-}" = "--asan" ]; then
  # Benchmarks are built and smoke-run by the plain pass only.
  dir=build-asan; flags=(-DSESSIONHOST_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
                         -DSESSIONHOST_BENCH=OFF)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$PWD/tests/ubsan.supp
  export SESSIONHOST_SANITIZED=1
fi
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$dir" "${gen[@]}" "${flags[@]}"
cmake --build "$dir" -j "$(nproc)"
cd "$dir" && ctest --output-on-failure -j "$(nproc)" --timeout 600
