#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (fixture models are generated first, on CPU).
#   scripts/test.sh [ctest args...]      e.g. scripts/test.sh -L unit -R Probe
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
if [ "${CI:-}" = "true" ]; then
  "$root/scripts/build.sh" -DCNNVIZ_WERROR=ON  # a new warning in our code fails CI
else
  "$root/scripts/build.sh"
fi
build=${CNNVIZ_BUILD_DIR:-$root/build}
# One intra-op thread per test process; ctest runs two processes at a time on two cores.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd "$build" && ctest --output-on-failure -j"$(nproc)" --timeout 900 "$@"
