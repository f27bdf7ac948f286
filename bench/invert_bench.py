#!/usr/bin/python3
"""Network-inversion benchmark: `cnnviz invert` against the plain-Python loop, and decoder-training
throughput of `cnnviz upconv train` with and without the feature cache, as ratios from one run.

    /usr/bin/python3 bench/invert_bench.py [--build build] [--steps 200] [--epochs 2] [--images 300] [--quick]

Both sides run as subprocesses with bench_common.ENV: 1 intra-op thread (OMP_NUM_THREADS=1, and the
baseline's torch.set_num_threads(1)) and OMP_WAIT_POLICY=PASSIVE.

Inversion (resnet18 with random weights from bench_common.ensure_resnet18, 224x224, layer2; a smooth
synthetic 224x224 test picture, coloured Gaussian blobs on a gradient, written as PNG to a temporary
folder and given to both sides):
  a. `cnnviz invert --steps S` with the automatic learning rate, to learn the rate it picks (2/L) and
     the TV weight for the layer (report.json: reconstructions[0].learning_rate, .lambda_tv);
  b. bench/invert_baseline.py with that --lr and --lambda-tv for S steps: its final relative feature
     error e_py and the seconds of its step loop;
  c. `cnnviz invert --lr <same> --steps S --target-error e_py`: seconds (report.json
     timings.optimize_seconds: target pass, steps and final evaluation, without model loading) and
     iterations to reach e_py; once more with --no-truncation (whole network every step);
  d. ratios: Python seconds / cnnviz seconds to the same error, and the same without truncation; also
     the same work both ways (`cnnviz invert --lr <same> --steps S`, no target, against b).
The Python and cnnviz starts are the same numbers (same seed and generator), so a's and b's error
curves (same lr) should coincide; the script prints both side by side.
Caveat: the relative feature error is not monotone in the step (momentum overshoots, and the priors pull
it back up late in the run), so --target-error e_py can stop cnnviz early, at an earlier dip below the
Python loop's FINAL error, with a higher objective. The script therefore also applies cnnviz's stopping
rule to the Python loop's own per-step curve (the first step where it gets to e_py; its time estimated
at the loop's mean step time) and prints the equal-work ratio.

Decoder training: `cnnviz upconv train` for models/tinycnn.pt layer conv3 and for resnet18 layer3 at
112x112 (where the model's forward is a real share of a step), E epochs, on N synthetic
images (models/make_concepts.py --count N --seed 0, into BUILD/bench-data/concepts<N>, reused when
present), once with the default feature cache and once with --cache-mb 0; images/s from its final log
line. That rate counts epoch time only: the cached run computes the features once before the first
epoch (the "features cached (X s)" figure), which the script also prints, with both runs' wall times.

--quick: S = 20, 1 epoch, 100 images (a smoke test; the ratios mean little).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

from bench_common import ENV, ROOT, ensure_resnet18

SIZE = 224
LAYER = "layer2"


def make_test_image(path, size=SIZE, seed=0):
    """A smooth synthetic picture: a diagonal colour gradient with a few coloured Gaussian blobs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    image = np.stack([0.25 + 0.5 * x, 0.3 + 0.4 * y, 0.7 - 0.4 * (x + y) / 2], axis=-1)
    for _ in range(5):
        cy, cx = rng.uniform(0.15, 0.85, size=2)
        radius = rng.uniform(0.06, 0.18)
        colour = rng.uniform(0.0, 1.0, size=3)
        weight = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius ** 2))[..., None]
        image = image * (1 - weight) + colour * weight
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)


def run_cnnviz_invert(binary, model, image, steps, extra=()):
    with tempfile.TemporaryDirectory() as out:
        command = [binary, "invert", "-q", "--threads", "1", "--device", "cpu", "--model", model, "--image", image,
                   "--layer", LAYER, "--steps", str(steps), "--paper", "--out", out, *extra]
        subprocess.run(command, check=True, env=ENV)
        with open(os.path.join(out, "report.json")) as handle:
            report = json.load(handle)
    record = report["reconstructions"][0]
    return {"seconds": report["timings"]["optimize_seconds"], "lr": record["learning_rate"],
            "lambda_tv": record["lambda_tv"], "iterations": record["iterations"],
            "feature_error": record["feature_error"], "curve": record["curve"]}


def run_python(weights, image, steps, lr, lambda_tv):
    command = [sys.executable, os.path.join(ROOT, "bench", "invert_baseline.py"), "--arch", "resnet18",
               "--weights-from", weights, "--layer", LAYER, "--image", image, "--size", str(SIZE),
               "--steps", str(steps), "--lr", repr(lr), "--lambda-tv", repr(lambda_tv), "--threads", "1",
               "--json"]
    return json.loads(subprocess.run(command, check=True, env=ENV, capture_output=True, text=True).stdout)


def ensure_concepts(build, count):
    path = os.path.join(build, "bench-data", f"concepts{count}")
    if not os.path.exists(os.path.join(path, "index.csv")):
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "make_concepts.py"), "--out", path,
                        "--count", str(count), "--seed", "0"], check=True, env=ENV, stdout=subprocess.DEVNULL)
    return path


LOG_LINE = re.compile(r"features (cached|recomputed every batch) \(([\d.]+) s\), ([\d.]+) images/s; "
                      r"wrote .* in ([\d.]+) s")


def run_upconv(binary, model, layer, dataset, epochs, extra=()):
    with tempfile.TemporaryDirectory() as out:
        command = [binary, "upconv", "train", "--threads", "1", "--device", "cpu", "--model", model,
                   "--layer", layer, "--dataset", dataset, "--epochs", str(epochs),
                   "--out", os.path.join(out, "decoder.pt"), *extra]
        completed = subprocess.run(command, check=True, env=ENV, capture_output=True, text=True)
    lines = [line for line in completed.stderr.splitlines() if "images/s" in line]
    if not lines:
        raise SystemExit(f"invert_bench.py: error: no 'images/s' line in the output of {' '.join(command)}:\n"
                         f"{completed.stderr}")
    match = LOG_LINE.search(lines[-1])
    if not match:
        raise SystemExit(f"invert_bench.py: error: cannot parse {lines[-1]!r}")
    return {"mode": match.group(1), "feature_seconds": float(match.group(2)),
            "images_per_second": float(match.group(3)), "wall_seconds": float(match.group(4)), "line": lines[-1]}


def error_at(curve, step):
    """The recorded error at `step`, or None."""
    for s, e in zip(curve["steps"], curve["feature_error"]):
        if s == step:
            return e
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"), help="build folder (default build/)")
    parser.add_argument("--steps", type=int, default=200, help="inversion steps S (default 200)")
    parser.add_argument("--epochs", type=int, default=2, help="decoder training epochs (default 2)")
    parser.add_argument("--images", type=int, default=300, help="decoder training images (default 300)")
    parser.add_argument("--quick", action="store_true", help="S = 20, 1 epoch, 100 images (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.epochs, args.images = 20, 1, 100
    binary = os.path.join(args.build, "apps", "cnnviz")
    resnet = ensure_resnet18(args.build)
    steps = args.steps

    print("threads: 1 intra-op thread on both sides (OMP_NUM_THREADS=1, baseline torch.set_num_threads(1)), "
          "OMP_WAIT_POLICY=PASSIVE")
    print(f"\n[inversion] resnet18 (random weights) {LAYER}, {SIZE}x{SIZE}, {steps} steps, synthetic blob image")
    with tempfile.TemporaryDirectory() as folder:
        image = os.path.join(folder, "blobs.png")
        make_test_image(image)
        auto = run_cnnviz_invert(binary, resnet, image, steps)
        lr, lambda_tv = auto["lr"], auto["lambda_tv"]
        print(f"a. cnnviz auto lr: {lr:.6g} (2/L), lambda_tv {lambda_tv:g}; {steps} steps -> error "
              f"{auto['feature_error']:.4f} in {auto['seconds']:.2f} s (includes the power iteration)")
        py = run_python(resnet, image, steps, lr, lambda_tv)
        e_py = py["feature_error"]
        print(f"b. python, same lr: {steps} steps -> error {e_py:.4f}, step loop {py['seconds']:.2f} s "
              f"({py['ms_per_step']:.1f} ms/step)")
        same = run_cnnviz_invert(binary, resnet, image, steps, ["--lr", repr(lr)])
        fast = run_cnnviz_invert(binary, resnet, image, steps, ["--lr", repr(lr), "--target-error", repr(e_py)])
        full = run_cnnviz_invert(binary, resnet, image, steps,
                                 ["--lr", repr(lr), "--target-error", repr(e_py), "--no-truncation"])
    for name, run in (("c. cnnviz", fast), ("   cnnviz --no-truncation", full)):
        reached = "reached" if run["feature_error"] <= e_py else "NOT reached"
        print(f"{name}: target {e_py:.4f} {reached} after {run['iterations']} iterations, final error "
              f"{run['feature_error']:.4f}, {run['seconds']:.2f} s")
    if fast["feature_error"] > e_py:
        print("   (cnnviz did not get to the Python error within S steps: the ratios below are for S steps each)")

    # The same stopping rule applied to the Python curve: first k (updates done) with error <= e_py.
    py_iterations = next(k for k, e in enumerate(py["step_errors"] + [e_py]) if e <= e_py)
    note = "; the error is not monotone in the step" if py_iterations < steps else ""
    print(f"   python's own curve first gets to {e_py:.4f} after {py_iterations} updates "
          f"(min error {min(py['step_errors'] + [e_py]):.4f}){note}")

    print("   error curves at the same lr (cnnviz run a, python b; error of the u a step starts from):")
    print("     step   cnnviz   python")
    every = max(10, steps // 8 // 10 * 10)
    for s, e in zip(py["curve"]["steps"], py["curve"]["feature_error"]):
        if s == 1 or s % every == 0 or s == steps:
            c = error_at(auto["curve"], s)
            print(f"     {s:4d}   {c:.4f}   {e:.4f}" if c is not None else f"     {s:4d}      -     {e:.4f}")
    print(f"    final   {auto['feature_error']:.4f}   {e_py:.4f}")

    ratio, ratio_full = py["seconds"] / fast["seconds"], py["seconds"] / full["seconds"]
    print("d. seconds to the same error (cnnviz: timings.optimize_seconds of each run's report.json, which also "
          "counts the target pass and final evaluation; python: its step loop only):")
    print(f"   python {py['seconds']:.2f} s ({steps} steps), cnnviz {fast['seconds']:.2f} s ({fast['iterations']} "
          f"iterations) -> {ratio:.2f}x")
    print(f"   without truncation cnnviz {full['seconds']:.2f} s -> {ratio_full:.2f}x "
          f"(truncation gives {full['seconds'] / fast['seconds']:.2f}x of the {ratio:.2f}x)")
    py_to_target = py["seconds"] * py_iterations / steps
    if py_iterations < steps:
        print(f"   python stopped by the same rule (estimate: {py_iterations} of its steps at its mean step time) "
              f"{py_to_target:.2f} s -> {py_to_target / fast['seconds']:.2f}x")
    print(f"   same work, {steps} steps each at the same lr, no target: python {py['seconds']:.2f} s, cnnviz "
          f"{same['seconds']:.2f} s -> {py['seconds'] / same['seconds']:.2f}x "
          f"(per step: python {py['ms_per_step']:.1f} ms, cnnviz {1000 * same['seconds'] / steps:.1f} ms)")

    dataset = ensure_concepts(args.build, args.images)
    cases = [("models/tinycnn.pt conv3 (96x96)", os.path.join(ROOT, "models", "tinycnn.pt"), "conv3", []),
             ("resnet18 layer3 at 112x112", resnet, "layer3", ["--input-size", "112"])]
    for title, model, layer, extra in cases:
        print(f"\n[decoder training] {title}, {args.epochs} epoch(s), {args.images} synthetic images "
              f"(make_concepts --seed 0, 10% held out), batch 32")
        cached = run_upconv(binary, model, layer, dataset, args.epochs, extra)
        uncached = run_upconv(binary, model, layer, dataset, args.epochs, [*extra, "--cache-mb", "0"])
        for name, run in (("default cache", cached), ("--cache-mb 0", uncached)):
            print(f"e. {name}: {run['images_per_second']:.0f} images/s (features {run['mode']}, "
                  f"{run['feature_seconds']:.1f} s before the epochs; wall {run['wall_seconds']:.1f} s)")
        print(f"   images/s ratio cached / uncached: "
              f"{cached['images_per_second'] / uncached['images_per_second']:.2f}x (epoch time only); "
              f"wall time ratio {uncached['wall_seconds'] / cached['wall_seconds']:.2f}x")

if __name__ == "__main__":
    main()
