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
import torch.nn.functional as F  # noqa: E402

from bench_common import ENV, ROOT, ensure_resnet18  # noqa: E402
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
    model.load_state_dict(torch.jit.load(weights_path).state_dict())
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--images", type=int, default=2000, help="dataset size (default 2000)")
    parser.add_argument("--size", type=int, default=224, help="model input side (default 224)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    resnet = ensure_resnet18(args.build)
    data = os.path.dirname(resnet)
    dataset = os.path.join(data, f"concepts{args.images}")
    if not os.path.exists(os.path.join(dataset, "index.csv")):
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "make_concepts.py"), "--out", dataset,
                        "--count", str(args.images), "--seed", "0"], check=True, env=ENV, stdout=subprocess.DEVNULL)

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

    import csv
    with open(os.path.join(dataset, "index.csv")) as handle:
        paths = [os.path.join(dataset, "images", row["image"]) for row in csv.DictReader(handle)]
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
