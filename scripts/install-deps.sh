#!/usr/bin/env bash
# Installs the Debian bookworm packages sessionhost builds and tests with.
# A no-op when they are present already.
set -euo pipefail
pkgs=(build-essential cmake ninja-build ccache pkg-config
      libcaf-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
      libboost-dev nlohmann-json3-dev libprotobuf-dev protobuf-compiler
      libsqlite3-dev libpqxx-dev postgresql
      # the dashboard's end-to-end test (tests/web/): headless Chromium
      python3 python3-selenium chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
