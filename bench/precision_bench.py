#!/usr/bin/python3
"""Reduced precision benchmark: `--precision bf16` against fp32 in the same run, as ratios, with the
agreement of what each computes.

    /usr/bin/python3 bench/precision_bench.py [--build build] [--images 1000] [--steps 64] [--rounds 2]
                                              [--threads 1] [--trained PATH] [--quick] [--cases 1,2,3,4]

The CPU's instruction set (model name; avx512f, avx512_bf16, amx_bf16 from /proc/cpuinfo) is printed
first: bf16 only runs where the CPU has native bfloat16 (cnnviz refuses it elsewhere).

Cases, each run with both precisions alternately (--rounds rounds; medians reported), as subprocesses
with OMP_WAIT_POLICY=PASSIVE and --threads intra-op threads on both sides:
  1. The network's share (BUILD/bench/probe_bench --precisions fp32,bf16): resnet18 (random weights,
     bench_common.ensure_resnet18, 224 px)
       - scan: the forward pass of a dataset scan to layer4, batch 16 (inference view, channels-last);
       - optimization: forward+backward to layer3 as activation maximization runs it, batch 4 (the part
         a CPU optimizes at once) and 16.
  2. Dissection end to end: `cnnviz dissect` of resnet18 layer4 on --images images of the make_concepts
     set at 224 px, batch 16: wall time (process start to exit), the threshold pass, and agreement.
  3. Activation maximization end to end: `cnnviz actmax` of resnet18 layer3 units 0-15, batch 16, 224 px,
     --steps steps: wall time, ms per step, and agreement of the final objectives (evaluated with the
     float32 network on both sides) set against fp32 with another seed.
  4. Agreement of dissection on trained models (one round, not timed): the bundled model (conv1-conv5)
     and a trained torchvision resnet18 (--trained, default BUILD/bench-data/resnet18_concepts.pt from
     models/train_torchvision.py; skipped when missing), layer2-layer4, on the same images.

Agreement of two dissections: share of units with the same best label (units with no label in both
count as agreeing), how many of the others are near-ties (the fp32 IoU of bf16's label within 0.005 of
fp32's best, from --save-arrays' iou.npy), the largest |IoU difference| over every (unit, label), and
detectors per category on both sides.
--quick: 200 images, 16 steps, one round (a smoke test of the script, not a measurement).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench_common import ROOT, ensure_resnet18
from dissect_bench import ensure_concepts

NEAR_TIE = 0.005


def cpu_line():
    model, flags = "?", set()
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return model, shown, "avx512_bf16" in flags or "amx_bf16" in flags


def run(command, env):
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr.strip()[-2000:]}")
    return proc.stdout, wall


def load(folder):
    with open(os.path.join(folder, "report.json"), encoding="utf-8") as handle:
        return json.load(handle)


def ratio(a, b):
    return a / b if b > 0 else float("nan")


# ---------------------------------------------------------------- agreement of two dissections
def dissection_agreement(exact_dir, reduced_dir):
    import numpy as np
    exact, reduced = load(exact_dir), load(reduced_dir)
    lines = []
    for le, lr in zip(exact["layers"], reduced["layers"]):
        ue = {u["unit"]: u for u in le["units"]}
        ur = {u["unit"]: u for u in lr["units"]}
        folder = os.path.dirname(le["tally"])
        iou_e = np.load(os.path.join(exact_dir, folder, "iou.npy"))
        iou_r = np.load(os.path.join(reduced_dir, folder, "iou.npy"))
        names = {l["name"]: l["number"] for l in exact["labels"]}
        same = ties = 0
        det_same = det_total = 0
        for unit, a in ue.items():
            b = ur[unit]
            agree = a["label"] == b["label"]
            same += agree
            if a["detector"]:
                det_total += 1
                det_same += agree
            if not agree and b["label"]:
                if iou_e[unit].max() - iou_e[unit][names[b["label"]]] <= NEAR_TIE:
                    ties += 1
        total = len(ue)
        cats = sorted(le["categories"])
        per_cat = ", ".join(f"{c} {le['categories'][c]['detectors']}/{lr['categories'][c]['detectors']}" for c in cats)
        lines.append(f"    {le['display']:<8} same label {same}/{total} ({100.0 * same / total:.1f}%), "
                     f"of fp32's detectors {det_same}/{det_total}; near-ties among the rest {ties}/{total - same}; "
                     f"max |IoU diff| {np.abs(iou_e - iou_r).max():.4f}; detectors fp32/bf16 {le['detectors']}/"
                     f"{lr['detectors']} ({per_cat})")
    return lines


def overall(exact_dir, reduced_dir):
    exact, reduced = load(exact_dir), load(reduced_dir)
    same = total = 0
    for le, lr in zip(exact["layers"], reduced["layers"]):
        labels = {u["unit"]: u["label"] for u in lr["units"]}
        same += sum(u["label"] == labels[u["unit"]] for u in le["units"])
        total += len(le["units"])
    return f"    all layers: same label {same}/{total} ({100.0 * same / total:.1f}%)"


def dissect(binary, model, dataset, layers, images, precision, out, env, arrays=False):
    command = [binary, "-q", "--device", "cpu", "dissect", "--model", model, "--dataset", dataset, "--layers",
               ",".join(layers), "--max-images", str(images), "--batch", "16", "--precision", precision, "--out", out]
    if arrays:
        command.append("--save-arrays")
    _, wall = run(command, env)
    return wall, load(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trained", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", default="1,2,3,4", help="which cases to run (default all)")
    args = parser.parse_args()
    cases = {int(c) for c in args.cases.split(",")}
    if args.quick:
        args.images, args.steps, args.rounds = 200, 16, 1
    build = os.path.abspath(args.build)
    binary = os.path.join(build, "apps", "cnnviz")
    probe_bench = os.path.join(build, "bench", "probe_bench")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(args.threads))

    model_name, flags, native = cpu_line()
    print(f"CPU: {model_name}; flags: {' '.join(flags) or 'none of avx2/avx512'}")
    print(f"threads: {args.threads} intra-op, OMP_WAIT_POLICY=PASSIVE, both precisions alike; rounds {args.rounds}")
    if not native:
        sys.exit("this CPU has no native bfloat16 (avx512_bf16 / amx_bf16): cnnviz refuses --precision bf16 here")
    resnet = ensure_resnet18(build)
    concepts = ensure_concepts(build, max(args.images, 200))
    work = tempfile.mkdtemp(prefix="precision_bench_")

    if 1 in cases:
        network_share(args, probe_bench, resnet, env)
    if 2 in cases:
        dissection_case(args, binary, resnet, concepts, work, env)
    if 3 in cases:
        actmax_case(args, binary, resnet, work, env)
    if 4 in cases:
        trained_case(args, binary, build, concepts, work, env)
    print(f"\noutputs kept in {work}")


def network_share(args, probe_bench, resnet, env):
    print("\n1. the network's share (probe_bench), resnet18 at 224 px, median over rounds")
    repeats = "3" if args.quick else "5"
    for extra, layer, batch in ((["--inference"], "layer4", "16"), ([], "layer3", "4"), ([], "layer3", "16")):
        out, _ = run([probe_bench, "--model", resnet, "--size", "224", "--batch", batch, "--threads", str(args.threads),
                      "--repeats", repeats, "--rounds", str(max(2, args.rounds)), "--layers", layer,
                      "--precisions", "fp32,bf16"] + extra, env)
        lines = out.strip().splitlines()
        kind = "scan forward" if extra else "forward+backward"
        print(f"   {kind:<17} {layer} batch {batch:>2}: {lines[-1].split(None, 1)[1]}   (fp32 ms, bf16 ms, ratio)")



def dissection_case(args, binary, resnet, concepts, work, env):
    print(f"\n2. dissection end to end: resnet18 layer4, {args.images} images at 224 px, batch 16")
    walls = {"fp32": [], "bf16": []}
    passes = {"fp32": [], "bf16": []}
    for r in range(args.rounds):
        for precision in ("fp32", "bf16"):
            wall, report = dissect(binary, resnet, concepts, ["layer4"], args.images, precision,
                                   os.path.join(work, f"dissect_{precision}"), env, arrays=(r == 0))
            walls[precision].append(wall)
            passes[precision].append(report["timings"]["threshold_pass_seconds"])
            print(f"   round {r + 1} {precision}: {wall:.1f} s (threshold pass {passes[precision][-1]:.1f} s)")
        if r == 0:
            agreement = dissection_agreement(os.path.join(work, "dissect_fp32"), os.path.join(work, "dissect_bf16"))
    wf, wb = statistics.median(walls["fp32"]), statistics.median(walls["bf16"])
    pf, pb = statistics.median(passes["fp32"]), statistics.median(passes["bf16"])
    print(f"   median: end to end {wf:.1f} s fp32 / {wb:.1f} s bf16 = {ratio(wf, wb):.2f}x; threshold pass "
          f"(decode + forward + quantiles) {ratio(pf, pb):.2f}x")
    print("   agreement (random weights: labels are weak, near-ties common):")
    print("\n".join(agreement))



def actmax_case(args, binary, resnet, work, env):
    print(f"\n3. activation maximization end to end: resnet18 layer3 units 0-15, batch 16, 224 px, {args.steps} steps")
    walls = {"fp32": [], "bf16": []}
    steps = {"fp32": [], "bf16": []}
    base = [binary, "-q", "--device", "cpu", "--threads", str(args.threads), "actmax", "--model", resnet, "--layer",
            "layer3", "--units", "0-15", "--batch", "16", "--size", "224", "--steps", str(args.steps)]
    for r in range(args.rounds):
        for precision in ("fp32", "bf16"):
            out = os.path.join(work, f"actmax_{precision}")
            _, wall = run(base + ["--precision", precision, "--out", out], env)
            report = load(out)
            walls[precision].append(wall)
            steps[precision].append(report["timings"]["ms_per_step"])
            print(f"   round {r + 1} {precision}: {wall:.1f} s ({steps[precision][-1]:.0f} ms per step)")
    out = os.path.join(work, "actmax_seed1")
    run(base[:1] + ["--seed", "1"] + base[1:] + ["--precision", "fp32", "--out", out], env)
    wf, wb = statistics.median(walls["fp32"]), statistics.median(walls["bf16"])
    sf, sb = statistics.median(steps["fp32"]), statistics.median(steps["bf16"])
    print(f"   median: end to end {wf:.1f} s / {wb:.1f} s = {ratio(wf, wb):.2f}x; per step {sf:.0f} / {sb:.0f} ms = "
          f"{ratio(sf, sb):.2f}x")
    exact = [u["final_value"] for u in load(os.path.join(work, "actmax_fp32"))["units"]]
    for name in ("bf16", "seed1"):
        other = [u["final_value"] for u in load(os.path.join(work, f"actmax_{name}"))["units"]]
        diffs = sorted(abs(b - a) / abs(a) for a, b in zip(exact, other) if a != 0)
        label = "bf16, seed 0" if name == "bf16" else "fp32, seed 1"
        print(f"   final objectives ({label}) against fp32 seed 0: mean ratio {sum(other) / sum(exact):.3f}, "
              f"per unit |difference| median {100 * statistics.median(diffs):.1f}%, max {100 * diffs[-1]:.1f}%")



def trained_case(args, binary, build, concepts, work, env):
    print(f"\n4. dissection agreement on trained models, {args.images} images (one round)")
    tiny = os.path.join(ROOT, "models", "tinycnn.pt")
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5"]
    for precision in ("fp32", "bf16"):
        dissect(binary, tiny, concepts, layers, args.images, precision, os.path.join(work, f"tiny_{precision}"), env, True)
    print("   bundled model (tinycnn, 96 px):")
    print("\n".join(dissection_agreement(os.path.join(work, "tiny_fp32"), os.path.join(work, "tiny_bf16"))))
    print(overall(os.path.join(work, "tiny_fp32"), os.path.join(work, "tiny_bf16")))
    trained = args.trained or os.path.join(build, "bench-data", "resnet18_concepts.pt")
    if os.path.exists(trained):
        for precision in ("fp32", "bf16"):
            dissect(binary, trained, concepts, ["layer2", "layer3", "layer4"], args.images, precision,
                    os.path.join(work, f"trained_{precision}"), env, True)
        print(f"   trained torchvision resnet18 ({os.path.basename(trained)}):")
        print("\n".join(dissection_agreement(os.path.join(work, "trained_fp32"), os.path.join(work, "trained_bf16"))))
        print(overall(os.path.join(work, "trained_fp32"), os.path.join(work, "trained_bf16")))
    else:
        print(f"   trained resnet18: {trained} missing (make it with models/train_torchvision.py); skipped")


if __name__ == "__main__":
    main()
