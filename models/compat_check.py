#!/usr/bin/python3
"""Compatibility sweep of cnnviz over torchvision families (issue 22).

For each (architecture, export format) the sweep
  1. exports the model with models/export_torchvision.py (random weights,
     cached in OUT/models/s<SIZE>/ and reused when present),
  2. runs `cnnviz layers --json` and checks every tappable layer's units
     against shape[channel_axis]; checks the channel axis independently on the
     eager model: of a 4-D output's axes 1..3, the one whose size does not
     change between inputs of SIZE and SIZE+32 (ties between unchanged axes
     are broken by dropping size-1 axes, i.e. globally pooled ones),
  3. checks receptive fields: the bounding box of the support of the input
     gradient of the centre unit (channels summed with fixed random weights,
     union over RF_SEEDS random inputs) against cnnviz's box for that unit,
     clipped to the image: "equal", "contains" or "violation" (the support
     leaves cnnviz's box); a field cnnviz calls global counts as "global",
     and as "global_spatial" when the support is smaller than that of the
     logits (the pixels the network sees at all),
  4. runs actmax, deconv (--rule deconvnet and guided), invert and dissect on
     one mid layer (channel axis 1, about 2/3 of the depth), and, where the
     eager model has channels-last layers (ConvNeXt), the same commands on one
     of those, where actmax, deconv and dissect must refuse,
and writes OUT/matrix.json (every number) and OUT/matrix.md (one row per
arch x format, then the findings).

Exit status: 0 without a hard failure, 1 with one, 2 for bad arguments.
Hard failures: a units or channel-axis mismatch, an RF violation,
`cnnviz layers` failing on an exported model, a command that crashes, times
out or exits with a code README.md's table does not document as a refusal
(0, 2, 3, 4 are documented; 1 is a bug), or a channels-last layer accepted
where a refusal is expected. A refused size (exporter), a documented refusal
of a command, a spatial layer called global and layer-list differences are
findings but not failures.

Examples:
  scripts/compat_sweep.sh --fast                        (the CI subset, 64 px)
  CNNVIZ_BIN=/tmp/cnnviz /usr/bin/python3 models/compat_check.py --archs densenet121 \\
      --formats script --size 96 --out /tmp/compat
"""

import os

# libgomp reads these when torch is imported: one thread, idle threads sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402

MODELS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(MODELS_DIR)
sys.path.insert(0, MODELS_DIR)
import _cli  # noqa: E402
import export_torchvision  # noqa: E402
from reference_rules import logits_of  # noqa: E402

FAMILIES = ("resnext50_32x4d", "wide_resnet50_2", "vgg11_bn", "squeezenet1_1", "mnasnet0_5",
            "regnet_x_400mf", "inception_v3", "densenet121", "shufflenet_v2_x1_0",
            "convnext_tiny", "efficientnet_b0", "mobilenet_v3_small")
FORMATS = ("script", "trace")
FAST_RUNS = (("densenet121", "script"), ("convnext_tiny", "script"), ("convnext_tiny", "trace"),
             ("efficientnet_b0", "trace"), ("mobilenet_v3_small", "script"),
             ("shufflenet_v2_x1_0", "script"))
FAST_SIZE = 64
DEFAULT_SIZE = 128
AXIS_SIZE_STEP = 32  # the channel axis is the one that keeps its size from S to S + this
RF_SEEDS = (0, 1, 2)  # random N(0,1) inputs whose gradient supports are united
# Channels are summed with N(0,1) weights from this seed: a plain sum over the channels of a
# LayerNorm output (gain 1, bias 0 at init) is constant, so its gradient would vanish.
CHANNEL_WEIGHT_SEED = 0
MID_DEPTH = 2 / 3  # the commands' layer: this far down the candidate layers
EXPORT_TIMEOUT_S = 600
LAYERS_TIMEOUT_S = 300
DOCUMENTED_REFUSALS = {2: "usage/refusal", 3: "bad input or output", 4: "model cannot run as asked"}
STOPPED_CODES = (129, 130, 143)  # SIGHUP, SIGINT, SIGTERM: a stopped run, never a result
# Layers the commands run on: key -> (eager channel axis, whether cnnviz's axis must agree).
# The channels-last picks run only REFUSING_COMMANDS, which must refuse them: one cnnviz
# finds channels-last and, where there is one, one it takes for channels-first.
LAYER_PICKS = {"mid": (1, True), "channels_last": (3, True), "channels_last_missed": (3, False)}
COMMANDS = ("actmax", "deconv-deconvnet", "deconv-guided", "invert", "dissect")
REFUSING_COMMANDS = ("actmax", "deconv-deconvnet", "deconv-guided", "dissect")
EXAMPLES_SHOWN = 3  # layer names quoted per finding (matrix.json has them all)
# Per-command settings: short runs that exercise each command end to end.
BUDGETS = {
    "full": {"timeout_s": 300, "actmax_units": "0,1", "actmax_steps": 8, "deconv_top": 4,
             "invert_steps": 10, "invert_levels": 2, "dissect_images": 20},
    "fast": {"timeout_s": 60, "actmax_units": "0", "actmax_steps": 2, "deconv_top": 2,
             "invert_steps": 2, "invert_levels": 1, "dissect_images": 6},
}


# ---------------------------------------------------------------- processes
def first_line(text):
    """The first non-blank line of `text`, stripped ('' if none)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def error_line(stderr):
    """The first '<prog>: error: ...' line of stderr, else its last non-blank line ('' if none)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return next((line for line in lines if ": error: " in line), lines[-1] if lines else "")


def run_process(argv, timeout_s):
    """Run argv; dict with exit code (None on timeout), seconds, stdout and stderr's error line."""
    started = time.time()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"code": None, "seconds": round(time.time() - started, 1), "stdout": "",
                "error": f"timed out after {timeout_s} s"}
    return {"code": done.returncode, "seconds": round(time.time() - started, 1),
            "stdout": done.stdout, "error": error_line(done.stderr)}


def outcome(code):
    """'ok', 'refused' (a documented refusal code) or 'failed' for an exit code (None: timeout)."""
    if code == 0:
        return "ok"
    if code in DOCUMENTED_REFUSALS:
        return "refused"
    return "failed"


def describe_code(code):
    """Exit code in words: 'timeout', '2 (usage/refusal)', 'signal SIGSEGV', '1 (undocumented)'."""
    if code is None:
        return "timeout"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    if code in STOPPED_CODES:
        return f"{code} (stopped by a signal)"
    meaning = DOCUMENTED_REFUSALS.get(code, "internal error" if code == 1 else "undocumented")
    return f"{code} ({meaning})"


def sha256_of(path):
    """Hex SHA-256 of a file (identifies the cnnviz build a matrix was made with)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- export
def export_model(arch, fmt, size, models_dir):
    """Export arch with torch.jit.<fmt> at `size` (cached); dict with path or error."""
    path = os.path.join(models_dir, f"{arch}_{fmt}.pt")
    sidecar = os.path.splitext(path)[0] + ".json"
    if os.path.isfile(path) and os.path.isfile(sidecar):
        return {"path": path, "cached": True, "seconds": 0.0}
    os.makedirs(models_dir, exist_ok=True)
    partial = os.path.join(models_dir, f".{arch}_{fmt}.partial.pt")
    result = run_process([sys.executable, os.path.join(MODELS_DIR, "export_torchvision.py"),
                          "--arch", arch, f"--{fmt}", "--input-size", str(size),
                          "--out", partial, "--threads", "1"], EXPORT_TIMEOUT_S)
    if result["code"] != 0:
        return {"path": None, "error": result["error"] or describe_code(result["code"]),
                "seconds": result["seconds"]}
    os.replace(os.path.splitext(partial)[0] + ".json", sidecar)  # sidecar first: .pt marks done
    os.replace(partial, path)
    return {"path": path, "cached": False, "seconds": result["seconds"]}


# ---------------------------------------------------------------- eager model
def eager_model(arch, size):
    """The eager model exactly as the exporter builds it (seed 0, BatchNorm calibrated at size).

    In-place modules are made out-of-place so that each module's recorded
    output keeps its own values and gradient path.
    """
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. inception_v3's note on its default initialization
        model, _ = export_torchvision.build_torchvision(arch, pretrained=False, weights_from=None)
    model.eval()
    export_torchvision.calibrate_batch_norm(model, size, export_torchvision.CALIBRATION_SEED_OFFSET)
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def record_first_calls(model, inputs):
    """Run model(inputs); (its output, each module's first-call output {path: Tensor or None}).

    Tensors are cloned when returned (a later functional in-place op cannot
    change them); modules that return the same tensor object share one clone.
    """
    outputs, clones, keep_alive, handles = {}, {}, [], []

    def hook_for(name):
        def hook(_module, _inputs, output):
            if name in outputs:
                return
            if not isinstance(output, torch.Tensor):
                outputs[name] = None
                return
            if id(output) not in clones:
                keep_alive.append(output)  # keeps id() unique while recording
                clones[id(output)] = output.clone()
            outputs[name] = clones[id(output)]
        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return result, outputs


def channel_axis(shape, other_shape):
    """The axis among 1..rank-1 that keeps its size across input sizes, or None if ambiguous."""
    if len(shape) != len(other_shape) or len(shape) < 2:
        return None
    kept = [axis for axis in range(1, len(shape)) if shape[axis] == other_shape[axis]]
    if len(kept) > 1:
        kept = [axis for axis in kept if shape[axis] != 1]
    return kept[0] if len(kept) == 1 else None


def support_box(gradient):
    """Bounding box [y0, x0, y1, x1) of the nonzero pixels of a [B,3,H,W] gradient, or None."""
    mask = gradient.abs().sum(dim=(0, 1)) > 0
    rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
    if len(rows) == 0:
        return None
    return [rows[0].item(), cols[0].item(), rows[-1].item() + 1, cols[-1].item() + 1]


def centre_index(spatial):
    """The centre unit's (row, column) of an output map of size (H, W)."""
    return [(extent - 1) // 2 for extent in spatial]


def centre_units(output, axis):
    """(centre [row, col], spatial size [H, W], the centre's units [B, C]) of a 4-D output.

    Indexes in the output's own layout: the gradient then has the layout of
    the output (torch 1.13's CPU gelu_backward reads a gradient laid out
    unlike its input, e.g. one coming back through movedim, as if it were
    laid out like it, and returns garbage).
    """
    spatial_axes = [dim for dim in (1, 2, 3) if dim != axis]
    spatial = [output.shape[dim] for dim in spatial_axes]
    centre = centre_index(spatial)
    index = [slice(None)] * 4
    for dim, position in zip(spatial_axes, centre):
        index[dim] = position
    return centre, spatial, output[tuple(index)]


def weighted_support(units, inputs):
    """support_box of d(units [B,C] summed with CHANNEL_WEIGHT_SEED weights)/d inputs, or None."""
    if not units.requires_grad:
        return None
    weights = torch.randn(units.shape[1],
                          generator=torch.Generator().manual_seed(CHANNEL_WEIGHT_SEED))
    gradient, = torch.autograd.grad((units * weights).sum(), inputs, retain_graph=True,
                                    allow_unused=True)
    return None if gradient is None else support_box(gradient)


def empirical_fields(outputs, axes, inputs):
    """{path: {"centre", "spatial", "box"}} for every 4-D output whose channel axis is known.

    box is the weighted_support of the centre unit's channels; modules sharing
    one output tensor share one backward pass.
    """
    fields, by_tensor = {}, {}
    for name, output in outputs.items():
        axis = axes.get(name)
        if output is None or output.dim() != 4 or axis is None:
            continue
        centre, spatial, units = centre_units(output, axis)
        if id(output) not in by_tensor:
            by_tensor[id(output)] = weighted_support(units, inputs)
        fields[name] = {"centre": centre, "spatial": spatial, "box": by_tensor[id(output)]}
    return fields


def analyse_eager(arch, size):
    """Shapes, channel axes and empirical receptive fields of the eager model at `size`.

    seen_box is the support of the logits: what a global field should cover.
    """
    model = eager_model(arch, size)
    with torch.no_grad():
        _, larger = record_first_calls(model, torch.randn(1, 3, size + AXIS_SIZE_STEP,
                                                       size + AXIS_SIZE_STEP))
    inputs = torch.cat([torch.randn(1, 3, size, size,
                                    generator=torch.Generator().manual_seed(seed))
                        for seed in RF_SEEDS]).requires_grad_(True)
    result, outputs = record_first_calls(model, inputs)
    shapes = {name: [1] + list(out.shape[1:]) for name, out in outputs.items() if out is not None}
    axes = {name: channel_axis(shape, [1] + list(larger[name].shape[1:]))
            for name, shape in shapes.items() if larger.get(name) is not None}
    return {"shapes": shapes, "axes": axes,
            "non_tensor": sorted(name for name, out in outputs.items() if out is None),
            "fields": empirical_fields(outputs, axes, inputs),
            "seen_box": weighted_support(logits_of(result), inputs)}


# ---------------------------------------------------------------- comparisons
def cnnviz_box(field, centre, size):
    """cnnviz's box [y0, x0, y1, x1) for the unit at `centre`, clipped to the image [0, size)."""
    low, high = [], []
    for dim in (0, 1):
        middle = field["offset"][dim] + centre[dim] * field["stride"][dim]
        half = (field["size"][dim] - 1) / 2
        low.append(min(max(math.floor(middle - half), 0), size))
        high.append(min(max(math.floor(middle + half) + 1, 0), size))
    return low + high


def rf_verdict(field, empirical, seen_box, size):
    """(verdict, cnnviz box) for one layer; verdicts as in the module docstring."""
    if empirical["box"] is None:
        return "no_gradient", None
    if field.get("global"):
        return ("global" if empirical["box"] == seen_box else "global_spatial"), None
    box = cnnviz_box(field, empirical["centre"], size)
    theirs = empirical["box"]
    if box == theirs:
        return "equal", box
    inside = box[0] <= theirs[0] and box[1] <= theirs[1] and box[2] >= theirs[2] \
        and box[3] >= theirs[3]
    return ("contains" if inside else "violation"), box


def compare_layer(layer, eager, size):
    """Checks of one cnnviz layer against itself and the eager model (a dict of results)."""
    shape, axis = layer["shape"], layer["channel_axis"]
    row = {"name": layer["name"], "type": layer["type"], "shape": shape, "units": layer["units"],
           "channel_axis": axis, "tappable": layer["tappable"], "note": layer["note"],
           "units_ok": axis is not None and 0 <= axis < len(shape)
                       and layer["units"] == shape[axis]}
    if "#" in layer["name"] or layer["name"] not in eager["shapes"]:
        return row
    eager_shape, eager_axis = eager["shapes"][layer["name"]], eager["axes"].get(layer["name"])
    row.update(eager_shape=eager_shape, eager_axis=eager_axis, shape_ok=eager_shape == shape)
    if eager_axis is not None:
        row["axis_ok"] = eager_axis == axis and layer["units"] == eager_shape[eager_axis]
    empirical = eager["fields"].get(layer["name"])
    field = layer.get("receptive_field")
    if empirical is not None and layer["tappable"]:
        if not field:
            row["rf"] = {"verdict": "missing", "empirical": empirical["box"]}
        else:
            verdict, box = rf_verdict(field, empirical, eager["seen_box"], size)
            row["rf"] = {"verdict": verdict, "cnnviz": box, "empirical": empirical["box"],
                         "centre": empirical["centre"],
                         "method": field.get("method", field.get("source"))}
    return row


def compare_layers(listing, eager, size):
    """Per-layer rows plus the names only cnnviz or only the eager model has."""
    rows = [compare_layer(layer, eager, size) for layer in listing["layers"]]
    listed = {row["name"] for row in rows}
    return {"rows": rows,
            "cnnviz_only": [row["name"] for row in rows if "#" not in row["name"]
                            and row["name"] not in eager["shapes"]
                            and row["name"] not in eager["non_tensor"]],
            "eager_only": [name for name in eager["shapes"] if name not in listed]}


def summarize_layers(comparison):
    """Counts of the layer checks (what matrix.md shows)."""
    rows = comparison["rows"]
    tappable = [row for row in rows if row["tappable"]]
    verdicts = {}
    methods = {}
    for row in tappable:
        if "rf" in row:
            verdicts[row["rf"]["verdict"]] = verdicts.get(row["rf"]["verdict"], 0) + 1
            if row["rf"].get("method"):
                methods[row["rf"]["method"]] = methods.get(row["rf"]["method"], 0) + 1
    axis_rows = [row for row in tappable if "axis_ok" in row]
    return {"listed": len(rows), "tappable": len(tappable),
            "units_ok": sum(row["units_ok"] for row in tappable),
            "axis_checked": len(axis_rows), "axis_ok": sum(row["axis_ok"] for row in axis_rows),
            "shape_mismatches": sum(not row.get("shape_ok", True) for row in rows),
            "rf": verdicts, "rf_methods": methods,
            "not_tappable": {row["name"]: row["note"] for row in rows if not row["tappable"]},
            "cnnviz_only": len(comparison["cnnviz_only"]),
            "eager_only": len(comparison["eager_only"])}


# ---------------------------------------------------------------- commands
def pick_layer(rows, eager_axis, cnnviz_agrees):
    """The tappable 4-D layer about MID_DEPTH down those with channel axis `eager_axis` on the
    eager model and a spatial map larger than 1x1, whose cnnviz axis agrees (or not); or None."""
    candidates = [row for row in rows
                  if row["tappable"] and len(row["shape"]) == 4 and "#" not in row["name"]
                  and row.get("eager_axis") == eager_axis
                  and (row["channel_axis"] == eager_axis) == cnnviz_agrees
                  and min(extent for dim, extent in enumerate(row["shape"])
                          if dim not in (0, eager_axis)) > 1]
    return candidates[int(len(candidates) * MID_DEPTH)]["name"] if candidates else None


def command_lines(layer, size, image, concepts, budget):
    """{run name: cnnviz argv tail} of the commands run on one layer."""
    common = ["--layer", layer]
    deconv = common + ["--image", image, "--top", str(budget["deconv_top"])]
    return {
        "actmax": ["actmax"] + common + ["--units", budget["actmax_units"], "--steps",
                                         str(budget["actmax_steps"]), "--batch", "2",
                                         "--size", str(size)],
        "deconv-deconvnet": ["deconv"] + deconv + ["--rule", "deconvnet"],
        "deconv-guided": ["deconv"] + deconv + ["--rule", "guided"],
        "invert": ["invert"] + common + ["--image", image, "--steps", str(budget["invert_steps"]),
                                         "--levels", str(budget["invert_levels"])],
        "dissect": ["dissect", "--layers", layer, "--dataset", concepts,
                    "--max-images", str(budget["dissect_images"])],
    }


def rule_coverage(report_path, layer):
    """'relu x17, hardswish x9; plain: none' from a deconv report.json, or None."""
    try:
        with open(report_path, encoding="utf-8") as handle:
            coverage = json.load(handle)["rule_coverage"][layer]
    except (OSError, KeyError, ValueError):
        return None

    def listing(counts):
        return ", ".join(f"{op} x{count}" for op, count in counts.items()) or "none"

    covered, plain = coverage.get("covered", {}), coverage.get("plain_gradient", {})
    return f"{listing(covered)}; plain: {listing(plain)}"


def run_commands(binary, model, layer, names, run_dir, size, image, concepts, budget):
    """Run the commands `names` on `layer`; {name: result dict} (code, seconds, error, coverage)."""
    results, lines = {}, command_lines(layer, size, image, concepts, budget)
    for name in names:
        out = os.path.join(run_dir, name)
        shutil.rmtree(out, ignore_errors=True)
        argv = [binary, "-q", "--threads", "1"] + lines[name] + ["--model", model, "--out", out]
        result = run_process(argv, budget["timeout_s"])
        result.pop("stdout")
        result["outcome"] = outcome(result["code"])
        if name.startswith("deconv") and result["code"] == 0:
            result["rule_coverage"] = rule_coverage(os.path.join(out, "report.json"), layer)
        results[name] = result
    return results


# ---------------------------------------------------------------- findings
def finding(run, hard, text):
    """One finding of an arch x format run."""
    return {"arch": run["arch"], "format": run["format"], "hard": hard, "text": text}


def examples(names):
    """A few names, and how many more, for a one-line finding."""
    shown = ", ".join(names[:EXAMPLES_SHOWN])
    more = len(names) - EXAMPLES_SHOWN
    return shown + (f" (+{more} more)" if more > 0 else "")


def layer_findings(run, comparison):
    """Findings of the layer, channel-axis and receptive-field checks."""
    rows, found = comparison["rows"], []
    tappable = [row for row in rows if row["tappable"]]
    checks = (
        (True, "units != shape[channel_axis]", [r for r in tappable if not r["units_ok"]],
         lambda r: f"{r['name']} units {r['units']} shape {r['shape']} axis {r['channel_axis']}"),
        (True, "channel axis/units differ from the eager model",
         [r for r in tappable if r.get("axis_ok") is False],
         lambda r: f"{r['name']} cnnviz axis {r['channel_axis']} units {r['units']}, eager axis "
                   f"{r['eager_axis']} shape {r['eager_shape']}"),
        (True, "RF VIOLATION (empirical support outside cnnviz's box)",
         [r for r in tappable if r.get("rf", {}).get("verdict") == "violation"],
         lambda r: f"{r['name']} cnnviz {r['rf']['cnnviz']} empirical {r['rf']['empirical']}"),
        (False, "spatial layer reported global",
         [r for r in tappable if r.get("rf", {}).get("verdict") == "global_spatial"],
         lambda r: f"{r['name']} empirical {r['rf']['empirical']}"),
        (False, "4-D layer without a receptive field",
         [r for r in tappable if r.get("rf", {}).get("verdict") == "missing"],
         lambda r: r["name"]),
        (False, "output shape differs from the eager model",
         [r for r in rows if r.get("shape_ok") is False],
         lambda r: f"{r['name']} cnnviz {r['shape']} eager {r['eager_shape']}"),
        (False, "listed but not tappable", [r for r in rows if not r["tappable"]],
         lambda r: f"{r['name']} ({r['note']})"),
    )
    for hard, what, bad, describe in checks:
        if bad:
            found.append(finding(run, hard, f"{what}: {len(bad)} layer(s), e.g. "
                                            + "; ".join(describe(r) for r in bad[:EXAMPLES_SHOWN])))
    if comparison["cnnviz_only"]:
        found.append(finding(run, False, f"cnnviz lists {len(comparison['cnnviz_only'])} layer(s) "
                                         f"no eager module returns: "
                                         f"{examples(comparison['cnnviz_only'])}"))
    if comparison["eager_only"]:
        found.append(finding(run, False, f"cnnviz does not list {len(comparison['eager_only'])} "
                                         f"module(s) that return a tensor: "
                                         f"{examples(comparison['eager_only'])}"))
    return found


def command_findings(run, layer, results, expect_refusal):
    """Findings of one layer's command runs; expect_refusal names runs that must be refused."""
    found, accepted = [], []
    for name, result in results.items():
        what = f"{name} on {layer}: {describe_code(result['code'])}"
        if result["error"]:
            what += f": {result['error']}"
        if result["outcome"] == "failed":
            found.append(finding(run, True, what))
        elif name in expect_refusal and result["outcome"] == "ok":
            accepted.append(name)
        elif result["outcome"] == "refused" and name not in expect_refusal:
            found.append(finding(run, False, what))
    if accepted:
        found.append(finding(run, True, f"{', '.join(accepted)} accepted channels-last layer "
                                        f"{layer} (expected a refusal)"))
    return found


# ---------------------------------------------------------------- one arch x format
def sweep_one(run, eager, paths, settings):
    """Run every check of one arch x format into `run` (a dict); returns its findings."""
    export = export_model(run["arch"], run["format"], settings["size"], paths["models"])
    run["export"] = export
    if export["path"] is None:
        return [finding(run, False, f"exporter refused: {export['error']}")]
    binary = settings["cnnviz"]
    listed = run_process([binary, "-q", "--threads", "1", "layers", "--model", export["path"],
                          "--json"], LAYERS_TIMEOUT_S)
    run["layers_command"] = {key: listed[key] for key in ("code", "seconds", "error")}
    if listed["code"] != 0:
        return [finding(run, True, f"cnnviz layers: {describe_code(listed['code'])}: "
                                   f"{listed['error']}")]
    try:
        listing = json.loads(listed["stdout"])
    except ValueError as error:
        return [finding(run, True, f"cnnviz layers --json printed invalid JSON: {error}")]
    analysis = eager(run["arch"])
    run["seen_box"] = analysis["seen_box"]
    comparison = compare_layers(listing, analysis, settings["size"])
    run["summary"] = summarize_layers(comparison)
    run["layers"] = comparison["rows"]
    run["cnnviz_only"], run["eager_only"] = comparison["cnnviz_only"], comparison["eager_only"]
    found = layer_findings(run, comparison)
    run_dir = os.path.join(paths["runs"], f"{run['arch']}_{run['format']}")
    for key, (axis, agrees) in LAYER_PICKS.items():
        layer = pick_layer(comparison["rows"], axis, agrees)
        if layer is None:
            if key == "mid":
                found.append(finding(run, False, "no tappable 4-D channels-first layer to run "
                                                 "the commands on"))
            continue
        expect_refusal = REFUSING_COMMANDS if axis == 3 else ()
        names = expect_refusal or COMMANDS
        results = run_commands(binary, export["path"], layer, names, os.path.join(run_dir, key),
                               settings["size"], paths["image"], paths["concepts"],
                               settings["budget"])
        run[key] = {"layer": layer, "commands": results}
        found += command_findings(run, layer, results, expect_refusal)
    return found


def eager_cache(size):
    """analyse_eager(arch, size), computed once per arch and shared by its formats."""
    cache = {}

    def get(arch):
        if arch not in cache:
            cache.clear()  # one arch at a time: runs are ordered by arch
            cache[arch] = analyse_eager(arch, size)
        return cache[arch]

    return get


# ---------------------------------------------------------------- report
def command_cell(result):
    """✓, or the exit code and a short reason, for one command."""
    if result is None:
        return ""
    if result["outcome"] == "ok":
        return "✓"
    reason = result["error"].removeprefix("cnnviz: error: ")
    return describe_code(result["code"]) + (f": {reason[:60]}" if reason else "")


def coverage_cell(run):
    """The deconvnet rule's coverage (and guided's, when it differs) of the mid layer."""
    commands = run.get("mid", {}).get("commands", {})
    deconvnet = (commands.get("deconv-deconvnet") or {}).get("rule_coverage")
    guided = (commands.get("deconv-guided") or {}).get("rule_coverage")
    if guided and guided != deconvnet:
        return f"deconvnet: {deconvnet}; guided: {guided}"
    return deconvnet or ""


def channels_last_cell(run):
    """Exit codes of the channels-last runs, e.g. "block.3 (cnnviz axis 3): actmax 2, ..."."""
    cells = []
    for key in ("channels_last", "channels_last_missed"):
        if key not in run:
            continue
        layer = run[key]["layer"]
        axis = next(row["channel_axis"] for row in run["layers"] if row["name"] == layer)
        codes = ", ".join(f"{name.removeprefix('deconv-')} "
                          + ("✓" if result["code"] == 0 else
                             describe_code(result["code"]).split()[0])
                          for name, result in run[key]["commands"].items())
        cells.append(f"{layer} (cnnviz axis {axis}): {codes}")
    return "; ".join(cells)


def rf_cell(summary):
    """'equal / contains / global (of them spatial) / VIOLATION' counts, plus methods if given."""
    rf = summary["rf"]
    spatial = rf.get("global_spatial", 0)
    cell = (f"{rf.get('equal', 0)} / {rf.get('contains', 0)} / {rf.get('global', 0) + spatial} "
            f"({spatial}) / {rf.get('violation', 0)}")
    extra = {key: rf[key] for key in ("no_gradient", "missing") if rf.get(key)}
    extra.update(summary["rf_methods"])
    return cell + ("".join(f"; {key} {count}" for key, count in extra.items()) if extra else "")


def matrix_row(run):
    """One markdown table row of an arch x format run."""
    head = f"| {run['arch']} | {run['format']} |"
    if run["export"]["path"] is None:
        return head + f" export refused: {run['export']['error'][:80]} |" + " |" * 12
    if "summary" not in run:
        return head + " cnnviz layers failed (see findings) |" + " |" * 12
    summary, mid = run["summary"], run.get("mid", {})
    commands = mid.get("commands", {})
    cells = [f"{summary['tappable']}/{summary['listed']}",
             f"{summary['units_ok']}/{summary['tappable']}",
             f"{summary['axis_ok']}/{summary['axis_checked']}",
             rf_cell(summary), mid.get("layer", ""), coverage_cell(run)]
    cells += [command_cell(commands.get(name)) for name in COMMANDS]
    cells += [channels_last_cell(run), f"{run['seconds']:.0f}"]
    return head + "".join(f" {cell} |" for cell in cells)


def write_markdown(path, matrix):
    """matrix.md: the table, then every finding (hard ones marked)."""
    header = ("| arch | format | layers (tappable/listed) | units ok | channel axis ok (vs eager) "
              "| RF equal / contains / global (spatial) / VIOLATION | mid layer "
              "| rule coverage | actmax | deconv deconvnet | deconv guided | invert | dissect "
              "| channels-last layer | s |")
    lines = [f"# cnnviz compatibility sweep ({matrix['mode']}, {matrix['size']} px)", "",
             f"{matrix['cnnviz_version']}, `{matrix['cnnviz']}` (sha256 "
             f"{matrix['cnnviz_sha256'][:12]}), torch {matrix['torch']}, "
             f"{matrix['seconds']:.0f} s, {matrix['hard_failures']} hard failure(s).", "",
             header, "|" + "---|" * header.count(" |")]
    lines += [matrix_row(run) for run in matrix["runs"]]
    lines += ["", "## Findings", ""]
    lines += [f"- {'**FAIL** ' if item['hard'] else ''}{item['arch']} {item['format']}: "
              f"{item['text']}" for item in matrix["findings"]] or ["- none"]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def readme_cells(run):
    """The README table's cells for one run (None when it did not get as far as `cnnviz layers`)."""
    if run["export"]["path"] is None or "summary" not in run:
        return None
    summary, commands = run["summary"], run.get("mid", {}).get("commands", {})
    rf = summary["rf"]
    spatial_global = rf.get("global_spatial", 0)
    within = rf.get("equal", 0) + rf.get("contains", 0) + rf.get("global", 0)
    fields = (f"{within} contain it ({rf.get('global', 0)} global), {rf.get('violation', 0)} do not"
              + (f", {spatial_global} spatial reported global" if spatial_global else ""))
    methods = summary["rf_methods"]
    if methods.get("measured"):
        fields += f" ({methods['measured']} measured)"
    failed = [name for name in COMMANDS if commands.get(name) and commands[name]["outcome"] != "ok"]
    refused = channels_last_cell(run)
    return [f"{summary['tappable']}/{summary['listed']}",
            "✓" if summary["units_ok"] == summary["tappable"] and summary["axis_ok"] == summary["axis_checked"]
            else f"{summary['units_ok']}/{summary['tappable']}",
            fields, coverage_cell(run) or "-",
            "all ✓" if not failed else "failed: " + ", ".join(failed),
            "refused (exit 2)" if refused and "✓" not in refused else ("-" if not refused else refused)]


def write_readme_table(path, matrix):
    """readme_table.md: one row per architecture (formats merged when they agree), for README.md."""
    header = ("| architecture | export | layers tappable/listed | units and channel axes "
              "| receptive fields vs gradient support | DeconvNet/guided rules cover | "
              "actmax, deconv (2 rules), invert, dissect | channels-last layers |")
    lines = [header, "|" + "---|" * header.count(" |")]
    by_arch = {}
    for run in matrix["runs"]:
        by_arch.setdefault(run["arch"], []).append(run)
    for arch, runs in by_arch.items():
        cells = [(run["format"], readme_cells(run)) for run in runs]
        if len(cells) > 1 and all(c == cells[0][1] for _, c in cells):
            cells = [("+".join(fmt for fmt, _ in cells), cells[0][1])]
        for fmt, row in cells:
            if row is None:
                run = next(r for r in runs if r["format"] in fmt)
                reason = run["export"]["error"] if run["export"]["path"] is None else "cnnviz layers failed"
                row = [reason[:60]] + [""] * 5
            lines.append(f"| {arch} | {fmt} | " + " | ".join(row) + " |")
    lines += ["", f"{matrix['mode']} sweep at {matrix['size']} px, random weights, "
              f"{matrix['hard_failures']} hard failure(s); `scripts/compat_sweep.sh` writes it."]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def write_json(path, data):
    """Write data as indented JSON."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")


# ---------------------------------------------------------------- command line
def parse_args(argv=None):
    """Command-line arguments (see --help)."""
    parser = _cli.ArgumentParser(
        prog="compat_check.py",
        description="Check cnnviz against torchvision families exported scripted and traced: "
                    "units and channel axes, receptive fields against input-gradient supports, "
                    "and actmax/deconv/invert/dissect on one layer; writes matrix.json and "
                    "matrix.md and exits 1 on a hard failure.")
    parser.add_argument("--size", type=int, help=f"input size in pixels (default {DEFAULT_SIZE})")
    parser.add_argument("--archs", help="comma-separated architectures (default: the twelve "
                                        "families: " + ",".join(FAMILIES) + ")")
    parser.add_argument("--formats", help="script, trace or script,trace (default both)")
    parser.add_argument("--out", default=os.path.join(ROOT, "out", "compat"),
                        help="output folder: matrix.json, matrix.md, models/, runs/ "
                             "(default out/compat)")
    parser.add_argument("--fast", action="store_true",
                        help="the CI subset: " + ", ".join(f"{a} {f}" for a, f in FAST_RUNS)
                             + f", at {FAST_SIZE} px with short command runs")
    parser.add_argument("--cnnviz", default=os.environ.get(
                            "CNNVIZ_BIN", os.path.join(ROOT, "build", "apps", "cnnviz")),
                        help="cnnviz binary (default $CNNVIZ_BIN, else build/apps/cnnviz)")
    parser.add_argument("--concepts", default=os.environ.get(
                            "CNNVIZ_CONCEPTS", os.path.join(ROOT, "build", "fixtures", "concepts")),
                        help="Broden-format fixture for dissect, copied into --out (default "
                             "$CNNVIZ_CONCEPTS, else build/fixtures/concepts)")
    args = parser.parse_args(argv)
    if args.fast and (args.size or args.archs or args.formats):
        parser.error("--fast fixes the architectures, formats and size: "
                     "drop --size, --archs and --formats")
    if args.size is not None and args.size < 1:
        parser.error("--size must be positive")
    args.size = FAST_SIZE if args.fast else (args.size or DEFAULT_SIZE)
    formats = args.formats.split(",") if args.formats else list(FORMATS)
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown or not formats:
        parser.error(f"--formats takes script and/or trace, not {','.join(unknown) or 'nothing'}")
    archs = args.archs.split(",") if args.archs else list(FAMILIES)
    unknown = [arch for arch in archs if arch not in export_torchvision.torchvision_archs()]
    if unknown:
        parser.error(f"unknown --archs {','.join(unknown)} (see export_torchvision.py --arch-list)")
    args.runs = list(FAST_RUNS) if args.fast else [(a, f) for a in archs for f in formats]
    if not (os.path.isfile(args.cnnviz) and os.access(args.cnnviz, os.X_OK)):
        parser.error(f"no cnnviz binary at {args.cnnviz} (build it or set CNNVIZ_BIN)")
    if not (os.path.isfile(os.path.join(args.concepts, "index.csv"))
            and concept_images(args.concepts)):
        parser.error(f"no Broden fixture with images/synth/*.jpg at {args.concepts} (build the "
                     f"fixtures or set CNNVIZ_CONCEPTS)")
    return args


def concept_images(concepts):
    """Sorted names of the .jpg images in a Broden fixture's images/synth ([] if none)."""
    folder = os.path.join(concepts, "images", "synth")
    return sorted(name for name in os.listdir(folder)
                  if name.endswith(".jpg")) if os.path.isdir(folder) else []


def prepare(args):
    """Copy the concept fixture into the output folder; returns the paths dict."""
    concepts = os.path.join(args.out, "concepts")
    shutil.rmtree(concepts, ignore_errors=True)  # fixtures may be regenerated: copy afresh
    shutil.copytree(args.concepts, concepts)
    return {"models": os.path.join(args.out, "models", f"s{args.size}"),
            "runs": os.path.join(args.out, "runs", f"s{args.size}"), "concepts": concepts,
            "image": os.path.join(concepts, "images", "synth", concept_images(concepts)[0])}


def main(argv=None):
    """Sweep every requested arch x format, write the matrix, exit 1 on a hard failure."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    paths = prepare(args)
    settings = {"size": args.size, "cnnviz": os.path.abspath(args.cnnviz),
                "budget": BUDGETS["fast" if args.fast else "full"]}
    started = time.time()
    eager = eager_cache(args.size)
    runs, findings = [], []
    for index, (arch, fmt) in enumerate(args.runs, start=1):
        run_started = time.time()
        run = {"arch": arch, "format": fmt}
        found = sweep_one(run, eager, paths, settings)
        run["seconds"] = round(time.time() - run_started, 1)
        runs.append(run)
        findings += found
        hard = sum(item["hard"] for item in found)
        sys.stderr.write(f"[{index}/{len(args.runs)}] {arch} {fmt}: {len(found)} finding(s), "
                         f"{hard} hard; {run['seconds']:.0f} s (total "
                         f"{time.time() - started:.0f} s)\n")
    version = first_line(run_process([settings["cnnviz"], "--version"], 60)["stdout"])
    matrix = {"mode": "fast" if args.fast else "full", "size": args.size,
              "cnnviz": settings["cnnviz"], "cnnviz_version": version,
              "cnnviz_sha256": sha256_of(settings["cnnviz"]), "torch": torch.__version__,
              "budget": settings["budget"], "rf_seeds": list(RF_SEEDS),
              "seconds": round(time.time() - started, 1),
              "hard_failures": sum(item["hard"] for item in findings),
              "findings": findings, "runs": runs}
    write_json(os.path.join(args.out, "matrix.json"), matrix)
    write_markdown(os.path.join(args.out, "matrix.md"), matrix)
    write_readme_table(os.path.join(args.out, "readme_table.md"), matrix)
    sys.stderr.write(f"wrote {os.path.join(args.out, 'matrix.md')}: {len(findings)} finding(s), "
                     f"{matrix['hard_failures']} hard, {matrix['seconds']:.0f} s\n")
    return _cli.EXIT_FAILURE if matrix["hard_failures"] else 0


if __name__ == "__main__":
    sys.exit(_cli.run_main(main, "compat_check.py"))
