#!/usr/bin/env bash
# Installs what is missing, builds, then runs cnnviz on the bundled model and a freshly generated
# concept dataset. Results go to out/demo/.
#   scripts/demo.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
build=${CNNVIZ_BUILD_DIR:-$root/build}
out=$root/out/demo
mkdir -p "$out"
cnnviz=$build/apps/cnnviz
model=$root/models/tinycnn.pt
dataset=$root/dataset/concepts
if [ ! -f "$dataset/index.csv" ]; then
  echo "demo: generating the concept dataset (Broden format) in $dataset" >&2
  /usr/bin/python3 "$root/models/make_concepts.py" --out "$dataset" --count 1000 --seed 0 >/dev/null
fi
echo "== cnnviz layers --model models/tinycnn.pt"
"$cnnviz" layers --model "$model"
"$cnnviz" layers --model "$model" --json > "$out/layers.json"
echo "== cnnviz actmax --model models/tinycnn.pt --layer conv5 --units 0-15 --steps 128"
"$cnnviz" actmax --model "$model" --layer conv5 --units 0-15 --steps 128 --out "$out/actmax" \
  --reference-dataset "$dataset/images"
images=("$dataset"/images/synth/*.jpg)
image=${images[4]}
echo "== cnnviz upconv train --model models/tinycnn.pt --layer conv3 --dataset $dataset --epochs 3 --max-images 500"
"$cnnviz" upconv train --model "$model" --layer conv3 --dataset "$dataset" --epochs 3 --max-images 500 \
  --out "$out/conv3.decoder.pt"
echo "== cnnviz invert --model models/tinycnn.pt --image $image --layers all --decoder conv3.decoder.pt"
"$cnnviz" invert --model "$model" --image "$image" --layers all --decoder "$out/conv3.decoder.pt" --out "$out/invert"
echo "== cnnviz deconv --model models/tinycnn.pt --layer conv4 --units 0-15 --dataset $dataset"
"$cnnviz" deconv --model "$model" --layer conv4 --units 0-15 --dataset "$dataset" --out "$out/deconv"
echo "== cnnviz dissect --model models/tinycnn.pt --dataset $dataset --layers conv3,conv4,conv5"
"$cnnviz" dissect --model "$model" --dataset "$dataset" --layers conv3,conv4,conv5 --out "$out/dissect"
echo "== cnnviz atlas --model models/tinycnn.pt --dataset $dataset --steps 64 --diversity 1"
"$cnnviz" atlas --model "$model" --dataset "$dataset" --steps 64 --diversity 1 --out "$out/atlas"
echo "demo: wrote $out/layers.json, $out/actmax/, $out/invert/, $out/deconv/, $out/dissect/ and $out/atlas/" \
  "(open $out/atlas/index.html and $out/dissect/index.html); dataset in $dataset" >&2
