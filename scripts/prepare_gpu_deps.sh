#!/usr/bin/env bash
# Unpacks, where Debian's apt works, the headers and libraries cnnviz needs besides LibTorch and OpenCV
# into DIR (default .devdeps, ~11 MB), for a machine that has a CUDA PyTorch wheel but none of these
# (the lent GPU machine). Carry DIR there and run scripts/gpu_check.sh DIR.
#   scripts/prepare_gpu_deps.sh [DIR]
# libpng and libjpeg let cnnviz::io (dataset readers) build without OpenCV; their runtime libraries come
# along because the other machine may not have these versions.
set -euo pipefail
dir=${1:-.devdeps}
pkgs=(libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev libcli11-dev libgtest-dev googletest
      libpng-dev libpng16-16 libjpeg62-turbo-dev libjpeg62-turbo)
mkdir -p "$dir/debs"
( cd "$dir/debs" && apt-get download "${pkgs[@]}" >/dev/null )
for f in "$dir"/debs/*.deb; do dpkg -x "$f" "$dir"; done
rm -rf "$dir/debs" "$dir/usr/share/doc" "$dir/usr/share/man" "$dir/usr/src"
du -sh "$dir"
