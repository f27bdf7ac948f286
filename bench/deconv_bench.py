#!/usr/bin/python3
"""DeconvNet benchmark: `cnnviz deconv` against the straightforward Python approach, as ratios.

    /usr/bin/python3 bench/deconv_bench.py [--build build] [--images 2000] [--size 224]

Model: resnet18 (random weights, exported by models/export_torchvision.py), layer `layer3` (256 units),
top 9, on a generated concept dataset (models/make_concepts.py, Broden format) of --images images.
Both sides use 1 intra-op thread and OMP_WAIT_POLICY=PASSIVE.

Measured:
  1. top-k scan, images per second for ALL units of the layer:
     - cnnviz: one streaming pass, batches of 16, truncated after layer3, decoding on a second thread;
     - Python "one unit at a time, a forward per image" (the approach the issue names): rate measured on
       2 units x 20 images and scaled to the whole layer (a whole-layer pass this way takes hours);
     - Python "all units in one pass, a forward per image, full network" (a fairer eager baseline).
  2. projections per second: cnnviz's batched rule backward against one (unit, image) pair per
     forward+backward in Python (eager model, ReLUs replaced by a DeconvNet autograd function).

Standalone Python scan (--python-scan-only; no cnnviz binary, no projections), for CPU or GPU:

    python3 bench/deconv_bench.py --python-scan-only [--device cpu|cuda] [--dataset DIR]
        [--model-file resnet18.pt] [--layer layer3] [--images N] [--batch 64] [--size 224] [--top 9]
        [--warmup 1] [--threads 1] [--json]

  The "all units in one pass" top-k scan as a GPU user would write it: images in batches of --batch,
  each decoded with PIL and resized to --size x --size (PIL bilinear, load_image) on the CPU,
  stacked, copied to --device, normalized with the ImageNet mean/std there, and run through the FULL
  eager network in torch.no_grad() (no truncation after the layer); a forward hook on --layer takes
  each image's per-unit spatial maximum [B, K], and a running torch.topk over images keeps the --top
  best images of EVERY unit on the device. Timed (time.perf_counter, torch.cuda.synchronize() before
  each read on cuda) from the first image's decoding to the last batch's top-k: decoding is part of
  the rate (cnnviz decodes too, on a second thread). --warmup forwards of the first batch run before
  the timer starts (CUDA/cuDNN initialization). PyTorch defaults otherwise (no cudnn.benchmark, no AMP;
  TF32 convolutions on Ampere and later).
  Model: torchvision resnet18(weights=None) holding the state_dict of the TorchScript file --model-file
  (e.g. build/bench-data/resnet18.pt, exported by models/export_torchvision.py --arch resnet18 --script;
  loaded on the CPU, then moved to --device). Without --model-file it is exported into
  BUILD/bench-data/resnet18.pt as in the default mode (bench_common.ensure_resnet18).
  Dataset: --dataset DIR (Broden format: DIR/index.csv, images under DIR/images/), scanning its first
  --images images (default all of them); without --dataset, BUILD/bench-data/concepts<--images> is
  generated as in the default mode (--images default 2000).
  --json prints one object: mode, device, model_file, dataset, layer, units (channels of the layer),
  top, images (scanned), batch, size, threads, warmup_batches, seconds (the timed scan),
  images_per_second (images / seconds, every unit's top-k done), top_sum (sum of all units' top-k
  maxima, a checksum to compare devices: close, not bit-equal) and top_unit0 (unit 0's best images
  as 0-based rows of index.csv, best first).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from bench_common import ENV, ROOT, clock, ensure_resnet18  # noqa: E402
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_image(path, size):
    from PIL import Image
    import numpy as np
    image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


class DeconvRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp_min(0)


class Relu(nn.Module):
    def forward(self, x):
        return DeconvRelu.apply(x)


def eager_resnet(weights_path):
    import torchvision
    model = torchvision.models.resnet18(weights=None).eval()
    model.load_state_dict(torch.jit.load(weights_path, map_location="cpu").state_dict())
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def layer_output(model, layer, x):
    captured = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.setdefault("out", o.clone()))
    try:
        model(x)
    finally:
        handle.remove()
    return captured["out"]


def python_scan_one_unit_at_a_time(model, paths, size, units, layer_units):
    start = time.perf_counter()
    with torch.no_grad():
        for unit in units:
            best = []
            for path in paths:
                act = layer_output(model, "layer3", (load_image(path, size) - MEAN) / STD)
                best.append(act[0, unit].max().item())
            best.sort(reverse=True)
    seconds = time.perf_counter() - start
    per_image_unit = seconds / (len(units) * len(paths))
    return 1.0 / (per_image_unit * layer_units)  # whole-layer images per second


def python_scan_one_pass(model, paths, size):
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            act = layer_output(model, "layer3", (load_image(path, size) - MEAN) / STD)
            act.flatten(2).max(2)
    return len(paths) / (time.perf_counter() - start)


def python_scan_batched(model, paths, size, layer, batch, top, device, warmup):
    """All units of `layer` in one pass over `paths`, `batch` images per forward on `device`.

    Returns (timed seconds, top values [top, K] and their image indices [top, K], on the CPU).
    """
    mean, std = MEAN.to(device), STD.to(device)
    captured = {}

    def hook(module, inputs, output):
        captured["max"] = output.flatten(2).amax(2)  # [B, K]: each image's maximum per unit

    def forward(start):
        x = torch.cat([load_image(path, size) for path in paths[start:start + batch]]).to(device)
        model((x - mean) / std)
        return captured.pop("max")

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        with torch.no_grad():
            for _ in range(warmup):
                forward(0)
            best_values = best_index = None
            started = clock(device)
            for start in range(0, len(paths), batch):
                values = forward(start)
                index = torch.arange(start, start + len(values), device=device)[:, None].expand_as(values)
                if best_values is not None:
                    values = torch.cat([best_values, values])
                    index = torch.cat([best_index, index])
                best_values, order = values.topk(min(top, len(values)), dim=0)
                best_index = index.gather(0, order)
            seconds = clock(device) - started
    finally:
        handle.remove()
    return seconds, best_values.cpu(), best_index.cpu()


def python_projections(model, paths, size, pairs):
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, Relu())
    start = time.perf_counter()
    for unit, path in pairs:
        x = ((load_image(path, size) - MEAN) / STD).requires_grad_(True)
        act = layer_output_grad(model, x)
        value = act[0, unit].flatten().max()
        (value * value.detach()).backward()
    return len(pairs) / (time.perf_counter() - start)


def layer_output_grad(model, x):
    captured = {}
    handle = model.get_submodule("layer3").register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    try:
        model(x)
    finally:
        handle.remove()
    return captured["out"]


def generated_dataset(build, images):
    """BUILD/bench-data/concepts<images> (models/make_concepts.py --seed 0), generated once."""
    dataset = os.path.join(build, "bench-data", f"concepts{images}")
    if not os.path.exists(os.path.join(dataset, "index.csv")):
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "make_concepts.py"), "--out", dataset,
                        "--count", str(images), "--seed", "0"], check=True, env=ENV, stdout=subprocess.DEVNULL)
    return dataset


def image_paths(dataset):
    import csv
    with open(os.path.join(dataset, "index.csv")) as handle:
        return [os.path.join(dataset, "images", row["image"]) for row in csv.DictReader(handle)]


SCAN_ONLY_OPTIONS = ("device", "dataset", "model_file", "layer", "batch", "top", "warmup", "threads")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--images", type=int, help="dataset size (default 2000); with --python-scan-only: images "
                        "scanned, the first N of --dataset (default: all), or the size of the generated dataset")
    parser.add_argument("--size", type=int, default=224, help="model input side (default 224)")
    scan = parser.add_argument_group("standalone Python scan (only with --python-scan-only)")
    scan.add_argument("--python-scan-only", action="store_true",
                      help="run only the batched all-units Python top-k scan (see above)")
    scan.add_argument("--device", choices=["cpu", "cuda"], help="where the model runs (default cpu)")
    scan.add_argument("--dataset", metavar="DIR", help="Broden-format dataset (default: generated)")
    scan.add_argument("--model-file", metavar="FILE.pt", help="TorchScript resnet18 whose state_dict is loaded "
                      "(default: BUILD/bench-data/resnet18.pt, exported when missing)")
    scan.add_argument("--layer", help="module whose units are scanned (default layer3)")
    scan.add_argument("--batch", type=int, help="images per forward (default 64)")
    scan.add_argument("--top", type=int, help="images kept per unit (default 9)")
    scan.add_argument("--warmup", type=int, help="untimed forwards of the first batch (default 1)")
    scan.add_argument("--threads", type=int, help="torch intra-op threads (default 1)")
    scan.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if not args.python_scan_only:
        given = [name for name in SCAN_ONLY_OPTIONS if getattr(args, name) is not None]
        if args.json:
            given.append("json")
        if given:
            parser.error(", ".join("--" + name.replace("_", "-") for name in given) + " need(s) --python-scan-only")
        if args.images is None:
            args.images = 2000
        return args
    defaults = {"device": "cpu", "layer": "layer3", "batch": 64, "top": 9, "warmup": 1, "threads": 1}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("images", "batch", "top", "threads", "size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must be non-negative")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False")
    if args.model_file and not os.path.isfile(args.model_file):
        parser.error(f"--model-file not found: {args.model_file}")
    if args.dataset and not os.path.isfile(os.path.join(args.dataset, "index.csv")):
        parser.error(f"--dataset {args.dataset} has no index.csv")
    return args


def scan_only(args):
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model_file = args.model_file or ensure_resnet18(args.build)
    dataset = args.dataset or generated_dataset(args.build, args.images or 2000)
    paths = image_paths(dataset)
    if args.images is not None:
        if args.images > len(paths):
            raise SystemExit(f"deconv_bench.py: error: --images {args.images}: {dataset} has only {len(paths)} images")
        paths = paths[:args.images]
    model = eager_resnet(model_file).to(device)
    try:
        model.get_submodule(args.layer)
    except AttributeError:
        raise SystemExit(f"deconv_bench.py: error: --layer {args.layer!r} is not a module of resnet18") from None
    seconds, values, index = python_scan_batched(model, paths, args.size, args.layer, args.batch, args.top,
                                                 device, args.warmup)
    result = {"mode": "python_scan_one_pass_batched", "device": args.device, "model_file": model_file,
              "dataset": dataset, "layer": args.layer, "units": values.shape[1], "top": args.top,
              "images": len(paths), "batch": args.batch, "size": args.size, "threads": args.threads,
              "warmup_batches": args.warmup, "seconds": seconds, "images_per_second": len(paths) / seconds,
              "top_sum": float(values.double().sum()), "top_unit0": index[:, 0].tolist()}
    if args.json:
        print(json.dumps(result))
        return
    print(f"Python all-units one-pass top-{args.top} scan, batched: resnet18 {args.layer} ({result['units']} units), "
          f"{len(paths)} images at {args.size}x{args.size}, batch {args.batch}, device {args.device}, "
          f"{args.threads} thread(s): {result['images_per_second']:.1f} images/s ({seconds:.2f} s; "
          f"warmup {args.warmup} batch(es) not timed)")


def main():
    args = parse_args()
    if args.python_scan_only:
        scan_only(args)
        return
    torch.set_num_threads(1)
    resnet = ensure_resnet18(args.build)
    dataset = generated_dataset(args.build, args.images)

    with tempfile.TemporaryDirectory() as out:
        subprocess.run([os.path.join(args.build, "apps", "cnnviz"), "deconv", "-q", "--threads", "1", "--device", "cpu", "--model",
                        resnet, "--input-size", str(args.size), "--layer", "layer3", "--top", "9", "--dataset",
                        dataset, "--out", out], check=True, env=ENV)
        with open(os.path.join(out, "report.json")) as handle:
            report = json.load(handle)
    timings = report["timings"]
    units = len(report["units"])
    cpp_scan = timings["scan_images_per_second"]
    cpp_projections = units * 9 / timings["project_seconds"]

    paths = image_paths(dataset)
    model = eager_resnet(resnet)
    one_unit = python_scan_one_unit_at_a_time(model, paths[:20], args.size, [0, 1], units)
    one_pass = python_scan_one_pass(model, paths[:100], args.size)
    projections = python_projections(model, paths[:20], args.size, [(u, p) for u, p in zip(range(20), paths[:20])])

    print(f"DeconvNet, resnet18 layer3 ({units} units), top 9, {len(paths)} images at {args.size}x{args.size}, "
          "1 thread, OMP_WAIT_POLICY=PASSIVE")
    print(f"1. top-k scan, images/s for the whole layer: cnnviz {cpp_scan:.1f}; python one unit at a time "
          f"{one_unit:.3f} -> {cpp_scan / one_unit:.0f}x; python one pass, forward per image {one_pass:.1f} -> "
          f"{cpp_scan / one_pass:.2f}x")
    print(f"2. projections/s: cnnviz {cpp_projections:.1f}; python one pair per backward {projections:.1f} -> "
          f"{cpp_projections / projections:.2f}x")


if __name__ == "__main__":
    main()
