#!/usr/bin/python3
"""Comparison benchmark: one `cnnviz compare` of the bundled model's 5 training checkpoints against 5
separate `cnnviz dissect` runs of the same checkpoints, as a ratio, with peak memory.

    /usr/bin/python3 bench/compare_bench.py [--build build] [--images 1000] [--rounds 1]

Models: models/checkpoints/ckpt_*.pt (5 checkpoints of models/tinycnn.pt's training, 96x96 input).
Layers: every convolution (conv1-conv5, 304 units). Dataset: a generated Broden-format concept set of
--images images (dissect_bench.ensure_concepts, BUILD/bench-data/concepts<N>). Both sides: the cnnviz
binary with default options (1 intra-op thread, OMP_WAIT_POLICY=PASSIVE, decoding on a second thread),
every run a fresh process and a fresh output folder (no resumed models).

Measured: wall time of `compare --models <5> --layers conv1,...,conv5 --actmax-steps 0` (dissect has no
activation maximization; compare still writes its tiles and strips, dissect its unit figures) against the sum of the 5
`dissect` runs' wall times, and the ratio (target >= 1.5x); peak resident memory (ru_maxrss of the
process) of the compare run against the largest single dissect run. The runs alternate when --rounds > 1
(the machines are shared and noisy: read every round).
"""
import argparse
import glob
import os
import shutil
import statistics
import sys
import tempfile

from bench_common import ROOT
from dissect_bench import ensure_concepts, measured

LAYERS = "conv1,conv2,conv3,conv4,conv5"


def run(label, command):
    code, _out, err, wall, peak = measured(command)
    if code != 0:
        sys.exit(f"{label} failed ({code}): {err.strip().splitlines()[-1] if err.strip() else ''}")
    return wall, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    binary = os.path.join(args.build, "apps", "cnnviz")
    if not os.access(binary, os.X_OK):
        sys.exit(f"no cnnviz binary at {binary}: build first (scripts/build.sh)")
    checkpoints = sorted(glob.glob(os.path.join(ROOT, "models", "checkpoints", "ckpt_*.pt")))
    if len(checkpoints) < 2:
        sys.exit("models/checkpoints/ckpt_*.pt missing (models/checkpoints/README.txt says how to make them)")
    dataset = ensure_concepts(args.build, args.images)
    work = tempfile.mkdtemp(prefix="compare_bench_")
    print(f"compare of {len(checkpoints)} checkpoints, layers {LAYERS}, {args.images} images of {dataset}; "
          "1 intra-op thread, OMP_WAIT_POLICY=PASSIVE, default decode workers")
    ratios, compare_walls, separate_walls = [], [], []
    try:
        for r in range(args.rounds):
            out = os.path.join(work, f"compare{r}")
            wall_c, peak_c = run("compare", [binary, "compare", "-q", "--models", *checkpoints, "--dataset", dataset,
                                             "--layers", LAYERS, "--actmax-steps", "0", "--out", out])
            walls, peaks = [], []
            for i, checkpoint in enumerate(checkpoints):
                wall, peak = run("dissect", [binary, "dissect", "-q", "--model", checkpoint, "--dataset", dataset,
                                             "--layers", LAYERS, "--out", os.path.join(work, f"dissect{r}_{i}")])
                walls.append(wall)
                peaks.append(peak)
            ratio = sum(walls) / wall_c
            ratios.append(ratio)
            compare_walls.append(wall_c)
            separate_walls.append(sum(walls))
            print(f"  round {r + 1}: compare {wall_c:.1f} s ({peak_c:.0f} MB peak); 5 x dissect {sum(walls):.1f} s "
                  f"({', '.join(f'{w:.1f}' for w in walls)}; largest peak {max(peaks):.0f} MB) -> {ratio:.2f}x; "
                  f"memory {peak_c / max(peaks):.2f}x one dissect run")
        print(f"compare is {statistics.median(ratios):.2f}x faster than {len(checkpoints)} separate dissect runs "
              f"(median of {len(ratios)}; target >= 1.5x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
