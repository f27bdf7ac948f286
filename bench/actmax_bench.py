#!/usr/bin/python3
"""Activation-maximization benchmark: cnnviz against the plain-Python loop, as ratios from one run.

    /usr/bin/python3 bench/actmax_bench.py [--build build] [--steps 32] [--quick]

Measures, all at 128x128, fft + decorrelated parameterization, Lucid's standard transforms and
OMP_WAIT_POLICY=PASSIVE for both sides, with the same number of threads on both sides (1 intra-op thread
unless said otherwise):
  1. per-step time at batch 1 (one unit): bench/actmax_baseline.py vs `cnnviz actmax`;
  2. whole-layer throughput (units per minute): all 64 channels of the bundled model's conv3 and
     channels 0-63 of resnet18 layer2, `cnnviz actmax --batch 64` against one unit at a time
     (the Python loop, and cnnviz itself at --batch 1);
  3. truncation's share: the same batched run with --no-truncation (whole network every step, which
     also computes every channel of the layer), and the share of computing each image's own channel
     alone: the batched run with --whole-layer (truncated, every channel of the layer);
  4. part 2 again with every core on both sides (--threads N, default: all cores): Python gets N
     intra-op threads; cnnviz gets --threads N and by default optimizes the batch's parts (4 units
     each) N at a time, one thread each.
One-at-a-time rates are measured on 8 units and are rates (units per minute), so they compare with
the 64-unit batched runs directly.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from bench_common import ENV, ROOT, ensure_resnet18


def env_for(threads):
    return dict(ENV, OMP_NUM_THREADS=str(threads))


def run_cnnviz(binary, model, layer, units, batch, steps, extra=(), threads=1, with_selection=False):
    with tempfile.TemporaryDirectory() as out:
        command = [binary, "actmax", "-q", "--threads", str(threads), "--device", "cpu", "--model", model, "--layer", layer, "--units", units,
                   "--batch", str(batch), "--steps", str(steps), "--size", "128", "--out", out,
                   # the baseline (Lucent's loop) has no redirected ReLU gradient: the same work on both sides
                   "--relu-redirect-steps", "0", *extra]
        subprocess.run(command, check=True, env=env_for(threads))
        with open(os.path.join(out, "report.json")) as handle:
            report = json.load(handle)
    timings = report["timings"]
    if with_selection:
        return timings["ms_per_step"], timings["units_per_minute"], report["selected_channels"]
    return timings["ms_per_step"], timings["units_per_minute"]


def run_python(arch, weights, layer, units, batch, steps, threads=1):
    command = [sys.executable, os.path.join(ROOT, "bench", "actmax_baseline.py"), "--arch", arch, "--layer", layer,
               "--units", units, "--batch", str(batch), "--steps", str(steps), "--size", "128",
               "--threads", str(threads),
               "--json"]
    if weights:
        command += ["--weights-from", weights]
    result = json.loads(subprocess.run(command, check=True, env=env_for(threads), capture_output=True,
                                       text=True).stdout)
    return result["ms_per_step"], result["units_per_minute"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"), help="build folder (default build/)")
    parser.add_argument("--steps", type=int, default=32, help="steps per run (default 32)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for both sides in part 4 (default: all cores; 1 skips part 4)")
    args = parser.parse_args()
    binary = os.path.join(args.build, "apps", "cnnviz")
    resnet = ensure_resnet18(args.build)
    tiny = os.path.join(ROOT, "models", "tinycnn.pt")
    cases = [("tinycnn", tiny, None, "conv3", "conv5"), ("resnet18", resnet, resnet, "layer2", "layer2")]
    steps = args.steps
    print(f"activation maximization, 128x128, fft+decorrelate, standard transforms, {steps} steps, "
          f"1 thread (part 4: {args.threads}), OMP_WAIT_POLICY=PASSIVE")
    for arch, model, weights, layer, single_layer in cases:
        py_ms, _ = run_python(arch, weights, single_layer, "3", 1, steps)
        cpp_ms, _ = run_cnnviz(binary, model, single_layer, "3", 1, steps)
        print(f"\n[{arch}] 1. per step, one unit of {single_layer}: python {py_ms:.1f} ms, cnnviz {cpp_ms:.1f} ms "
              f"-> {py_ms / cpp_ms:.2f}x")
        _, py_rate = run_python(arch, weights, layer, "0-7", 1, steps)
        _, one_rate = run_cnnviz(binary, model, layer, "0-7", 1, steps)
        _, batch_rate, selected = run_cnnviz(binary, model, layer, "0-63", 64, steps, with_selection=True)
        _, full_rate = run_cnnviz(binary, model, layer, "0-63", 64, steps, ["--no-truncation"])
        _, whole_layer_rate = run_cnnviz(binary, model, layer, "0-63", 64, steps, ["--whole-layer"])
        print(f"[{arch}] 2. whole layer {layer}, units/minute: python one-at-a-time {py_rate:.1f}, "
              f"cnnviz one-at-a-time {one_rate:.1f}, cnnviz batch 64 {batch_rate:.1f}")
        print(f"          batched vs python one-at-a-time {batch_rate / py_rate:.2f}x, "
              f"vs cnnviz one-at-a-time {batch_rate / one_rate:.2f}x")
        if selected:
            selection = (f"computing every channel of {layer} (--whole-layer) {whole_layer_rate:.1f} units/minute "
                         f"-> each image's own channel alone gives {batch_rate / whole_layer_rate:.2f}x of it")
        else:
            selection = (f"{layer} does not allow computing each image's own channel alone (both runs compute "
                         f"every channel: {batch_rate:.1f} and {whole_layer_rate:.1f} units/minute)")
        print(f"[{arch}] 3. truncation: batch 64 without it {full_rate:.1f} units/minute -> truncation gives "
              f"{batch_rate / full_rate:.2f}x of the {batch_rate / py_rate:.2f}x; {selection}")
        if args.threads > 1:
            t = args.threads
            _, py_rate_t = run_python(arch, weights, layer, "0-7", 1, steps, threads=t)
            _, batch_rate_t = run_cnnviz(binary, model, layer, "0-63", 64, steps, threads=t)
            print(f"[{arch}] 4. whole layer with {t} threads on both sides, units/minute: python one-at-a-time "
                  f"{py_rate_t:.1f}, cnnviz batch 64 ({t} threads on its parts) {batch_rate_t:.1f} -> "
                  f"{batch_rate_t / py_rate_t:.2f}x (cnnviz {batch_rate_t / batch_rate:.2f}x its 1-thread rate, "
                  f"python {py_rate_t / py_rate:.2f}x)")


if __name__ == "__main__":
    main()
