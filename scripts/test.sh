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
# One ctest process per core, each with one intra-op thread. (Count the cores first: GNU nproc honours
# OMP_NUM_THREADS, so after the export below it would say 1.)
jobs=$(nproc)
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd "$build" && ctest --output-on-failure -j"$jobs" --timeout 900 "$@"
