#!/usr/bin/env bash
# Runs the README's examples that use the bundled model and concept dataset, writing each into OUT, so
# that two builds can be compared file for file (scripts/compare_outputs.py): refactors must leave
# them byte-identical.
#   scripts/readme_outputs.sh CNNVIZ_BINARY OUT
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cnnviz=$1 out=$2
model=$root/models/tinycnn.pt
dataset=$root/dataset/concepts
image=$dataset/images/synth/000005.jpg
if [ ! -f "$dataset/index.csv" ]; then
  /usr/bin/python3 "$root/models/make_concepts.py" --out "$dataset" --count 2000 --seed 0 >/dev/null
fi
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p "$out"
run() { local name=$1; shift; echo "== $name: cnnviz $*"; "$cnnviz" -q "$@" --out "$out/$name"; }
run actmax_unit42 actmax --model "$model" --layer conv5 --unit 42
run actmax_conv3 actmax --model "$model" --layer conv3 --units all --batch 64 --steps 256
run actmax_expr actmax --model "$model" --expr "conv5:3 + 0.5*conv4:7 - 0.05*tv"
run actmax_diversity actmax --model "$model" --layer conv4 --unit 7 --diversity 4
run invert_conv3 invert --model "$model" --image "$image" --layer conv3
run invert_all invert --model "$model" --image "$image" --layers all
run deconv_conv4 deconv --model "$model" --layer conv4 --units 0-15 --dataset "$dataset"
run deconv_image deconv --model "$model" --layer conv4 --image "$image" --top 9
run dissect dissect --model "$model" --dataset "$dataset" --layers conv3,conv4,conv5
