#!/usr/bin/python3
"""Network dissection benchmark: `cnnviz dissect` against the plain-Python NetDissect-Lite baseline
(bench/dissect_baseline.py, exact thresholds), as ratios, plus peak memory and agreement.

The comparison is against the baseline's default --tally faithful: NetDissect-Lite's tally loop (a layer
at a time, labels re-read per layer, a Python loop over units with Lite's max > threshold skip and
per-unit upsampling and np.bincount). Cases 1 and 2 also run --tally vectorized (all units of an
image upsampled and tallied at once, labels read once for all layers) as a second Python reference
line; both modes give identical tallies (checked per case: "faithful vs vectorized"). Which of the two
is faster depends on how many (image, unit) pairs Lite's skip leaves: at quantile 0.005 on the synthetic
data it skips most units of deep layers, so the faithful loop is not necessarily the slower one.

    /usr/bin/python3 bench/dissect_bench.py [--build build] [--images 2000] [--quick]

Datasets: models/make_concepts.py --seed 0 into BUILD/bench-data/concepts<N> (reused when present), for
N = --images and, for the memory comparison, 1000 and 4000 (--quick: 200, 100 and 400).
Cases, each run by both tools (the baseline faithful, and vectorized for cases 1 and 2) as subprocesses
with bench_common.ENV (1 intra-op thread, OMP_WAIT_POLICY=PASSIVE), batches of 16:
  1. models/tinycnn.pt, all conv layers (conv1..conv5), N images at 96x96;
  2. resnet18 (random weights, bench_common.ensure_resnet18, 224x224 sidecar), layer4, N images;
  3. case 1 at 1000 and 4000 images: peak RSS against dataset size (cnnviz should stay flat; the
     baseline's memmapped activations are resident while it thresholds and tallies).
Wall time and peak RSS come from /usr/bin/time -f "%e %M" (GNU time; falls back to polling
/proc/PID/status VmHWM when it is missing), so both include process start-up and model loading.

cnnviz: BUILD/apps/cnnviz dissect -q --device cpu --model M --dataset D --layers L1,L2 --out O --batch 16
--activated-area present --union-maps (the baseline's tally rules, so both do the same work),
read from O/report.json ("timings", "layers"[i]{"name", "detectors", "units"[{"unit", "label",
"category", "iou", "threshold"}]}). When the binary or its dissect command is missing, only the
Python side runs.

Agreement (per case): fraction of units whose best label is the same in both tools (units whose best
IoU is 0 in both count as agreeing), how many disagreements are near-ties (the baseline's IoU for
cnnviz's label within 0.005 of its own best), max |IoU difference| of the best IoUs, and max relative
threshold difference. Both are exact-threshold NetDissect, so they should agree closely; remaining
differences come from JPEG decoding and float summation order.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench_common import ENV, ROOT, ensure_resnet18

TINY_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]
NEAR_TIE = 0.005
GNU_TIME = "/usr/bin/time"


# ---------------------------------------------------------------- running and measuring
def measured(command):
    """Run `command`; (returncode, stdout, stderr, wall seconds, peak RSS MB)."""
    if os.access(GNU_TIME, os.X_OK):
        with tempfile.NamedTemporaryFile("r", suffix=".time") as record:
            proc = subprocess.run([GNU_TIME, "-o", record.name, "-f", "%e %M"] + command, env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            fields = record.read().strip().splitlines()[-1].split() if os.path.getsize(record.name) else []
        if len(fields) == 2:
            return proc.returncode, proc.stdout, proc.stderr, float(fields[0]), float(fields[1]) / 1024.0
        return proc.returncode, proc.stdout, proc.stderr, float("nan"), float("nan")
    # Fallback: poll the child's high-water mark (misses growth in its last polling interval).
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, env=ENV, stdout=out, stderr=err, text=True)
        peak_kb = 0
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            peak_kb = max(peak_kb, int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.02)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), wall, peak_kb / 1024.0


def ensure_concepts(build, count):
    dataset = os.path.join(build, "bench-data", f"concepts{count}")
    if not os.path.exists(os.path.join(dataset, "index.csv")):
        os.makedirs(os.path.dirname(dataset), exist_ok=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "make_concepts.py"), "--out", dataset,
                        "--count", str(count), "--seed", "0"], check=True, env=ENV, stdout=subprocess.DEVNULL)
    return dataset


def cnnviz_status(binary):
    """None when `cnnviz dissect` can run, else why not."""
    if not os.access(binary, os.X_OK):
        return f"{binary} does not exist (build cnnviz first)"
    proc = subprocess.run([binary, "dissect", "--help"], env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        return f"{binary} has no working 'dissect' command: {' '.join(proc.stdout.split())[:200]}"
    return None


def run_python(kind, model, dataset, layers, tally="faithful"):
    command = [sys.executable, os.path.join(ROOT, "bench", "dissect_baseline.py"), "--model-kind", kind,
               "--weights", model, "--dataset", dataset, "--layers", ",".join(layers), "--batch", "16",
               "--threads", "1", "--tally", tally, "--all-ious", "--json"]
    rc, out, err, wall, rss = measured(command)
    if rc != 0:
        raise SystemExit(f"dissect_baseline.py failed ({rc}): {err.strip()[-2000:]}")
    result = json.loads(out)
    return {"wall": wall, "rss": rss, "result": result, "layers": result["layers"]}


def run_cnnviz(binary, model, dataset, layers):
    out_dir = tempfile.mkdtemp(prefix="dissect-bench-")
    try:
        command = [binary, "dissect", "-q", "--threads", "1", "--device", "cpu", "--model", model, "--dataset", dataset,
                   "--layers", ",".join(layers), "--out", out_dir, "--batch", "16",
                   # the baseline's tally rules (dissect_baseline.py): same work, comparable labels
                   "--activated-area", "present", "--union-maps"]
        rc, out, err, wall, rss = measured(command)
        if rc != 0:
            print(f"  cnnviz dissect failed ({rc}): {(err or out).strip()[-1000:]}")
            return None
        try:
            with open(os.path.join(out_dir, "report.json"), encoding="utf-8") as handle:
                report = json.load(handle)
        except (OSError, ValueError) as error:
            print(f"  cnnviz dissect wrote no readable report.json: {error}")
            return None
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return {"wall": wall, "rss": rss, "report": report, "layers": cnnviz_layers(report)}


def cnnviz_layers(report):
    """{layer name: {"detectors", "units": {unit: {"label", "category", "iou", "threshold"}}}}, defensively."""
    layers = report.get("layers", [])
    if isinstance(layers, dict):
        layers = [dict(value, name=value.get("name", key)) for key, value in layers.items()]
    parsed = {}
    for position, layer in enumerate(layers):
        if not isinstance(layer, dict):
            continue
        name = layer.get("name", layer.get("layer", str(position)))
        units = {}
        for index, unit in enumerate(layer.get("units", [])):
            if isinstance(unit, dict):
                units[int(unit.get("unit", index))] = unit
        parsed[name] = {"detectors": layer.get("detectors"), "units": units}
    return parsed


# ---------------------------------------------------------------- comparison
def agreement(python, cnnviz):
    """Totals over the layers both tools report, plus the worst units by |IoU difference|."""
    total = agree = near_ties = 0
    max_iou_diff = max_threshold_diff = 0.0
    worst = []
    for name, ours in python["layers"].items():
        theirs = cnnviz["layers"].get(name)
        if theirs is None:
            print(f"  agreement: cnnviz's report has no layer {name!r} (has {sorted(cnnviz['layers'])})")
            continue
        names = ours.get("label_names", [])
        for k, (label, iou, threshold) in enumerate(zip(ours["labels"], ours["ious"], ours["thresholds"])):
            unit = theirs["units"].get(k)
            if unit is None:
                continue
            total += 1
            other_label = str(unit.get("label", ""))
            other_iou = float(unit.get("iou", float("nan")))
            if other_label == label or (iou <= 1e-12 and other_iou <= 1e-12):
                agree += 1
            elif other_label in names and iou - ours["all_ious"][k][names.index(other_label)] <= NEAR_TIE:
                near_ties += 1
            difference = abs(other_iou - iou)
            max_iou_diff = max(max_iou_diff, difference)
            worst.append((difference, name, k, label, iou, other_label, other_iou))
            if "threshold" in unit:
                other_threshold = float(unit["threshold"])
                scale = max(abs(threshold), abs(other_threshold), 1e-12)
                max_threshold_diff = max(max_threshold_diff, abs(other_threshold - threshold) / scale)
    worst.sort(reverse=True)
    return {"units": total, "agree": agree, "near_ties": near_ties, "max_iou_diff": max_iou_diff,
            "max_threshold_rel_diff": max_threshold_diff, "worst": worst[:3]}


def python_modes_agreement(faithful, vectorized):
    """(units with equal best label, units, max |IoU diff| over all units x labels) of two baseline runs."""
    total = equal = 0
    max_diff = 0.0
    for name, ours in faithful["layers"].items():
        theirs = vectorized["layers"].get(name)
        if theirs is None:
            continue
        for k, label in enumerate(ours["labels"]):
            total += 1
            equal += label == theirs["labels"][k]
            row = zip(ours["all_ious"][k], theirs["all_ious"][k])
            max_diff = max([max_diff] + [abs(a - b) for a, b in row])
    return equal, total, max_diff


def detectors(layers, python):
    if python:
        return ", ".join(f"{name} {entry['detectors']}/{entry['units']}" for name, entry in layers.items())
    return ", ".join(f"{name} {entry['detectors']}/{len(entry['units'])}" for name, entry in layers.items())


def python_line(label, python):
    seconds = python["result"]["seconds"]
    labels = f" of which labels {seconds['tally_labels']:.2f}" if "tally_labels" in seconds else ""
    print(f"  {label}: {python['wall']:7.2f} s wall, peak RSS {python['rss']:7.0f} MB  (extract "
          f"{seconds['extract']:.2f}, quantile {seconds['quantile']:.2f}, tally {seconds['tally']:.2f}{labels}); "
          f"detectors {detectors(python['layers'], True)}")


def report_case(title, python, cnnviz, vectorized=None):
    print(f"\n{title}")
    python_line("python faithful (Lite)", python)
    if vectorized is not None:
        python_line("python vectorized     ", vectorized)
        equal, total, max_diff = python_modes_agreement(python, vectorized)
        print(f"  faithful vs vectorized: best label equal for {equal}/{total} units, max |IoU diff| {max_diff:.2g}"
              + ("" if equal == total and max_diff == 0 else "  <-- SHOULD BE IDENTICAL"))
    if cnnviz is None:
        return
    timings = cnnviz["report"].get("timings", {})
    timing_text = ", ".join(f"{key} {value:.2f}" for key, value in timings.items() if isinstance(value, (int, float)))
    print(f"  cnnviz                : {cnnviz['wall']:7.2f} s wall, peak RSS {cnnviz['rss']:7.0f} MB  "
          f"({timing_text}); detectors {detectors(cnnviz['layers'], False)}")
    print(f"  ratio python faithful/cnnviz: time {python['wall'] / cnnviz['wall']:.2f}x, "
          f"peak memory {python['rss'] / cnnviz['rss']:.2f}x")
    if vectorized is not None:
        print(f"  ratio python vectorized/cnnviz: time {vectorized['wall'] / cnnviz['wall']:.2f}x, "
              f"peak memory {vectorized['rss'] / cnnviz['rss']:.2f}x")
    check = agreement(python, cnnviz)
    if check["units"]:
        print(f"  agreement: best label equal for {check['agree']}/{check['units']} units "
              f"({100.0 * check['agree'] / check['units']:.1f}%), {check['near_ties']} of the rest are near-ties "
              f"(<= {NEAR_TIE}); max |IoU diff| {check['max_iou_diff']:.2g}; max threshold rel. diff "
              f"{check['max_threshold_rel_diff']:.2g}")
        for difference, name, k, label, iou, other_label, other_iou in check["worst"]:
            if difference > 0:
                print(f"    {name} unit {k}: python {label} {iou:.4f}, cnnviz {other_label} {other_iou:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--images", type=int, help="dataset size (default 2000; --quick 200)")
    parser.add_argument("--quick", action="store_true", help="small datasets: 200 images, memory at 100 and 400")
    args = parser.parse_args()
    build = os.path.abspath(args.build)
    count = args.images or (200 if args.quick else 2000)
    small, large = (100, 400) if args.quick else (1000, 4000)
    tinycnn = os.path.join(ROOT, "models", "tinycnn.pt")
    resnet = ensure_resnet18(build)
    datasets = {n: ensure_concepts(build, n) for n in sorted({count, small, large})}

    binary = os.path.join(build, "apps", "cnnviz")
    missing = cnnviz_status(binary)
    if missing:
        print(f"NOTE: {missing}; running the Python baseline only.")
    print(f"Network dissection, quantile 0.005 (exact thresholds on both sides), IoU > 0.04, batch 16, "
          f"python tally faithful to NetDissect-Lite (plus vectorized for cases 1-2), "
          f"1 thread, OMP_WAIT_POLICY=PASSIVE; timer: "
          f"{'/usr/bin/time' if os.access(GNU_TIME, os.X_OK) else '/proc VmHWM polling'}")

    results = {}

    def case(kind, model, layers, n):
        key = (kind, n)
        if key not in results:
            python = run_python(kind, model, datasets[n], layers)
            cnnviz = None if missing else run_cnnviz(binary, model, datasets[n], layers)
            results[key] = (python, cnnviz)
        return results[key]

    python, cnnviz = case("tinycnn", tinycnn, TINY_LAYERS, count)
    vectorized = run_python("tinycnn", tinycnn, datasets[count], TINY_LAYERS, "vectorized")
    report_case(f"1. tinycnn, all conv layers ({','.join(TINY_LAYERS)}), {count} images at 96x96", python, cnnviz,
                vectorized)
    python, cnnviz = case("resnet18", resnet, ["layer4"], count)
    vectorized = run_python("resnet18", resnet, datasets[count], ["layer4"], "vectorized")
    report_case(f"2. resnet18 layer4, {count} images at 224x224", python, cnnviz, vectorized)

    for n in (small, large):
        case("tinycnn", tinycnn, TINY_LAYERS, n)
    print("\n3. peak RSS against dataset size, tinycnn all conv layers (MB; python = faithful tally)")
    sizes = sorted({small, count, large})
    python_rss = {n: results[("tinycnn", n)][0]["rss"] for n in sizes}
    print("  images : " + "".join(f"{n:>9}" for n in sizes))
    print("  python : " + "".join(f"{python_rss[n]:9.0f}" for n in sizes)
          + f"   ({large} vs {small}: {python_rss[large] / python_rss[small]:.2f}x)")
    if not missing and all(results[("tinycnn", n)][1] for n in sizes):
        rss = {n: results[("tinycnn", n)][1]["rss"] for n in sizes}
        print("  cnnviz : " + "".join(f"{rss[n]:9.0f}" for n in sizes)
              + f"   ({large} vs {small}: {rss[large] / rss[small]:.2f}x)")
        for n in (small, large):
            python, cnnviz = results[("tinycnn", n)]
            check = agreement(python, cnnviz)
            if check["units"]:
                print(f"  agreement at {n}: {check['agree']}/{check['units']} labels equal, "
                      f"max |IoU diff| {check['max_iou_diff']:.2g}")


if __name__ == "__main__":
    main()
