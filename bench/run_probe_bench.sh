#!/usr/bin/env bash
# Exports resnet18 (random weights, scripted) and times forward+backward to early/middle/late taps with
# and without truncation. Threads: 1 intra-op thread, OMP_WAIT_POLICY=PASSIVE (see README, Benchmarks).
#   bench/run_probe_bench.sh [build-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=$build/bench-data
mkdir -p "$work"
[ -f "$work/resnet18.pt" ] || /usr/bin/python3 "$root/models/export_torchvision.py" --arch resnet18 --script \
  --out "$work/resnet18.pt" --input-size 224 >/dev/null
export OMP_WAIT_POLICY=PASSIVE
"$build/bench/probe_bench" --model "$work/resnet18.pt" --size 224 --threads 1 --repeats 15 \
  --layers conv1,layer1,layer2,layer3,layer4
