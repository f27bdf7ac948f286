#!/usr/bin/env bash
# On a machine with a CUDA PyTorch wheel but no OpenCV (e.g. the lent GPU machine): builds cnnviz::core
# and its tests against the wheel's LibTorch, generates the fixtures with that Python, and runs the
# CUDA comparisons (ctest -L cuda) and the core tests.
#   scripts/gpu_check.sh [DEPS]     DEPS: folder from shared/device/prepare-deps.sh (default .devdeps)
# Prepare DEPS where Debian's apt works:  ../shared/device/prepare-deps.sh .devdeps
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps=$(cd "${1:-$root/.devdeps}" && pwd)
python=${PYTHON:-python3}
torch_cmake=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
echo "gpu_check: torch $("$python" -c 'import torch; print(torch.__version__, torch.cuda.is_available())')" >&2
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
build=$root/build-cuda
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCNNVIZ_WITH_OPENCV=OFF \
  -DCNNVIZ_BUILD_BENCH=OFF -DCNNVIZ_PYTHON="$(command -v "$python")" \
  -DCMAKE_PREFIX_PATH="$torch_cmake;$deps/usr;$deps/usr/lib/x86_64-linux-gnu/cmake"
export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -L "cuda|fixtures"
ctest --output-on-failure -L unit -j"$(nproc)" || echo "gpu_check: some CPU unit tests failed (see above)" >&2
