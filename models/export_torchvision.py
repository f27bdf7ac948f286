#!/usr/bin/python3
"""Export a torchvision classifier (or the bundled TinyCNN) to TorchScript, with
a cnnviz sidecar and, optionally, a reference file for cnnviz's C++ tests.

Outputs for --out PATH.pt:
  PATH.pt           torch.jit.script or torch.jit.trace of the eval-mode model
  PATH.json         sidecar "cnnviz-sidecar-1": input size/range/mean/std,
                    labels file, layer aliases (e.g. alexnet conv5 -> features.10)
  PATH_labels.txt   class names, with --pretrained (torchvision's categories) or
                    for tinycnn (copied from its own labels file)
  REF.pt            with --reference: torch.save of reference_rules.reference():
                    input, eager output, every module call's output in call-return
                    order ("order", "tap:<path>"), and input gradients under the
                    gradient / DeconvNet / guided-backprop ReLU rules for the
                    objectives output[0, 7] and sum(mid layer) -- see
                    models/reference_rules.py for the exact keys and checks.

The export happens before the reference replaces any ReLU, so the TorchScript
file always holds the unmodified model. A random-init model's BatchNorm
statistics are first set from random images (see calibrate_batch_norm;
--no-calibrate-bn keeps torchvision's mean 0 / var 1).

After saving, the script reloads PATH.pt and checks it reproduces the eager
logits (on the reference input, else on a random input of --input-size).

Examples:
  /usr/bin/python3 models/export_torchvision.py --arch resnet18 --script --out /tmp/r18.pt \\
      --reference /tmp/r18_ref.pt
  /usr/bin/python3 models/export_torchvision.py --arch tinycnn --weights-from models/tinycnn.pt \\
      --trace --out /tmp/tiny_traced.pt --reference /tmp/tiny_ref.pt
"""

import os

# libgomp reads this when torch is imported: idle OpenMP threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402
from reference_rules import logits_of, reference  # noqa: E402

SIDECAR_FORMAT = "cnnviz-sidecar-1"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
TORCHVISION_INPUT_SIZE = 224
MID_LAYERS = {"alexnet": "features.10", "vgg16": "features.20", "resnet18": "layer3",
              "googlenet": "inception4a", "mobilenet_v2": "features.10", "tinycnn": "conv4"}
OUTPUT_TOLERANCE = 1e-4  # reloaded export vs eager logits, relative to their magnitude
MAX_DETAIL = 240  # characters of a load_state_dict error kept in the one-line message
CALIBRATION_BATCH = 4  # random images used to set BatchNorm statistics of random-init models
# Random streams derived from --seed: weights use torch.manual_seed(seed), the
# reference input seed + 0, and these two their own generators.
TRACE_EXAMPLE_SEED_OFFSET = 1
CALIBRATION_SEED_OFFSET = 2


# ---------------------------------------------------------------- models
def torchvision_archs():
    """Names of torchvision's classification models (torchvision.models.list_models)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def load_state_dict(path):
    """The state_dict of a TorchScript file, or of a torch.save'd state_dict, at `path`."""
    if not os.path.isfile(path):
        raise _cli.UserError(f"--weights-from file not found: {path}")
    try:
        return torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:
        pass
    loaded = torch.load(path, map_location="cpu")
    if not isinstance(loaded, dict):
        raise _cli.UserError(f"{path} is neither TorchScript nor a state_dict")
    return loaded


def apply_weights(model, path):
    """Load the weights stored at `path` into `model`; UserError if they do not fit."""
    try:
        model.load_state_dict(load_state_dict(path))
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        if len(detail) > MAX_DETAIL:
            detail = detail[:MAX_DETAIL] + " ..."
        raise _cli.UserError(f"weights in {path} do not fit the model: {detail}") from None


def build_tinycnn(weights_from):
    """Eager TinyCNN holding the weights of the TorchScript file `weights_from`."""
    import train_bundled  # local import: pulls in the dataset renderer

    if not weights_from:
        raise _cli.UserError("--arch tinycnn needs --weights-from FILE.pt (e.g. models/tinycnn.pt)")
    state = load_state_dict(weights_from)
    if "classifier.weight" not in state:
        raise _cli.UserError(f"{weights_from} holds no TinyCNN weights (no classifier.weight)")
    model = train_bundled.TinyCNN(num_classes=state["classifier.weight"].shape[0])
    apply_weights(model, weights_from)
    return model


def build_torchvision(arch, pretrained, weights_from):
    """Eager torchvision model `arch` (random init unless pretrained) and its categories or None."""
    if arch not in torchvision_archs():
        raise _cli.UserError(f"unknown --arch {arch!r}; --arch-list prints the choices")
    kwargs, weights = {}, None
    if arch == "googlenet":
        kwargs["aux_logits"] = False
        if not pretrained:
            kwargs.update(init_weights=True, transform_input=False)
    if pretrained:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        model = torchvision.models.get_model(arch, weights=weights, **kwargs)
    except (OSError, RuntimeError) as error:  # urllib's URLError is an OSError
        raise _cli.UserError(f"could not get pretrained {arch} weights (needs internet): "
                             f"{' '.join(str(error).split())}") from None
    if weights_from:
        apply_weights(model, weights_from)
    return model, (list(weights.meta["categories"]) if weights else None)


@torch.no_grad()
def calibrate_batch_norm(model, size, seed):
    """Set every BatchNorm's running mean/var to its statistics on random N(0,1) images.

    Randomly initialized BatchNorm (mean 0, var 1) does not normalize in eval
    mode, so deep random nets (googlenet, mobilenet_v2) shrink activations to
    ~1e-10 and their gradients to ~1e-14. After calibration every BatchNorm
    output has unit scale, which keeps activations and reference gradients
    meaningful. Only BatchNorm buffers change; returns how many were set.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batch
        norm.train()
    images = torch.randn(CALIBRATION_BATCH, 3, size, size,
                         generator=torch.Generator().manual_seed(seed))
    try:
        if norms:
            model(images)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()
    return len(norms)


# ---------------------------------------------------------------- sidecar
def alexnet_aliases():
    """Caffe-style AlexNet names (conv1..conv5, fc6..fc8) for torchvision's module paths."""
    convs = {f"conv{i}": f"features.{n}" for i, n in enumerate((0, 3, 6, 8, 10), start=1)}
    return {**convs, "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"}


def vgg_aliases(model):
    """VGG names conv<block>_<k> (the Conv2d modules) and fc6..fc8, read off model.features."""
    aliases, block, index = {}, 1, 1
    for position, layer in enumerate(model.features):
        if isinstance(layer, nn.Conv2d):
            aliases[f"conv{block}_{index}"] = f"features.{position}"
            index += 1
        elif isinstance(layer, nn.MaxPool2d):
            block, index = block + 1, 1
    return {**aliases, "fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"}


def aliases_for(arch, model):
    """Conventional layer names of an architecture mapped to module paths ({} if none)."""
    if arch == "alexnet":
        return alexnet_aliases()
    if arch.startswith("vgg"):
        return vgg_aliases(model)
    if arch.startswith("resnet"):  # He et al. 2016, Table 1
        return {"conv1": "conv1", "conv2_x": "layer1", "conv3_x": "layer2",
                "conv4_x": "layer3", "conv5_x": "layer4"}
    if arch == "tinycnn":
        return {f"conv{i}": f"conv{i}" for i in range(1, 6)}
    return {}


def write_sidecar(out_path, arch, size, input_spec, labels, notes, aliases):
    """Write PATH.json (and PATH_labels.txt when `labels` is a list of names)."""
    stem = os.path.splitext(out_path)[0]
    sidecar = {"format": SIDECAR_FORMAT, "architecture": arch,
               "input": {"size": [size, size], "channels": 3, "channel_order": "RGB",
                         "range": [0.0, 1.0], "mean": input_spec["mean"], "std": input_spec["std"]}}
    if labels:
        labels_file = os.path.basename(stem) + "_labels.txt"
        with open(stem + "_labels.txt", "w", encoding="utf-8") as handle:
            handle.write("".join(name + "\n" for name in labels))
        sidecar["labels"] = labels_file
    sidecar.update(aliases=aliases, notes=notes)
    with open(stem + ".json", "w", encoding="utf-8") as handle:
        json.dump(sidecar, handle, indent=2)
        handle.write("\n")


def tinycnn_source(weights_from):
    """(sidecar dict, label names) of the sidecar next to weights_from (e.g. models/tinycnn.json)."""
    sidecar_path = os.path.splitext(weights_from)[0] + ".json"
    try:
        with open(sidecar_path, encoding="utf-8") as handle:
            sidecar = json.load(handle)
        labels_path = os.path.join(os.path.dirname(sidecar_path), sidecar["labels"])
        with open(labels_path, encoding="utf-8") as handle:
            labels = [line.rstrip("\n") for line in handle if line.strip()]
        missing = [key for key in ("size", "mean", "std") if key not in sidecar["input"]]
        if missing:
            raise KeyError(f"input.{missing[0]}")
        return sidecar, labels
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise _cli.UserError(f"cannot read TinyCNN sidecar {sidecar_path}: {error}") from None


# ---------------------------------------------------------------- export
def export(model, mode, example, out_path):
    """Script or trace the eval-mode `model` (trace with `example`) and save it to out_path."""
    with warnings.catch_warnings():
        # Known, harmless here: googlenet's "always returns GoogleNetOutputs" and tracer notes.
        warnings.simplefilter("ignore")
        exported = torch.jit.script(model) if mode == "script" else torch.jit.trace(model, example)
    exported.save(out_path)


def check_export(out_path, inputs, expected):
    """Reload out_path and return max |export(inputs) - expected|; RuntimeError if too large."""
    loaded = torch.jit.load(out_path, map_location="cpu")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Scripted GoogleNet always returns")
        difference = (logits_of(loaded(inputs)) - expected).abs().max().item()
    if difference > OUTPUT_TOLERANCE * max(1.0, expected.abs().max().item()):
        raise RuntimeError(f"reloaded {out_path} differs from the eager model by {difference:g}")
    return difference


# ---------------------------------------------------------------- command line
def parse_args(argv=None):
    """Command-line arguments (see --help)."""
    parser = _cli.ArgumentParser(
        prog="export_torchvision.py",
        description="Export a torchvision classifier (or TinyCNN) to TorchScript with a cnnviz "
                    "sidecar, and optionally a reference file of taps, logits and rule gradients.")
    parser.add_argument("--arch", help="torchvision model name (e.g. alexnet, vgg16, resnet18, "
                                       "googlenet, mobilenet_v2) or tinycnn")
    parser.add_argument("--arch-list", action="store_true",
                        help="print the supported architecture names and exit")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--script", dest="mode", action="store_const", const="script",
                      help="export with torch.jit.script")
    mode.add_argument("--trace", dest="mode", action="store_const", const="trace",
                      help="export with torch.jit.trace on a random input of --input-size")
    parser.add_argument("--out", help="TorchScript output PATH.pt (sidecar PATH.json next to it)")
    parser.add_argument("--pretrained", action="store_true",
                        help="torchvision's default weights (downloads; needs internet)")
    parser.add_argument("--weights-from", metavar="FILE.pt",
                        help="load weights from a TorchScript file or state_dict (required for "
                             "tinycnn, e.g. models/tinycnn.pt)")
    parser.add_argument("--input-size", type=int,
                        help="sidecar input size and trace example size (default 224; tinycnn: "
                             "the size in its sidecar, 96)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random weights and the random inputs (default 0)")
    parser.add_argument("--reference", metavar="REF.pt", help="also write the reference dictionary")
    parser.add_argument("--reference-size", type=int, default=64,
                        help="side S of the reference input [1,3,S,S] (default 64)")
    parser.add_argument("--mid-layer",
                        help="module path of the 'mid' objective (default per arch: "
                             + ", ".join(f"{a} {m}" for a, m in MID_LAYERS.items()) + ")")
    parser.add_argument("--no-calibrate-bn", dest="calibrate_bn", action="store_false",
                        help="keep a random-init model's BatchNorm statistics at mean 0, var 1 "
                             "(default: set them from random images so activations keep their "
                             "scale; never done for --pretrained or --weights-from)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="torch CPU threads (default min(2, cores))")
    args = parser.parse_args(argv)
    if args.arch_list:
        return args
    for name in ("arch", "mode", "out"):
        if getattr(args, name) is None:
            option = {"mode": "--script or --trace"}.get(name, f"--{name}")
            parser.error(f"{option} is required")
    if args.pretrained and (args.weights_from or args.arch == "tinycnn"):
        parser.error("--pretrained cannot be combined with --weights-from or tinycnn")
    for name in ("input_size", "reference_size", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def reference_mid_layer(model, arch, requested):
    """The 'mid' objective's module path: `requested` or the arch default; UserError if absent."""
    mid_layer = requested or MID_LAYERS.get(arch)
    if mid_layer is None:
        raise _cli.UserError(f"no default mid layer for {arch}; pass --mid-layer")
    if mid_layer not in dict(model.named_modules()):
        raise _cli.UserError(f"--mid-layer {mid_layer!r} is not a module of {arch}")
    return mid_layer


def describe(args, exported_with, calibrated, source_notes=None):
    """Free-text sidecar notes: weights source and export method."""
    if args.pretrained:
        weights = "torchvision default pretrained weights"
    elif args.weights_from:
        weights = f"weights from {os.path.basename(args.weights_from)}"
    else:
        weights = f"random initialization (torch.manual_seed({args.seed}))"
        if calibrated:
            weights += (f", BatchNorm statistics set from {CALIBRATION_BATCH} random N(0,1) "
                        f"images (seed {args.seed + CALIBRATION_SEED_OFFSET})")
    source = f" Source model: {source_notes}" if source_notes else ""
    return (f"{args.arch}, {weights}; exported with torch.jit.{exported_with} by "
            f"models/export_torchvision.py (torch {torch.__version__}, torchvision "
            f"{torchvision.__version__}).{source}")


def main(argv=None):
    """Build, export, write the sidecar and optional reference, then self-check."""
    args = parse_args(argv)
    if args.arch_list:
        print("\n".join(torchvision_archs() + ["tinycnn"]))
        return 0
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    source_notes = None
    if args.arch == "tinycnn":
        model = build_tinycnn(args.weights_from)
        source, labels = tinycnn_source(args.weights_from)
        input_spec, source_notes = source["input"], source.get("notes")
        size = args.input_size or input_spec["size"][0]
    else:
        model, labels = build_torchvision(args.arch, args.pretrained, args.weights_from)
        input_spec = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        size = args.input_size or TORCHVISION_INPUT_SIZE
    model.eval()
    random_weights = not (args.pretrained or args.weights_from)
    calibrated = False
    if args.calibrate_bn and random_weights:
        calibrated = calibrate_batch_norm(model, size, args.seed + CALIBRATION_SEED_OFFSET) > 0
    if args.reference:  # fail on a bad mid layer before writing anything
        mid_layer = reference_mid_layer(model, args.arch, args.mid_layer)
    seed = args.seed + TRACE_EXAMPLE_SEED_OFFSET
    example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    export(model, args.mode, example, args.out)
    write_sidecar(args.out, args.arch, size, input_spec, labels,
                  describe(args, args.mode, calibrated, source_notes),
                  aliases_for(args.arch, model))
    if args.reference:
        ref = reference(model, args.arch, args.reference_size, args.seed, mid_layer)
        torch.save(ref, args.reference)
        check_input, expected = ref["input"], ref["output"]
    else:
        check_input = example
        with torch.no_grad():
            expected = logits_of(model(example))
    difference = check_export(args.out, check_input, expected)
    print(f"{args.arch} {args.mode}: wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB)"
          + (f", {args.reference}" if args.reference else "")
          + f"; reloaded max|diff| {difference:.2g}; {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run_main(main, "export_torchvision.py"))
