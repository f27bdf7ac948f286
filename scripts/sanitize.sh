#!/usr/bin/env bash
# Builds cnnviz with AddressSanitizer and UndefinedBehaviorSanitizer into build-asan/ (or
# $CNNVIZ_ASAN_DIR) and runs tests under them; any report fails the test that triggered it.
#   scripts/sanitize.sh [ctest args...]     default: the CLI, reader, dissection and reliability tests
# LibTorch and OpenCV are not instrumented, so ASan's container-overflow check (which needs every
# caller instrumented) is off, and leak detection is off (LibTorch's registries live until exit).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CNNVIZ_ASAN_DIR:-$root/build-asan}
"$root/scripts/setup.sh"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNNVIZ_SANITIZE=ON >/dev/null
fi
cmake --build "$build" -- -j"$(nproc)"
export ASAN_OPTIONS=detect_container_overflow=0:detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cd "$build"
if [ $# -eq 0 ]; then
  set -- -R 'fixtures/models|Cli|Broden|Decode|Dissection|Reliability|fuzz_replay'
fi
ctest --output-on-failure -j"$(nproc)" --timeout 1800 "$@"
