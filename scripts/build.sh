#!/usr/bin/env bash
# Configures (once) and builds cnnviz with Ninja into build/ (or $CNNVIZ_BUILD_DIR).
#   scripts/build.sh [extra cmake args...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CNNVIZ_BUILD_DIR:-$root/build}
if [ ! -f "$build/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
fi
cmake --build "$build" -- -j"$(nproc)"
