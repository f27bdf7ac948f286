#!/usr/bin/env bash
# On a machine with a CUDA PyTorch wheel but no OpenCV (e.g. the lent GPU machine): builds cnnviz::core,
# cnnviz::io (dataset readers, libpng/libjpeg), the tests and bench/gpu_bench against the wheel's
# LibTorch, generates the fixtures with that Python, and runs the CUDA comparisons and the CPU unit
# tests that need no OpenCV.
#   scripts/gpu_check.sh [DEPS]     DEPS: folder from scripts/prepare_gpu_deps.sh (default .devdeps)
# UNIT_TESTS=0 skips the CPU unit tests (run them later with: ctest -L unit -FS models in build-cuda).
# Then scripts/gpu_bench.sh runs the GPU benchmarks on that build.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps=$(cd "${1:-$root/.devdeps}" && pwd)
python=${PYTHON:-python3}
torch_cmake=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
echo "gpu_check: torch $("$python" -c 'import torch; print(torch.__version__, torch.cuda.is_available())')" >&2
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
build=$root/build-cuda
# jconfig.h of the carried libjpeg sits in the multiarch folder, which the compiler searches only under /usr.
export CPATH=$deps/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}
export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCNNVIZ_WITH_OPENCV=OFF \
  -DCNNVIZ_PYTHON="$(command -v "$python")" \
  -DCMAKE_PREFIX_PATH="$torch_cmake;$deps/usr;$deps/usr/lib/x86_64-linux-gnu/cmake" || exit 1
# Keep going past a failing target, so that what did build can still run.
keep_going=()
[ ${#generator[@]} -gt 0 ] && keep_going=(-- -k 0)
build_status=0
cmake --build "$build" -j"$(nproc)" "${keep_going[@]}" || build_status=1
cd "$build"
# Fixtures once, outside ctest, so that one model torch cannot export here does not cancel every test.
"$python" "$root/tests/fixtures/make_fixtures.py" --out "$build/fixtures" --jobs 8 ||
  echo "gpu_check: some fixtures failed (see above); tests that need them will fail" >&2
status=$build_status
CNNVIZ_FIXTURES=$build/fixtures ./tests/cnnviz_cuda_tests || status=1
[ "${UNIT_TESTS:-1}" = 0 ] || ctest --output-on-failure -L unit -FS models -j"$(nproc)" --timeout 300 || {
  echo "gpu_check: some CPU unit tests failed (see above)" >&2
  status=1
}
exit $status
