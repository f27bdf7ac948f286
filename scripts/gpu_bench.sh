#!/usr/bin/env bash
# GPU benchmarks of issue 7: cnnviz (bench/gpu_bench, built by scripts/gpu_check.sh) against the same
# loops in PyTorch's Python on the same machine and device.
#   scripts/gpu_bench.sh data DIR [IMAGES]   resnet18 (random weights, 224 sidecar) and a generated
#                                            Broden-format dataset of IMAGES (default 2000) at 224x224
#   scripts/gpu_bench.sh run BUILD DIR       the benchmarks; one JSON line each, then the ratios
# DEVICE=cpu UNITS=4 SIZE=64 STEPS=8 run a small version on the CPU (to check the script without a GPU).
# Both sides: OMP_WAIT_POLICY=PASSIVE; cnnviz with its defaults (every core for intra-op threads, up to
# 8 decoding threads on a GPU); Python one intra-op thread and PIL decoding in the main thread.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
export OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
case "${1:-}" in
  data)
    dir=$2
    mkdir -p "$dir"
    "$python" "$root/models/export_torchvision.py" --arch resnet18 --script --out "$dir/resnet18.pt" \
      --input-size 224 >/dev/null || exit 1
    "$python" -c "import sys; sys.path.insert(0, '$root/models'); import make_concepts; \
make_concepts.generate('$dir/broden', ${3:-2000}, 224, 0, 0.2)" || exit 1
    echo "gpu_bench: data ready in $dir" >&2
    ;;
  run)
    build=$2 dir=$3
    device=${DEVICE:-cuda} units=${UNITS:-64} size=${SIZE:-224} steps=${STEPS:-40}
    bench=$build/bench/gpu_bench model=$dir/resnet18.pt data=$dir/broden
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    one() {  # name, command...: runs it (at most 240 s), keeps its last stdout line in $dir/NAME.json
      local name=$1
      shift
      echo "== $name" >&2
      timeout 240 "$@" >"$dir/$name.out" || echo "gpu_bench: $name failed or timed out" >&2
      tail -n 1 "$dir/$name.out" >"$dir/$name.json"
      cut -c1-500 "$dir/$name.json"
    }
    one cnnviz_actmax "$bench" actmax --device "$device" --model "$model" --layer layer3 --units "$units" --size "$size" --steps "$steps"
    one cnnviz_actmax_full "$bench" actmax --device "$device" --model "$model" --layer layer3 --units "$units" \
      --size "$size" --steps "$steps" --truncate 0
    one python_actmax "$python" "$root/bench/actmax_baseline.py" --arch resnet18 --layer layer3 --units 0-$((units - 1)) \
      --batch "$units" --size "$size" --steps $((steps / 2)) --warmup 3 --device "$device" --weights-from "$model" --json
    one cnnviz_dissect "$bench" dissect --device "$device" --model "$model" --dataset "$data" --layers layer4 --batch 64
    one cnnviz_dissect_w15 "$bench" dissect --device "$device" --model "$model" --dataset "$data" --layers layer4 \
      --batch 64 --workers 15
    one python_dissect "$python" "$root/bench/dissect_baseline.py" --model-kind resnet18 --weights "$model" \
      --dataset "$data" --layers layer4 --batch 64 --device "$device" --json
    one cnnviz_deconv "$bench" deconv --device "$device" --model "$model" --dataset "$data" --layer layer3 --batch 64
    one python_deconv "$python" "$root/bench/deconv_bench.py" --python-scan-only --device "$device" --dataset "$data" \
      --model-file "$model" --layer layer3 --batch 64 --json
    "$python" - "$dir" <<'PY'
import json, os, sys
d = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(d, name + ".json")))
    except Exception:
        return None
c, p = load("cnnviz_actmax"), load("python_actmax")
if c and p:
    print(f"actmax resnet18 layer3, {c['units']} units at {c['size']}, batched: cnnviz {c['steps_per_second']:.2f} steps/s, "
          f"python {p['steps_per_second']:.2f} steps/s: {c['steps_per_second'] / p['steps_per_second']:.2f}x")
f = load("cnnviz_actmax_full")
if f and p:
    print(f"  cnnviz without truncation (whole network, as Python): {f['steps_per_second']:.2f} steps/s: "
          f"{f['steps_per_second'] / p['steps_per_second']:.2f}x")
w = load("cnnviz_dissect_w15")
if w:
    print(f"dissect with 15 decoding threads: {w['images_per_second']:.1f} images/s "
          f"(decoding alone {w['decode_images_per_second']:.0f} images/s)")
c, p = load("cnnviz_dissect"), load("python_dissect")
if c:
    print(f"dissect resnet18 layer4, {c['images']} images: cnnviz {c['images_per_second']:.1f} images/s "
          f"(pass 1 {c['pass1_seconds']:.2f} s, pass 2 {c['pass2_seconds']:.2f} s; alone: decoding "
          f"{c['decode_images_per_second']:.0f} images/s on {c['workers']} threads, forward "
          f"{c['forward_images_per_second']:.0f} images/s)")
    if p:
        print(f"  python {p['images_per_second']:.1f} images/s ({json.dumps(p.get('seconds'))}): "
              f"{c['images_per_second'] / p['images_per_second']:.2f}x")
c, p = load("cnnviz_deconv"), load("python_deconv")
if c:
    print(f"deconv scan resnet18 layer3, {c['images']} images: cnnviz {c['images_per_second']:.1f} images/s "
          f"(alone: decoding {c['decode_images_per_second']:.0f}, forward {c['forward_images_per_second']:.0f})")
    if p:
        print(f"  python {p['images_per_second']:.1f} images/s: {c['images_per_second'] / p['images_per_second']:.2f}x")
PY
    ;;
  *)
    echo "usage: scripts/gpu_bench.sh data DIR [IMAGES] | run BUILD DIR" >&2
    exit 2
    ;;
esac
