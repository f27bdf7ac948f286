#!/usr/bin/python3
"""Plain-Python (eager PyTorch) baseline for `cnnviz invert`: regularized network inversion.

This is what a researcher would write for Mahendran & Vedaldi (2015), "Understanding Deep Image
Representations by Inverting Them": the eager torchvision model, a forward hook on the layer, a FULL
forward pass every step (the hook grabs the layer's output, the rest of the network runs anyway),
autograd, and the momentum-SGD loop written out. Same algorithm and settings as cnnviz
(src/methods/network_inversion.cpp):

  * the image is resized to --size (bilinear, align_corners=False) and clamped to [0, 1];
  * the variable u is the image in 0-255 units minus the model's mean colour m (the ImageNet mean,
    clamped to [0.05, 0.95]); the network input is ((u/255 + m) - mean) / std;
  * E(u) = ||phi(u) - phi0||^2 / ||phi0||^2
           + (lambda_alpha/2 * sum|u|^alpha + lambda_tv/2 * TV_beta(u)) / sigma^2,
    sigma = pixel_norm * sqrt(H*W), pixel_norm 80, alpha 6, lambda_alpha 8e-10, beta 2,
    TV_beta = sum over channels and pixels of (dx^2 + dy^2)^(beta/2), with dx, dy forward differences
    that are 0 past the last column / row;
  * start: randn(3, H, W) from torch.Generator().manual_seed(seed * 1000003 + 1), scaled to norm
    sigma (the same numbers as cnnviz's start for its first layer at the same --seed, so the two
    curves are directly comparable);
  * for t = 1..steps: factor 1 for t <= max(1, steps//4), 0.1 for t <= 3*steps//4, 0.01 after, velocity
    reset to 0 when the factor changes; v = 0.9 v - lr * factor * sigma^2 * grad E; u += v.

The relative feature error is sqrt(data term) = ||phi(u) - phi0|| / ||phi0||; `feature_error` is that of
the final u (one more forward pass after the loop, not timed), as cnnviz reports it. The curve records
the error of the u each step starts from, at step 1, every 10 steps and the last step, as cnnviz's
report.json does; `step_errors` is the error at every step (entry k: the u after k updates).

Timing: `seconds` is the step loop alone (time.perf_counter), without model loading, the target pass
or the final evaluation; no warm-up steps (cnnviz's timings include its first step too).
`ms_per_step` = seconds / steps.

Threads: torch.set_num_threads(--threads). Export OMP_WAIT_POLICY=PASSIVE in the caller's environment
when comparing with the C++ binary (this script sets it with os.environ.setdefault before importing
torch, so an explicit value wins).

Usage:
  /usr/bin/python3 bench/invert_baseline.py --arch resnet18 --weights-from build/bench-data/resnet18.pt
      --layer layer2 --image photo.png [--size 224] [--steps 200] [--lr 0.004] [--lambda-tv 10]
      [--seed 0] [--threads 1] [--json]

  --arch: a torchvision architecture name, built with random weights; --weights-from a TorchScript
    file (torch.jit.load(path).state_dict()) gives it the weights cnnviz used (e.g. one exported by
    models/export_torchvision.py). mean/std come from the file's .json sidecar when there is one,
    else ImageNet's.
  --lambda-tv: cnnviz picks it by depth (1, 10 or 100); read it from cnnviz's report.json
    (reconstructions[i].lambda_tv). Default 10 (resnet18 layer2).
"""

import os

# libgomp reads this once, at import time of torch: idle OpenMP threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
MOMENTUM = 0.9
ALPHA, LAMBDA_ALPHA, BETA, PIXEL_NORM = 6.0, 8e-10, 2.0, 80.0
RECORD_EVERY = 10


def build_model(arch, weights_from):
    """(eval-mode eager model with frozen parameters, mean, std)."""
    model = torchvision.models.get_model(arch, weights=None)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if weights_from:
        model.load_state_dict(torch.jit.load(weights_from, map_location="cpu").state_dict())
        sidecar = os.path.splitext(weights_from)[0] + ".json"
        if os.path.isfile(sidecar):
            with open(sidecar, encoding="utf-8") as handle:
                spec = json.load(handle)["input"]
            mean, std = spec["mean"], spec["std"]
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, mean, std


class Hook:
    """Keeps the layer's output of the latest forward pass (a copy when a later in-place op changes it)."""

    def __init__(self, module):
        self.output, self.clone = None, False
        module.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.output = output.clone() if self.clone else output
        self.version = self.output._version


def load_image(path, size):
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    image = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
    if image.shape[2:] != (size, size):
        image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)
    return image.clamp(0, 1)


def total_variation(u, beta):
    dx = torch.cat([u[..., 1:] - u[..., :-1], torch.zeros_like(u[..., :1])], dim=-1)
    dy = torch.cat([u[..., 1:, :] - u[..., :-1, :], torch.zeros_like(u[..., :1, :])], dim=-2)
    squared = dx.pow(2) + dy.pow(2)
    if beta < 2.0:
        squared = squared.clamp_min(1e-10)
    return squared.sum() if beta == 2.0 else squared.pow(beta / 2.0).sum()


def rate_factor(step, steps):
    first = max(1, steps // 4)
    second = max(first, (3 * steps) // 4)
    return 1.0 if step <= first else 0.1 if step <= second else 0.01


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18", help="torchvision architecture (default resnet18)")
    parser.add_argument("--weights-from", metavar="FILE.pt", help="TorchScript file to take the weights from")
    parser.add_argument("--layer", required=True, help="module path, e.g. layer2")
    parser.add_argument("--image", required=True, help="image to invert")
    parser.add_argument("--size", type=int, default=224, help="model input side (default 224)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.004, help="initial learning rate (default 0.004)")
    parser.add_argument("--lambda-tv", type=float, default=10.0, help="TV weight (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.threads < 1 or args.size < 8 or not args.lr > 0 or args.lambda_tv < 0:
        parser.error("--steps, --threads, --lr must be positive, --size >= 8, --lambda-tv >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, mean, std = build_model(args.arch, args.weights_from)
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    hook = Hook(model.get_submodule(args.layer))
    original = load_image(args.image, args.size)

    m = mean.clamp(0.05, 0.95)  # the model's mean colour, [0,1] RGB

    def features(u):
        model(((u / 255.0 + m) - mean) / std)
        return hook.output

    with torch.no_grad():
        model((original - mean) / std)
        hook.clone = hook.output._version != hook.version  # output changed in place later: keep copies
        target = features(255.0 * (original - m)).detach().clone()
    target_norm2 = target.pow(2).sum()
    sigma = PIXEL_NORM * math.sqrt(args.size * args.size)
    sigma2 = sigma * sigma

    def energy(u):
        data = (features(u) - target).pow(2).sum() / target_norm2
        prior = LAMBDA_ALPHA / 2 * u.abs().pow(ALPHA).sum() + args.lambda_tv / 2 * total_variation(u, BETA)
        return data + prior / sigma2, data

    generator = torch.Generator().manual_seed(args.seed * 1000003 + 1)
    u = torch.randn(3, args.size, args.size, generator=generator)
    u = (u / u.norm() * sigma).unsqueeze(0).requires_grad_(True)
    velocity = torch.zeros_like(u)

    curve_steps, curve_errors, curve_energy, step_errors = [], [], [], []
    previous = None
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        factor = rate_factor(step, args.steps)
        if factor != previous:
            velocity.zero_()
            previous = factor
        u.grad = None
        value, data = energy(u)
        value.backward()
        step_errors.append(math.sqrt(data.item()))
        if step == 1 or step % RECORD_EVERY == 0 or step == args.steps:
            curve_steps.append(step)
            curve_errors.append(step_errors[-1])
            curve_energy.append(value.item())
        with torch.no_grad():
            velocity.mul_(MOMENTUM).sub_(u.grad, alpha=args.lr * factor * sigma2)
            u.add_(velocity)
    seconds = time.perf_counter() - started
    if not torch.isfinite(u).all():
        sys.exit("invert_baseline.py: error: the inversion diverged; give a smaller --lr")

    with torch.no_grad():
        _, data = energy(u)
    result = {"arch": args.arch, "layer": args.layer, "size": args.size, "steps": args.steps, "lr": args.lr,
              "lambda_tv": args.lambda_tv, "threads": args.threads, "seconds": seconds,
              "ms_per_step": 1000.0 * seconds / args.steps, "feature_error": math.sqrt(data.item()),
              "curve": {"steps": curve_steps, "feature_error": curve_errors, "objective": curve_energy},
              "step_errors": step_errors}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.arch} {args.layer}: {args.steps} steps, lr {args.lr:g}, lambda_tv {args.lambda_tv:g}, "
          f"{args.size}x{args.size}, {args.threads} thread(s){', hook clones the output' if hook.clone else ''}")
    print(f"time: {seconds:.3f} s, {result['ms_per_step']:.1f} ms/step (step loop only)")
    print(f"relative feature error: step 1 {curve_errors[0]:.4f} -> final {result['feature_error']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
