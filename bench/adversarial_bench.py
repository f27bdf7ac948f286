#!/usr/bin/python3
"""Adversarial-attack benchmark: `cnnviz adversarial` against the plain-Python PGD loop, as ratios.

    /usr/bin/python3 bench/adversarial_bench.py [--build build] [--rounds 3]
        [--images-per-minute-images 200] [--skip-folder]

Model: resnet18 (random weights, exported by models/export_torchvision.py with a 224 px sidecar into
BUILD/bench-data/resnet18.pt, bench_common.ensure_resnet18); images: the first 16 of a generated
concept dataset (models/make_concepts.py --seed 0, Broden format, BUILD/bench-data/concepts<N>, N =
max(1000, --images-per-minute-images), reused when present), resized to 224x224, pixels in [0, 1].
Both sides: 1 intra-op thread (cnnviz --threads 1, Python torch.set_num_threads(1)), CPU,
OMP_NUM_THREADS=1 and OMP_WAIT_POLICY=PASSIVE (bench_common.ENV).

Measured:
  1. per-step seconds of L-inf PGD, eps 8/255, 10 steps of 2.5 eps / 10, random start, one batch of
     16 images, untargeted (labels = the clean prediction):
     - cnnviz: `cnnviz adversarial --model resnet18.pt --images D --max-images 32 --batch 16
       --attack pgd --norm linf --epsilon 8/255 --steps 10 --inspect none --inversion-layers none`,
       report.json timings.batch_attack_seconds[1] / attack_steps: the second batch's attack wall
       time (one no-grad clean forward, the 10 forward+backward steps and one no-grad final forward).
       The first batch also compiles the view, generates oneDNN's kernels and grows the heap (about
       2.3 s), which the baseline does in its untimed warm-up step;
     - Python: bench/adversarial_baseline.py (eager torchvision resnet18 with the same weights,
       normalization inside the forward, torch.autograd.grad of the summed cross-entropy), timed the
       same way (the same three parts per batch, time.perf_counter; decoding and model loading are
       outside on both sides), with one untimed warm-up step;
     the two sides alternate (--rounds rounds, the first side switching each round), each side's
     median is reported, and the ratio python / cnnviz ("cnnviz is X.XXx faster per step"; target
     >= 1.3x). The machine's cores are shared and noisy: read the per-round numbers too.
  2. (unless --skip-folder) the folder mode's throughput, summary.images_per_minute (the whole
     command, every stage) of `cnnviz adversarial --model models/tinycnn.pt --images D --max-images
     N` with the other options at their defaults (PGD, unit changes of the inspected layers and
     inversions of the example image), and once more with --inspect none --inversion-layers none
     (the attack and the per-layer divergences alone).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from bench_common import ENV, ROOT, ensure_resnet18
from dissect_bench import ensure_concepts

PROG = "adversarial_bench.py"
IMAGES = 16
BATCH = 16
STEPS = 10
EPSILON = "8/255"
THREADS = 1
ATTACK = ["--attack", "pgd", "--norm", "linf", "--epsilon", EPSILON, "--steps", str(STEPS)]
ATTACK_ALONE = ["--inspect", "none", "--inversion-layers", "none"]


def fail(message):
    sys.stderr.write(f"{PROG}: error: {' '.join(str(message).split())}\n")
    sys.exit(1)


def last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def cnnviz_binary(build):
    """BUILD/apps/cnnviz (where apps/CMakeLists.txt's executable lands), or BUILD/apps/cnnviz/cnnviz."""
    path = os.path.join(build, "apps", "cnnviz")
    if os.path.isdir(path):
        path = os.path.join(path, "cnnviz")
    return path


def check_cnnviz(binary):
    """Exits with a one-line error unless `cnnviz adversarial` can run."""
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        fail(f"{binary} does not exist (build cnnviz first, e.g. scripts/build.sh)")
    proc = subprocess.run([binary, "adversarial", "--help"], env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        fail(f"{binary} has no working 'adversarial' command: {last_line(proc.stdout)}")


def shown(path):
    """path relative to the repository when it is inside it, else as it is."""
    relative = os.path.relpath(path, ROOT)
    return path if relative.startswith("..") else relative


def run_cnnviz(binary, model, dataset, max_images, extra):
    """report.json of one `cnnviz adversarial` run on the first max_images images of dataset."""
    with tempfile.TemporaryDirectory(prefix="adversarial-bench-") as out:
        command = [binary, "adversarial", "-q", "--threads", str(THREADS), "--device", "cpu", "--model", model,
                   "--images", dataset, "--max-images", str(max_images), "--out", out, *extra]
        proc = subprocess.run(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            fail(f"cnnviz adversarial exited with {proc.returncode}: {last_line(proc.stderr or proc.stdout)}")
        with open(os.path.join(out, "report.json"), encoding="utf-8") as handle:
            return json.load(handle)


def cnnviz_step(binary, model, dataset):
    """Seconds per step of the second batch: the first also compiles the view, generates oneDNN's kernels
    and grows the heap (2.3 s of 11.5 s measured), which the baseline does in its untimed warm-up step."""
    report = run_cnnviz(binary, model, dataset, 2 * IMAGES, ["--batch", str(BATCH), *ATTACK, *ATTACK_ALONE])
    timings, summary = report["timings"], report["summary"]
    if timings.get("attack_steps") != STEPS:
        fail(f"cnnviz report.json has attack_steps {timings.get('attack_steps')}, expected {STEPS}")
    batches = timings["batch_attack_seconds"]
    if len(batches) != 2:
        fail(f"cnnviz report.json has {len(batches)} batches, expected 2")
    return batches[1] / STEPS, summary["success_rate"], summary["images"]


def python_step(model, dataset):
    command = [sys.executable, os.path.join(ROOT, "bench", "adversarial_baseline.py"), "--model-file", model,
               "--dataset", dataset, "--images", str(IMAGES), "--batch", str(BATCH), "--steps", str(STEPS),
               "--epsilon", EPSILON, "--threads", str(THREADS), "--json"]
    proc = subprocess.run(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        fail(f"adversarial_baseline.py exited with {proc.returncode}: {last_line(proc.stderr)}")
    result = json.loads(proc.stdout)
    return result["seconds_per_step"], result["success_rate"], result["images"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"), help="build folder (default build/)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each side (default 3)")
    parser.add_argument("--images-per-minute-images", type=int, default=200, metavar="N",
                        help="images of the folder-mode runs on the bundled model (default 200)")
    parser.add_argument("--skip-folder", action="store_true", help="skip part 2 (folder-mode images per minute)")
    args = parser.parse_args()
    if args.rounds < 1 or args.images_per_minute_images < 1:
        parser.error("--rounds and --images-per-minute-images must be positive")
    return args


def main():
    args = parse_args()
    build = os.path.abspath(args.build)
    resnet = ensure_resnet18(build)
    dataset = ensure_concepts(build, max(1000, args.images_per_minute_images))
    binary = cnnviz_binary(build)
    check_cnnviz(binary)

    print(f"adversarial PGD, L-inf eps {EPSILON}, {STEPS} steps, random start, resnet18 224x224, {IMAGES} images "
          f"of {shown(dataset)} in batches of {BATCH}")
    print(f"threads: {THREADS} intra-op on both sides (cnnviz --threads {THREADS}, python "
          f"torch.set_num_threads({THREADS})), OMP_NUM_THREADS={ENV['OMP_NUM_THREADS']}, "
          f"OMP_WAIT_POLICY={ENV['OMP_WAIT_POLICY']}, device cpu; {os.cpu_count()} cores visible")
    sides = {"python": lambda: python_step(resnet, dataset), "cnnviz": lambda: cnnviz_step(binary, resnet, dataset)}
    per_step = {"python": [], "cnnviz": []}
    success = {}
    for round_index in range(args.rounds):
        order = ("python", "cnnviz") if round_index % 2 == 0 else ("cnnviz", "python")
        measured = {}
        for side in order:
            seconds, rate, images = sides[side]()
            expected = 2 * IMAGES if side == "cnnviz" else IMAGES  # cnnviz: the second batch is timed
            if images != expected:
                fail(f"{side} attacked {images} images, expected {expected}")
            per_step[side].append(seconds)
            success[side] = rate
            measured[side] = seconds
        print(f"  round {round_index + 1} ({order[0]} first): python {measured['python']:.3f} s/step, "
              f"cnnviz {measured['cnnviz']:.3f} s/step -> {measured['python'] / measured['cnnviz']:.2f}x")
    py, cpp = statistics.median(per_step["python"]), statistics.median(per_step["cnnviz"])
    print(f"1. per step (median of {args.rounds}; a warm batch's attack seconds / {STEPS}, clean and final no-grad "
          f"forwards included): python {py:.3f} s, cnnviz {cpp:.3f} s -> cnnviz is {py / cpp:.2f}x faster per step "
          f"(target >= 1.3x); success rate python {success['python']:.3f}, cnnviz {success['cnnviz']:.3f}")

    if args.skip_folder:
        return 0
    tiny = os.path.join(ROOT, "models", "tinycnn.pt")
    n = args.images_per_minute_images
    print(f"2. folder mode, models/tinycnn.pt, --max-images {n} of {shown(dataset)}, "
          f"{THREADS} thread:")
    for label, extra in (("defaults (PGD, unit changes, inversions)", []),
                         ("--inspect none --inversion-layers none (attack + divergences)", ATTACK_ALONE)):
        report = run_cnnviz(binary, tiny, dataset, n, extra)
        summary, timings = report["summary"], report.get("timings", {})
        parts = ", ".join(f"{key.replace('_seconds', '')} {timings[key]:.1f} s"
                          for key in ("attack_seconds", "divergence_seconds", "changes_seconds",
                                      "inversion_seconds", "total_seconds")
                          if isinstance(timings.get(key), (int, float)))
        print(f"   {label}: {summary['images_per_minute']:.1f} images/minute ({summary['images']} images, "
              f"success rate {summary['success_rate']:.3f}{'; ' + parts if parts else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
