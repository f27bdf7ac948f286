#!/usr/bin/env bash
# The viewer in a real browser (ctest label "browser"): makes a dissection report, an atlas and an
# adversarial report and a comparison with the cnnviz binary, then loads their network, layer, unit and image pages in headless Chromium (check_pages.py):
# no console errors, every image loads, sorting a layer page by IoU reorders its rows. Skips (exit 77)
# where no Chromium is installed.
#   browser_test.sh CNNVIZ_BINARY FIXTURE_DIR WORK_DIR
set -euo pipefail
cnnviz=$1 fixtures=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "SKIP: no chromium"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
export OMP_NUM_THREADS=1
"$cnnviz" dissect -q --device cpu --model "$fixtures/planted.pt" --dataset "$fixtures/concepts" --layers relu \
  --out "$work/dissect"
"$cnnviz" atlas -q --device cpu --model "$here/../../models/tinycnn.pt" --dataset "$fixtures/concepts" \
  --layers conv2,conv4 --images 40 --steps 12 --diversity 2 --samples 200 --grid 5 --inversions 1 --inversion-steps 10 \
  --out "$work/atlas"
"$cnnviz" adversarial -q --device cpu --model "$here/../../models/tinycnn.pt" --images "$fixtures/concepts" \
  --max-images 12 --dissection "$work/dissect" --inspect conv5 --inversion-steps 10 --out "$work/adversarial"
"$cnnviz" compare -q --device cpu --models "$here/../../models/checkpoints/ckpt_00000.pt" \
  "$here/../../models/checkpoints/ckpt_01000.pt" --dataset "$fixtures/concepts" --layers conv4,conv5 \
  --rotations 0,1 --actmax-steps 8 --strip-units 2 --out "$work/compare"
"$python" "$here/make_fake_atlas.py" "$work/fake" >/dev/null
"$python" "$here/make_fake_compare.py" "$work/fake_compare" >/dev/null
"$python" "$here/make_fake_adversarial.py" "$work/fake_adversarial" >/dev/null
status=0
for folder in dissect atlas adversarial compare fake fake_adversarial fake_compare; do
  echo "== $folder"
  "$python" "$here/check_pages.py" "$work/$folder" || status=1
done
exit $status
