#!/usr/bin/python3
"""Atlas benchmark: `cnnviz atlas` against running `cnnviz dissect`, `cnnviz deconv` and `cnnviz actmax`
separately for the same layers, units and settings (issue 18: target atlas <= 0.75x their summed wall
time), plus the atlas's wall time and peak memory on resnet18.

    /usr/bin/python3 bench/atlas_bench.py [--build build] [--images 1000] [--steps 32] [--quick]

Every command runs as a subprocess with bench_common.ENV (1 intra-op thread, OMP_WAIT_POLICY=PASSIVE;
activation maximization then uses one worker per usable core, as both `actmax` and `atlas` do by
default). Wall time and peak RSS come from GNU time, so both include start-up and model loading.

Case 1, equal work: models/tinycnn.pt, layers conv1..conv5, N images of the synthetic Broden set
(models/make_concepts.py --seed 0, BUILD/bench-data/concepts<N>), batch 16:
  atlas:    atlas --layers conv1,...,conv5 --images N --steps S --diversity 2 --top 4 --samples 0
            --inversions 0 --classes none  (the atlas-only stages off)
  separate: dissect --layers conv1,...,conv5 --max-images N
            deconv --layers conv1,...,conv5 --top 4 --max-images N   (every unit)
            actmax --layer Lk --steps S --diversity 2, one run per layer (every unit)
  Printed: each command's wall time, their sum, the atlas's, and the ratio atlas / sum; and the share
  the shared pass changes: the atlas's scan and projection stages against dissect + deconv.
Case 1b: the complete atlas (activation atlases of 1,000 samples per layer, 2 inversions, class models):
  its wall time and peak RSS, and its stages' seconds.
Case 2: resnet18 (random weights, 224x224, bench_common.ensure_resnet18), layers layer3,layer4, N images:
  the atlas's wall time and peak RSS, with --max-units 16 --steps 16 --diversity 1 (activation
  maximization of every one of 768 units at 224 px would take hours on this CPU; the pass over the
  dataset, dissection and the per-unit pages of every unit are all there).
--quick: N = 200, S = 8, no case 2.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

from bench_common import ROOT, ensure_resnet18
from dissect_bench import ensure_concepts, measured

TINY_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]


def run(label, command):
    code, _out, err, wall, peak = measured(command)
    if code != 0:
        sys.exit(f"{label} failed ({code}): {err.strip().splitlines()[-1] if err.strip() else ''}")
    print(f"  {label:<28} {wall:8.1f} s  {peak:7.0f} MB peak")
    return wall, peak


def stages(folder):
    with open(os.path.join(folder, "report.json")) as f:
        report = json.load(f)
    return ", ".join(f"{s['name']} {s['seconds']:.1f}" for s in report["stages"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.images, args.steps = 200, 8
    binary = os.path.join(args.build, "apps", "cnnviz")
    if not os.access(binary, os.X_OK):
        sys.exit(f"no cnnviz binary at {binary}: build first (scripts/build.sh)")
    dataset = ensure_concepts(args.build, args.images)
    model = os.path.join(ROOT, "models", "tinycnn.pt")
    work = tempfile.mkdtemp(prefix="atlas_bench_")
    common = ["--device", "cpu", "-q", "--model", model]
    layers = ",".join(TINY_LAYERS)
    print(f"threads: OMP_NUM_THREADS=1, OMP_WAIT_POLICY=PASSIVE; activation maximization with one worker per core "
          f"({os.cpu_count()} cores); {args.images} images, {args.steps} steps, diversity 2, top 4")
    try:
        print(f"case 1: tinycnn {layers}, equal work")
        atlas_wall, atlas_peak = run("atlas (equal work)", [binary, "atlas", *common, "--dataset", dataset, "--layers", layers,
                                                            "--images", str(args.images), "--steps", str(args.steps),
                                                            "--diversity", "2", "--top", "4", "--samples", "0",
                                                            "--inversions", "0", "--classes", "none",
                                                            "--out", os.path.join(work, "atlas")])
        print(f"    stages: {stages(os.path.join(work, 'atlas'))}")
        separate = []
        separate.append(run("dissect", [binary, "dissect", *common, "--dataset", dataset, "--layers", layers,
                                        "--max-images", str(args.images), "--out", os.path.join(work, "dissect")]))
        separate.append(run("deconv", [binary, "deconv", *common, "--dataset", dataset, "--layers", layers, "--top", "4",
                                       "--max-images", str(args.images), "--out", os.path.join(work, "deconv")]))
        for layer in TINY_LAYERS:
            separate.append(run(f"actmax {layer}", [binary, "actmax", *common, "--layer", layer, "--steps", str(args.steps),
                                                    "--diversity", "2", "--out", os.path.join(work, "actmax_" + layer)]))
        with open(os.path.join(work, "atlas", "report.json")) as f:
            stage_seconds = {s["name"]: s["seconds"] for s in json.load(f)["stages"]}
        shared = sum(v for k, v in stage_seconds.items() if k == "scan" or k.startswith("deconv "))
        passes = separate[0][0] + separate[1][0]
        print(f"  the data pass: atlas scan + projections {shared:.1f} s against dissect + deconv {passes:.1f} s "
              f"(= {shared / passes:.2f}; the commands' times include loading the model, about 0.5 s each)")
        total = sum(wall for wall, _ in separate)
        peak = max(p for _, p in separate)
        print(f"  {'separate, summed':<28} {total:8.1f} s  {peak:7.0f} MB peak (largest)")
        print(f"  ratio atlas / separate = {atlas_wall / total:.2f}  (target <= 0.75; peak memory "
              f"{atlas_peak / peak:.2f}x the largest separate run)")

        print("case 1b: the complete atlas (activation atlases, inversions, class models)")
        run("atlas (complete)", [binary, "atlas", *common, "--dataset", dataset, "--layers", layers,
                                 "--images", str(args.images), "--steps", str(args.steps), "--diversity", "2",
                                 "--out", os.path.join(work, "atlas_full")])
        print(f"    stages: {stages(os.path.join(work, 'atlas_full'))}")

        if not args.quick:
            print("case 2: resnet18 layer3,layer4 (224 px), --max-units 16 --steps 16 --diversity 1")
            resnet = ensure_resnet18(args.build)
            run("atlas resnet18", [binary, "atlas", "--device", "cpu", "-q", "--model", resnet, "--dataset", dataset,
                                   "--layers", "layer3,layer4", "--images", str(args.images), "--steps", "16",
                                   "--diversity", "1", "--max-units", "16", "--inversions", "1",
                                   "--inversion-steps", "50", "--classes", "0,1,2,3",
                                   "--out", os.path.join(work, "atlas_resnet18")])
            print(f"    stages: {stages(os.path.join(work, 'atlas_resnet18'))}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
