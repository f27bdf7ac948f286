#!/usr/bin/python3
"""Plain-Python (eager PyTorch) baseline for `cnnviz adversarial --attack pgd --norm linf`: the PGD loop.

This is what a researcher would write (and what torchattacks' PGD does): the eager torchvision model
in eval mode, the normalization inside the forward, torch.autograd.grad of the summed cross-entropy
with respect to the [0, 1] image, and the L-inf projected-gradient loop written out. Same algorithm
and settings as cnnviz (src/methods/adversarial.cpp, AdversarialAttack::Run):

  * images: the first --images images of --dataset (a Broden root: index.csv order, every split; or an
    image folder: sorted file names), decoded with PIL, converted to RGB, resized to the sidecar's
    input size (224 for build/bench-data/resnet18.pt) with PIL bilinear, divided by 255;
  * forward(x) = model(((x * (hi - lo) + lo) - mean) / std), range [lo, hi] and mean/std from the
    model's sidecar (<model>.json next to --model-file; ImageNet's and [0, 1] when there is none);
  * labels y = argmax of the clean logits (untargeted: move away from the clean prediction);
  * random start: delta = eps * (2 * U[0, 1) - 1) drawn on the CPU from
    torch.Generator().manual_seed(seed * 6364136223846793005 + 1 mod 2^64) (the generator cnnviz
    seeds), then delta = clamp(x + delta, 0, 1) - x;
  * --steps times: g = d/dx' sum_i CE(forward(x')_i, y_i) at x' = x + delta (reduction='sum'),
    delta = clamp(delta + alpha * sign(g), -eps, eps), delta = clamp(x + delta, 0, 1) - x, with
    alpha = 2.5 * eps / steps;
  * success: argmax forward(x + delta) != y.

Timing, as cnnviz's timings.attack_seconds: per batch of --batch images, from before the no-grad
clean forward to after the no-grad final forward (clean forward, random start, the --steps
forward+backward steps, final forward), time.perf_counter, summed over the batches; decoding and model
loading are not timed. One warm-up step (a forward+backward of the first batch) runs untimed first.
`seconds_per_step` = seconds / steps (cnnviz: attack_seconds / attack_steps), so with one batch it is
one step of the whole batch plus a tenth of the two no-grad forwards at 10 steps.

Threads: torch.set_num_threads(--threads), default 1. Export OMP_WAIT_POLICY=PASSIVE (and
OMP_NUM_THREADS) in the caller's environment when comparing with the C++ binary (this script sets
OMP_WAIT_POLICY with os.environ.setdefault before importing torch, so an explicit value wins).

Model: torchvision resnet18(weights=None) holding the state_dict of the TorchScript file --model-file
(torch.jit.load(path).state_dict(); e.g. build/bench-data/resnet18.pt from bench_common.ensure_resnet18),
eval mode, parameters frozen.

Usage:
  /usr/bin/python3 bench/adversarial_baseline.py --model-file build/bench-data/resnet18.pt
      --dataset build/bench-data/concepts1000 [--images 16] [--batch 16] [--steps 10]
      [--epsilon 8/255] [--seed 0] [--threads 1] [--json]

  --json prints one object: model_file, dataset, images, batch, batches, steps, epsilon, step_size,
    threads, seconds (timed attack, all batches), seconds_per_step, success_rate, linf (largest
    |delta| of any pixel, <= epsilon).
"""

import os

# libgomp reads this once, at import time of torch: idle OpenMP threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "models"))
import _cli  # noqa: E402

PROG = "adversarial_baseline.py"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
SEED_MULTIPLIER = 6364136223846793005  # cnnviz: CPUGeneratorImpl(seed * this + 1), uint64 arithmetic


def parse_fraction(text):
    """'8/255', '0.03' -> float; ValueError otherwise."""
    if "/" in text:
        numerator, denominator = text.split("/", 1)
        return float(numerator) / float(denominator)
    return float(text)


def read_sidecar(model_file):
    """(size, range (lo, hi), mean, std) from <model>.json, ImageNet's defaults at 224 without one."""
    path = os.path.splitext(model_file)[0] + ".json"
    if not os.path.isfile(path):
        return 224, (0.0, 1.0), IMAGENET_MEAN, IMAGENET_STD
    with open(path, encoding="utf-8") as handle:
        spec = json.load(handle)["input"]
    return spec["size"][0], tuple(spec.get("range", (0.0, 1.0))), spec["mean"], spec["std"]


def load_model(model_file):
    """Eager torchvision resnet18 (eval, frozen) with the TorchScript file's weights."""
    if not os.path.isfile(model_file):
        raise _cli.UserError(f"--model-file not found: {model_file}")
    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(torch.jit.load(model_file, map_location="cpu").state_dict())
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def image_paths(dataset, count):
    """The first `count` images: index.csv order for a Broden root, sorted names for a folder."""
    index = os.path.join(dataset, "index.csv")
    if os.path.isfile(index):
        with open(index, newline="", encoding="utf-8") as handle:
            paths = [os.path.join(dataset, "images", row["image"]) for row in csv.DictReader(handle)]
    elif os.path.isdir(dataset):
        paths = [os.path.join(dataset, name) for name in sorted(os.listdir(dataset))
                 if name.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        raise _cli.UserError(f"--dataset not found: {dataset}")
    if len(paths) < count:
        raise _cli.UserError(f"--dataset {dataset} has {len(paths)} images, fewer than --images {count}")
    return paths[:count]


def load_image(path, size):
    """[3, size, size] float in [0, 1]: PIL decode, RGB, bilinear resize, / 255."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR)).copy()
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)


class Normalized(torch.nn.Module):
    """model(((x * (hi - lo) + lo) - mean) / std) for x in [0, 1]: the attack works on image pixels."""

    def __init__(self, model, value_range, mean, std):
        super().__init__()
        self.model = model
        self.lo, self.hi = value_range
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x):
        return self.model(((x * (self.hi - self.lo) + self.lo) - self.mean) / self.std)


def loss_gradient(model, x_adv, labels):
    """d/dx' of the summed cross-entropy at x'."""
    x_adv = x_adv.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), labels, reduction="sum")
    return torch.autograd.grad(loss, [x_adv])[0]


def pgd(model, x, epsilon, steps, seed):
    """One batch: (success [N] bool, delta). Clean forward, random start, steps, final forward."""
    with torch.no_grad():
        labels = model(x).argmax(1)
    generator = torch.Generator().manual_seed((seed * SEED_MULTIPLIER + 1) % 2**64)
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * epsilon
    delta = (x + delta).clamp(0, 1) - x
    alpha = 2.5 * epsilon / steps
    for _ in range(steps):
        gradient = loss_gradient(model, x + delta, labels)
        delta = (delta + alpha * gradient.sign()).clamp(-epsilon, epsilon)
        delta = (x + delta).clamp(0, 1) - x
    with torch.no_grad():
        predicted = model(x + delta).argmax(1)
    return predicted != labels, delta


def parse_args(argv=None):
    parser = _cli.ArgumentParser(prog=PROG, description="Eager-PyTorch L-inf PGD baseline (same "
                                 "algorithm as cnnviz adversarial --attack pgd), timed.")
    parser.add_argument("--model-file", required=True, metavar="FILE.pt",
                        help="TorchScript resnet18 (e.g. build/bench-data/resnet18.pt) with its .json sidecar")
    parser.add_argument("--dataset", required=True, metavar="DIR", help="Broden root or image folder")
    parser.add_argument("--images", type=int, default=16, help="images attacked (default 16)")
    parser.add_argument("--batch", type=int, default=16, help="images attacked together (default 16)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    parser.add_argument("--epsilon", default="8/255", help="L-inf budget in [0, 1] pixels (default 8/255)")
    parser.add_argument("--seed", type=int, default=0, help="random start seed (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    for name in ("images", "batch", "steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    try:
        args.epsilon_value = parse_fraction(args.epsilon)
    except ValueError:
        parser.error(f"--epsilon {args.epsilon!r} is not a number or a fraction a/b")
    if not args.epsilon_value > 0:
        parser.error("--epsilon must be positive")
    if args.seed < 0:
        parser.error("--seed must be non-negative")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    size, value_range, mean, std = read_sidecar(args.model_file)
    model = Normalized(load_model(args.model_file), value_range, mean, std).eval()
    paths = image_paths(args.dataset, args.images)
    batches = [torch.stack([load_image(path, size) for path in paths[i:i + args.batch]])
               for i in range(0, len(paths), args.batch)]
    epsilon, steps = args.epsilon_value, args.steps

    # Warm-up, not timed: one forward+backward of the first batch.
    with torch.no_grad():
        warm_labels = model(batches[0]).argmax(1)
    loss_gradient(model, batches[0], warm_labels)

    seconds, successes, linf = 0.0, 0, 0.0
    for x in batches:
        started = time.perf_counter()
        success, delta = pgd(model, x, epsilon, steps, args.seed)
        seconds += time.perf_counter() - started
        successes += int(success.sum())
        linf = max(linf, float(delta.abs().max()))

    result = {"model_file": args.model_file, "dataset": args.dataset, "images": len(paths),
              "batch": args.batch, "batches": len(batches), "steps": steps, "epsilon": epsilon,
              "step_size": 2.5 * epsilon / steps, "threads": args.threads, "seconds": seconds,
              "seconds_per_step": seconds / steps, "success_rate": successes / len(paths), "linf": linf}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"PGD L-inf eps {args.epsilon} ({epsilon:.5f}), {steps} steps of {result['step_size']:.5f}, "
          f"{len(paths)} images {size}x{size} in {len(batches)} batch(es) of <= {args.batch}, "
          f"{args.threads} thread(s)")
    print(f"attack: {seconds:.3f} s, {result['seconds_per_step']:.3f} s/step (clean + final no-grad "
          f"forwards included; 1 warm-up step not timed); success rate {result['success_rate']:.3f}, "
          f"max |delta| {linf:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run_main(main, PROG))
