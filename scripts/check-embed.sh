#!/usr/bin/env bash
# The embedding check (issue 5): builds sessionhost in Release into
# build-install/ (tests off, only the libraries), installs it into a
# throwaway prefix, checks that every installed public header compiles on its
# own, builds examples/embed against the installed package
# (find_package(sessionhost CONFIG REQUIRED)), runs it and checks its output.
# Exits non-zero on any failure. ccache is used when present.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
start=$SECONDS
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
launcher=(); command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
jobs=$(nproc)

cmake -S . -B build-install "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DSESSIONHOST_TESTS=OFF >/dev/null
cmake --build build-install -j "$jobs" \
  --target sessionhost_core sessionhost_store sessionhost_proto \
  sessionhost_transport

prefix=$(mktemp -d "${TMPDIR:-/tmp}/sessionhost-prefix.XXXXXX")
trap 'rm -rf "$prefix"' EXIT
cmake --install build-install --prefix "$prefix" --component sessionhost_dev >/dev/null
echo "== installed into $prefix:"
(cd "$prefix" && find . -type f | sort | sed 's/^/   /')

# Every public header stands on its own (its includes are installed too).
echo "== public headers compile on their own"
export prefix
find "$prefix/include/sessionhost" -name '*.hpp' -print0 \
  | xargs -0 -P "$jobs" -I{} sh -c \
      'echo "#include \"{}\"" | g++ -std=c++17 -fsyntax-only -x c++ \
         -I"$prefix/include" -I"$prefix/include/sessionhost" - \
       || { echo "not self-contained: {}"; exit 255; }'

echo "== examples/embed against the installed package"
cmake -S examples/embed -B "$prefix/example-build" "${gen[@]}" "${launcher[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/example-build" -j "$jobs"
out=$(timeout 60 "$prefix/example-build/dice_room")
echo "$out" | sed 's/^/   /'

fail=0
expect() {
  if ! grep -qE -- "$1" <<<"$out"; then
    echo "check-embed: missing in the example's output: $1" >&2
    fail=1
  fi
}
expect '^REST on http://127\.0\.0\.1:[0-9]+$'
expect '^created [^ ]+ type=dice state=SPAWNING$'
expect '^table is ACTIVE$'
expect 'event [0-9]+ status:changed .*"state":"ACTIVE"'
expect '^hook: session_open .* peer=client-1$'
expect 'event [0-9]+ log .*welcome, client-1'
expect 'event [0-9]+ dice:rolled .*"player":"ann"'
expect 'event [0-9]+ dice:winner '
expect 'event [0-9]+ dice:closed .*"reason":"game over"'
expect '^hook: session_close .* reason=terminated$'
expect 'event [0-9]+ status:changed .*"state":"CLEANED"'
expect '^final state CLEANED, ([0-9]+) events, printer saw'
expect '^host stopped; the printer still answers'
[ "$fail" = 0 ] || exit 1
echo "== embedding check passed in $((SECONDS - start)) s"
