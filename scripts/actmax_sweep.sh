#!/usr/bin/env bash
# Issue 14's acceptance sweep for activation maximization: every unit of the bundled model's conv3 and
# conv5 at the default steps, seeds 0, 1 and 2, each against the best natural image of a concept
# dataset. Prints, per run, the lowest final objective and the units flagged not_raised, then the count
# of units that fire somewhere on the dataset but end at or below 0 (should be 0).
#   scripts/actmax_sweep.sh DATASET_IMAGES_DIR [OUT_DIR]     (about 50 min on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
images=${1:?give a folder of images, e.g. dataset/concepts/images/synth}
out=${2:-$root/out/actmax_sweep}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
for seed in 0 1 2; do
  for layer in conv3 conv5; do
    "$root/build/apps/cnnviz" actmax -q --model "$root/models/tinycnn.pt" --layer "$layer" --seed "$seed" \
      --reference-dataset "$images" --out "$out/$layer-$seed"
  done
done
python3 - "$out" <<'PY'
import glob, json, sys
total = firing = dead = 0
for path in sorted(glob.glob(sys.argv[1] + "/*/report.json")):
    units = json.load(open(path))["units"]
    flagged = [u["label"] for u in units if u["not_raised"]]
    for u in units:
        total += 1
        fires = u["reference_top"]["value"] > 0
        firing += fires
        dead += fires and u["final_value"] <= 0
    print(path.split("/")[-2], "lowest final", round(min(u["final_value"] for u in units), 3), "not_raised", flagged)
print(f"{total} unit runs, {firing} fire on the dataset, {dead} of those end at or below 0")
PY
