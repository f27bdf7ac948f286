#!/usr/bin/python3
"""Plain-Python (eager PyTorch) baseline for `cnnviz actmax`: channel activation maximization.

This is what a Python user would write: the eager model, a forward hook on the
layer, a FULL forward pass every step, autograd, torch.optim.Adam. It runs the
same algorithm as cnnviz's C++ (src/optvis, src/methods/activation_maximization.cpp,
Lucid's optvis render_vis with default settings):

  * image = sigmoid(decorrelate(irfft2(spectrum * 1/f scale) / 4)), spectrum
    [N, 3, H, W//2+1, 2] initialized N(0, 0.01) per element from a Generator
    seeded with seed*1000003 + element_seed*7919 + 17, element_seed = (unit+1)*1024;
  * every step the standard transforms (one random draw shared by the batch,
    a fresh random.Random(seed) per group): pad 12 (value 0.5), jitter 8,
    random scale 0.90..1.10, random rotate -10..10 degrees (plus five 0s), jitter 4;
  * (x - mean) / std, full forward, objective of element i = mean over H, W of
    act[i, unit_i], loss = -sum over the batch, Adam(lr=0.05) on the spectrum.

A "step" is ONE Adam step over the whole group: the --units are optimized in
groups of --batch units (the last group may be smaller), and one step renders
all of the group's images, transforms them, runs one full forward pass of the
[group size, 3, S, S] batch, backpropagates and updates the group's spectra.

Timing: --warmup steps on a throwaway copy of the first group (not timed), then
every group from a fresh initialization; `seconds` is the sum of the groups'
step loops (time.perf_counter), `ms_per_step` = seconds / (groups * steps),
`steps_per_second` = 1000 / ms_per_step (steps of a whole group, i.e. of up to
--batch units each), `units_per_minute` = units / seconds * 60. The final
objective values are evaluated once more without transforms (not timed), as
the C++ does.

Device: --device cpu (default) or cuda. With cuda the model, the spectra, the
1/f scale, the colour matrix, mean/std and every transform run on the GPU; the
initial spectra are still drawn on the CPU from the seeded torch.Generator and
then copied to the GPU (so both devices start from the same values), and the
transforms' random draws stay Python's random.Random. torch.cuda.synchronize()
is called before every timer read, so `seconds` covers the finished GPU work.
Nothing else is tuned (no cudnn.benchmark, no AMP, no torch.compile: PyTorch's
defaults, e.g. TF32 convolutions on Ampere and later). The warmup steps also
absorb CUDA/cuDNN initialization.

Threads: torch.set_num_threads(--threads). Export OMP_WAIT_POLICY=PASSIVE in the
caller's environment when comparing with the C++ binary (this script sets it
with os.environ.setdefault before importing torch, so an explicit value wins):
spinning OpenMP workers otherwise distort timings on small machines.

The transforms' random draws come from Python's random.Random, not the C++'s
std::mt19937_64, so with transforms the final values differ from cnnviz's
(same distribution, different draws); with the transforms replaced by the
identity the values match `cnnviz actmax --transforms none` step for step.
Timing note: ATen (Python and C++ alike) runs batch-1 convolutions whose input
has at most 20480 elements on its im2col + BLAS path (aten::_slow_conv2d), not
oneDNN; with Debian's reference BLAS that path dominates small-input resnet18
runs, so 64x64 images are barely cheaper than 128x128.

Usage:
  /usr/bin/python3 bench/actmax_baseline.py --arch tinycnn|resnet18 --layer NAME
      --units 0-63|3|0,5 [--batch 1] [--steps 64] [--size 128] [--seed 0]
      [--threads 1] [--warmup 3] [--weights-from FILE.pt] [--device cpu|cuda] [--json]

  --json prints one object: arch, layer, units, batch, steps, size, threads,
    device, seconds (timed step loops), ms_per_step, steps_per_second,
    units_per_minute, final_values (one per unit, no transforms).

  --arch tinycnn: the eager TinyCNN (models/train_bundled.py) holding the weights
    of models/tinycnn.pt (built by models/export_torchvision.build_tinycnn),
    mean/std from models/tinycnn.json.
  --arch resnet18: torchvision resnet18(weights=None) after torch.manual_seed(0),
    ImageNet mean/std. Its BatchNorm statistics are torchvision's (0 / 1); pass
    --weights-from the .pt file the C++ run used (e.g. one exported by
    models/export_torchvision.py, which calibrates BatchNorm) to get the same
    weights and hence comparable final values. Timing does not depend on it.
"""

import os

# libgomp reads this once, at import time of torch: idle OpenMP threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
sys.path.insert(0, MODELS)
import _cli  # noqa: E402
from bench_common import clock, torch_device  # noqa: E402
import export_torchvision  # noqa: E402  (build_tinycnn, load_state_dict)

PROG = "actmax_baseline.py"
TINYCNN_WEIGHTS = os.path.join(MODELS, "tinycnn.pt")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
LEARNING_RATE = 0.05
INIT_STD = 0.01
# Lucid's color_correlation_svd_sqrt; divided by its largest column L2 norm below.
COLOR_CORRELATION = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]
PAD, PAD_VALUE, JITTER1, JITTER2 = 12, 0.5, 8, 4
SCALES = [1 + (i - 5) / 50 for i in range(11)]
ANGLES = list(range(-10, 11)) + [0] * 5




# ---------------------------------------------------------------- model
def build_model(arch, weights_from):
    """(eval-mode eager model with frozen parameters, mean, std)."""
    if arch == "tinycnn":
        path = weights_from or TINYCNN_WEIGHTS
        model = export_torchvision.build_tinycnn(path)
        sidecar_path = os.path.splitext(path)[0] + ".json"
        if not os.path.isfile(sidecar_path):
            sidecar_path = os.path.join(MODELS, "tinycnn.json")
        with open(sidecar_path, encoding="utf-8") as handle:
            spec = json.load(handle)["input"]
        mean, std = spec["mean"], spec["std"]
    elif arch == "resnet18":
        torch.manual_seed(0)
        model = torchvision.models.resnet18(weights=None)
        if weights_from:
            export_torchvision.apply_weights(model, weights_from)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        raise _cli.UserError(f"unknown --arch {arch!r} (tinycnn or resnet18)")
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, mean, std


class LayerHook:
    """Forward hook that keeps the layer's output of the latest forward pass.

    With clone=True it keeps a copy, for layers whose output a later in-place
    op (e.g. ReLU(inplace=True) after "conv5.0") overwrites.
    """

    def __init__(self, module, clone):
        self.clone = clone
        self.output = None
        self.version = None
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.output = output.clone() if self.clone else output
        self.version = self.output._version


def make_hook(model, layer, size, mean, std, device):
    """LayerHook on `layer`, cloning only if a no-grad test pass shows its output changes later."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        names = ", ".join(name for name, _ in model.named_modules() if name)
        raise _cli.UserError(f"--layer {layer!r} is not a module of the model; modules: {names}") from None
    hook = LayerHook(module, clone=False)
    with torch.no_grad():
        model(normalize(torch.full((1, 3, size, size), 0.5, device=device), mean, std))
    if hook.output is None:
        raise _cli.UserError(f"--layer {layer!r} is not called in the forward pass")
    if hook.output.dim() != 4:
        raise _cli.UserError(f"--layer {layer!r} has no spatial extent (output shape "
                             f"{list(hook.output.shape)})")
    channels = hook.output.shape[1]
    hook.clone = hook.output._version != hook.version
    hook.output = None
    return hook, channels


def normalize(x, mean, std):
    return (x - mean) / std


# ---------------------------------------------------------------- parameterization
def decorrelation_matrix():
    matrix = torch.tensor(COLOR_CORRELATION, dtype=torch.float32)
    return matrix / matrix.norm(dim=0).max()


def fft_scale(height, width):
    """Lucid's 1/f spectrum scale (decay power 1) times sqrt(H*W), shape [H, W//2+1]."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :width // 2 + 1]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp_min(freqs, 1.0 / max(height, width)) * math.sqrt(height * width)


def init_spectrum(units, seed, height, width, device):
    """Drawn on the CPU (seeded Generator), then moved to `device`: the same values on every device."""
    parts = []
    for unit in units:
        element_seed = (unit + 1) * 1024
        generator = torch.Generator().manual_seed(seed * 1000003 + element_seed * 7919 + 17)
        parts.append(torch.normal(0.0, INIT_STD, size=(3, height, width // 2 + 1, 2),
                                  generator=generator))
    return torch.stack(parts).to(device).requires_grad_(True)


def to_image(spectrum, scale, matrix, height, width):
    raw = torch.fft.irfft2(torch.view_as_complex(spectrum) * scale, s=(height, width)) / 4
    return torch.sigmoid(torch.einsum("nchw,dc->ndhw", raw, matrix))


# ---------------------------------------------------------------- transforms
def jitter(x, pixels, rng):
    height, width = x.shape[2] - pixels, x.shape[3] - pixels
    dy, dx = rng.randint(0, pixels), rng.randint(0, pixels)
    return x[:, :, dy:dy + height, dx:dx + width]


def random_scale(x, rng):
    scale = SCALES[rng.randint(0, len(SCALES) - 1)]
    if scale == 1.0:
        return x
    size = (round(x.shape[2] * scale), round(x.shape[3] * scale))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def random_rotate(x, rng):
    angle = ANGLES[rng.randint(0, len(ANGLES) - 1)]
    if angle == 0:
        return x
    radians = math.radians(angle)
    c, s = math.cos(radians), math.sin(radians)
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype, device=x.device)
    theta = theta.expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def transform(x, rng):
    x = F.pad(x, (PAD, PAD, PAD, PAD), mode="constant", value=PAD_VALUE)
    x = jitter(x, JITTER1, rng)
    x = random_scale(x, rng)
    x = random_rotate(x, rng)
    return jitter(x, JITTER2, rng)


# ---------------------------------------------------------------- optimization
def objective_values(model, hook, x, units, mean, std):
    """[N] mean over H, W of act[i, units[i]] after a full forward pass of normalize(x)."""
    model(normalize(x, mean, std))
    act = hook.output
    hook.output = None
    rows = torch.arange(len(units), device=act.device)
    return act[rows, torch.tensor(units, device=act.device)].mean(dim=(1, 2))


def run_group(model, hook, units, args, mean, std, scale, matrix, steps):
    """Optimize one group; returns (seconds of the step loop, first-step values, last-step values, spectrum)."""
    size = args.size
    spectrum = init_spectrum(units, args.seed, size, size, args.torch_device)
    optimizer = torch.optim.Adam([spectrum], lr=LEARNING_RATE)
    rng = random.Random(args.seed)
    first = last = None
    started = clock(args.torch_device)
    for step in range(steps):
        optimizer.zero_grad()
        image = to_image(spectrum, scale, matrix, size, size)
        values = objective_values(model, hook, transform(image, rng), units, mean, std)
        (-values.sum()).backward()
        optimizer.step()
        last = values.detach()
        if step == 0:
            first = last
    seconds = clock(args.torch_device) - started
    return seconds, first, last, spectrum


def parse_units(text):
    units = []
    for item in text.split(","):
        item = item.strip()
        if "-" in item:
            low, high = (int(part) for part in item.split("-", 1))
            if high < low:
                raise ValueError(f"empty unit range {item!r}")
            units.extend(range(low, high + 1))
        else:
            units.append(int(item))
    if not units or min(units) < 0:
        raise ValueError("units must be non-negative")
    return units


def parse_args(argv=None):
    parser = _cli.ArgumentParser(prog=PROG, description="Eager-PyTorch activation-maximization "
                                 "baseline (same algorithm as cnnviz actmax), timed.")
    parser.add_argument("--arch", required=True, choices=["tinycnn", "resnet18"])
    parser.add_argument("--layer", required=True, help="module path, e.g. conv5 or layer2")
    parser.add_argument("--units", required=True, help="channels: 3, 0,5 or 0-63")
    parser.add_argument("--batch", type=int, default=1, help="units optimized together (default 1)")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--weights-from", metavar="FILE.pt",
                        help="TorchScript file or state_dict to take the weights from "
                             "(tinycnn default: models/tinycnn.pt)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the tensors live and the work runs (default cpu)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    try:
        args.unit_list = parse_units(args.units)
    except ValueError as error:
        parser.error(f"--units {args.units!r}: {error}")
    for name in ("batch", "steps", "size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    if args.size < 8:
        parser.error("--size must be at least 8")
    if args.warmup < 0 or args.seed < 0:
        parser.error("--warmup and --seed must be non-negative")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = args.torch_device = torch_device(args.device)
    model, mean, std = build_model(args.arch, args.weights_from)
    model.to(device)
    mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    hook, channels = make_hook(model, args.layer, args.size, mean, std, device)
    units = args.unit_list
    if max(units) >= channels:
        raise _cli.UserError(f"unit {max(units)} is out of range: {args.layer} has {channels} "
                             f"channels (0-{channels - 1})")
    scale = fft_scale(args.size, args.size).to(device)
    matrix = decorrelation_matrix().to(device)
    groups = [units[i:i + args.batch] for i in range(0, len(units), args.batch)]

    if args.warmup:
        run_group(model, hook, groups[0], args, mean, std, scale, matrix, args.warmup)

    seconds, first_values, last_values, final_values = 0.0, [], [], []
    for group in groups:
        elapsed, first, last, spectrum = run_group(model, hook, group, args, mean, std,
                                                   scale, matrix, args.steps)
        seconds += elapsed
        first_values += first.tolist()
        last_values += last.tolist()
        with torch.no_grad():
            image = to_image(spectrum, scale, matrix, args.size, args.size)
            final_values += objective_values(model, hook, image, group, mean, std).tolist()

    total_steps = len(groups) * args.steps
    ms_per_step = 1000.0 * seconds / total_steps
    result = {"arch": args.arch, "layer": args.layer, "units": units, "batch": args.batch,
              "steps": args.steps, "size": args.size, "threads": args.threads,
              "device": args.device, "seconds": seconds, "ms_per_step": ms_per_step,
              "steps_per_second": 1000.0 / ms_per_step,
              "units_per_minute": 60.0 * len(units) / seconds, "final_values": final_values}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.arch} {args.layer}: {len(units)} unit(s) in {len(groups)} group(s) of <= "
          f"{args.batch}, {args.steps} steps, {args.size}x{args.size}, {args.threads} thread(s), "
          f"device {args.device}"
          f"{', hook clones the output' if hook.clone else ''}")
    print(f"time: {seconds:.3f} s, {result['ms_per_step']:.2f} ms/step "
          f"({result['steps_per_second']:.2f} steps/s; a step = one Adam step of a whole group), "
          f"{result['units_per_minute']:.1f} units/min (warmup {args.warmup} steps not timed)")
    for unit, first, last, final in zip(units, first_values, last_values, final_values):
        print(f"unit {unit}: step 1 {first:.4f} -> step {args.steps} {last:.4f}; "
              f"final (no transforms) {final:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run_main(main, PROG))
