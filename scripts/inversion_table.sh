#!/usr/bin/env bash
# The per-layer inversion table of README.md: mean PSNR and mean feature error per layer over the first N
# images (sorted by name) of a concept dataset, default mode beside --paper, with the bundled model.
#   scripts/inversion_table.sh DATASET [N]       (N defaults to 20; run with OMP_NUM_THREADS=1 to compare)
# DATASET is a Broden root (images/synth/*.jpg). Uses $CNNVIZ_BUILD_DIR (default build/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CNNVIZ_BUILD_DIR:-$root/build}
dataset=${1:?usage: scripts/inversion_table.sh DATASET [N]}
count=${2:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mapfile -t images < <(find "$dataset/images" -name '*.jpg' | sort | head -n "$count")
[ "${#images[@]}" -gt 0 ] || { echo "no .jpg images under $dataset/images" >&2; exit 2; }
for i in "${!images[@]}"; do
  for mode in default paper; do
    flag=(); [ "$mode" = paper ] && flag=(--paper)
    # A failed run (--paper's momentum SGD can diverge) is left out of the means and counted.
    "$build/apps/cnnviz" --quiet invert --model "$root/models/tinycnn.pt" --image "${images[$i]}" --layers all \
      "${flag[@]}" --out "$work/$mode/$i" >/dev/null 2>"$work/$mode.$i.err" ||
      echo "$mode: $(basename "${images[$i]}"): $(tail -n 1 "$work/$mode.$i.err")" | tee -a "$work/failures" >&2
  done
  echo "inverted $((i + 1))/${#images[@]}" >&2
done
/usr/bin/python3 - "$work" "${#images[@]}" <<'PY'
import json, sys, glob, collections
work, n = sys.argv[1], int(sys.argv[2])
rows = collections.OrderedDict()
for mode in ("default", "paper"):
    for path in sorted(glob.glob(f"{work}/{mode}/*/report.json")):
        for r in json.load(open(path))["reconstructions"]:
            rows.setdefault(r["layer"], {}).setdefault(mode, []).append((r["psnr_db"], r["feature_error"], r["seconds"]))
mean = lambda v: sum(v) / len(v)
runs = {m: len(glob.glob(f"{work}/{m}/*/report.json")) for m in ("default", "paper")}
print(f"images: {n}; finished runs: default {runs['default']}, --paper {runs['paper']} (means over finished runs)")
print(f"| layer | PSNR default (dB) | PSNR --paper (dB) | feature error default | feature error --paper | s/layer default | s/layer --paper |")
print("|---|---|---|---|---|---|---|")
for layer, modes in rows.items():
    d, p = modes["default"], modes["paper"]
    print(f"| {layer} | {mean([x[0] for x in d]):.1f} | {mean([x[0] for x in p]):.1f} | {mean([x[1] for x in d]):.3f} | "
          f"{mean([x[1] for x in p]):.3f} | {mean([x[2] for x in d]):.1f} | {mean([x[2] for x in p]):.1f} |")
PY
