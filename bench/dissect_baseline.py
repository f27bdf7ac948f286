#!/usr/bin/python3
"""Plain-Python (eager PyTorch + numpy) baseline for `cnnviz dissect`: network dissection
(Bau et al., CVPR 2017) with the structure of CSAILVision/NetDissect-Lite (feature_operation.py).

    /usr/bin/python3 bench/dissect_baseline.py --model-kind tinycnn|resnet18 --weights FILE.pt
        --dataset DIR --layers conv3,conv4,conv5 [--quantile 0.005] [--iou-threshold 0.04]
        [--batch 16] [--max-images N] [--threads 1] [--workdir DIR] [--threshold-rule rank|quantile]
        [--union-across-categories] [--tally faithful|vectorized] [--all-ious] [--device cpu|cuda] [--json]

Model (eager, eval mode, forward hooks on the layers that clone their outputs):
  tinycnn   models/export_torchvision.build_tinycnn(FILE.pt) (e.g. models/tinycnn.pt);
  resnet18  torchvision resnet18(weights=None) with the state_dict of the TorchScript FILE.pt.
Input size, mean and std come from the cnnviz sidecar FILE.json next to the weights when it exists
(models/tinycnn.json for tinycnn otherwise); defaults: tinycnn 96x96 with tinycnn.json's statistics,
resnet18 224x224 with ImageNet mean/std. Images are decoded with PIL, scaled to [0, 1] and, when their
size differs from the input size, resized with F.interpolate(bilinear, align_corners=False) -- the same
op (at::upsample_bilinear2d) cnnviz uses -- then normalized.

Device: --device cpu (default) or cuda. With cuda the model and mean/std live on the GPU and pass (a)'s
forward runs there: each batch is decoded with PIL on the CPU, copied to the GPU, run, and the hooked
layers' maps are copied back (.cpu()) into the memmaps, as NetDissect-Lite does (its tally reads
features from CPU memory). Passes (b)-(d) are numpy/CPU torch on every device, as in Lite.
torch.cuda.synchronize() is called before every timer read. Nothing is tuned (no cudnn.benchmark, no
AMP: PyTorch's defaults). CUDA context creation happens in "load" (model.to), cuDNN's first-use
initialization in "extract" (there is no warmup: the pass runs once, as a NetDissect-Lite run does).

Algorithm, pass by pass (every image of index.csv, both splits, or the first --max-images):
  (a) extraction: batches of --batch images through the model; each layer's maps [N, K, h, w] are
      stored in a float32 numpy memmap under --workdir (a temporary directory, deleted at the end).
      NetDissect-Lite stores float64 (dtype=float); float32 halves the disk and page-cache footprint
      without changing a threshold beyond float32 rounding.
  (b) thresholds, EXACT, computed from the memmap a block of units at a time -- NOT NetDissect-Lite's
      streaming quantile sketch (util/vecquantile.py), so they are comparable with cnnviz's exact ones:
        --threshold-rule rank (default, cnnviz's definition): T_k = the r-th largest of the N*h*w
          values of unit k, r = max(1, ceil(quantile * N * h * w)) (np.partition);
        --threshold-rule quantile: T_k = np.quantile(values, 1 - quantile), linear interpolation
          between order statistics, like the np.percentile of NetDissect-Lite's quantile_threshold.
  (c) tally (both --tally modes give bit-identical I, A and G: checked on concepts200 with tinycnn
      conv1..conv5 and resnet18 layer3/layer4, and on a variant with several PNGs and image-level
      labels per cell, both threshold rules, with and without --union-across-categories; the
      benchmark compares the two modes' IoUs on every run). Pixel-level category cells list
      PNGs (relative to images/; label = R + 256*G, 0 = unlabelled); the PNGs of one category are
      UNIONED per label (NetDissect-Lite concatenates them and bincounts, counting an overlap twice).
      Integer entries are image-level labels (full-image masks of sh x sw). For each layer every
      unit's map is resized to (sh, sw) with F.interpolate(bilinear, align_corners=False) (the plain
      bilinear upsampling of NetDissect-Lite, not the original NetDissect's receptive-field-centred
      one) and M_k = up > T_k. Per category carried by the image (a non-empty index.csv cell), per
      label c of that category:
          I[k, c] += |M_k & L_c|      G[c] += |L_c|
      and for every category cat the image carries:  A[k, cat] += |M_k|.
      A label present in two categories of one image (synth: scene "chequered" and texture
      "chequered") is therefore tallied once per category, as NetDissect-Lite does; with
      --union-across-categories its masks are unioned over the image's categories and it is
      tallied once (set semantics). This is also what cnnviz does (src/methods/network_dissection.cpp).
      NetDissect-Lite counts A[k, cat] only over images where some ACTIVATED pixel carries a label of
      primary category cat (or the image has an image-level label of primary category cat); here it
      is every image that carries labels in cat (docs/broden.md, cnnviz). They differ when a unit
      fires only on unlabelled pixels of a category (synth: object masks leave the background
      unlabelled) or a category's only label has another primary category (synth: scene
      "chequered" is primarily a texture); there Lite's A is smaller and its IoU larger.
      --tally faithful (default; the plain-Python NetDissect-Lite the benchmark compares against):
      the loop structure of Lite's FeatureOperator.tally_job. One layer at a time (Lite runs tally once
      per layer), every image's label PNGs decoded again for each layer into label planes (R + 256*G,
      Lite's loader); per image G from np.bincount of the planes, then a Python loop over units: skip
      the unit when its map's maximum is not above T_k (Lite's shortcut), else upsample that unit's
      map alone, M_k = up > T_k, np.bincount of the planes' pixels under M_k into I[k], |M_k| into
      A[k, cat] (see tally_faithful). Lite decodes segmentations in a prefetching multiprocessing
      pool; here they are decoded in-process -- seconds.tally_labels says how much of the tally
      that is. Lite's extra per-unit np.dot with the label/category matrix is not done.
      --tally vectorized (faster than Lite): per image its labels are read once for all layers and
      the work is vectorized over units (all K maps upsampled in one call, one float matmul of the
      [K, sh*sw] masks with the [labels, sh*sw] label masks).
  (d) IoU[k, c] = I[k, c] / (A[k, primary(c)] + G[c] - I[k, c]) (0 where the denominator is 0);
      primary(c) = the category with the largest count in label.csv's `category` column
      ("texture(849);scene(447)" -> texture; ties -> the first listed). Each unit's label is its
      argmax IoU over all labels (ties -> the lowest label number); it is a detector when that IoU
      exceeds --iou-threshold.

Output: human-readable, or with --json one object
  {"images", "quantile", "iou_threshold", "threshold_method": "exact, rank" or "exact, np.quantile (linear)",
   "layers": {name: {"units", "shape", "detectors", "labels", "categories", "ious", "thresholds",
                     ["label_names", "all_ious"] with --all-ious}},
   "tally": "faithful" or "vectorized",
   "device": "cpu" or "cuda",
   "seconds": {"load", "extract", "quantile", "tally", ["tally_labels" (faithful: label decoding, part of
               "tally")], "score", "total"},
   "images_per_second", "extract_images_per_second", "peak_rss_mb"}
(and "model_kind", "weights", "dataset", "input_size", "union_across_categories", "threads").
Phases (wall seconds): "load" = index.csv/label.csv reading, model building and moving it to the device;
"extract" = pass (a): image decoding + resizing + forward + copying the maps into the memmaps;
"quantile" = pass (b), thresholds; "tally" = pass (c) (includes "tally_labels"); "score" = pass (d), IoUs
and best labels of every layer. "total" runs from the start of main (after imports) to the end of the
scoring (it also holds the removal of the memmap directory). "images_per_second" = images / total (the
whole dissection); "extract_images_per_second" = images / extract (pass (a) alone). "peak_rss_mb" is
resource.getrusage(RUSAGE_SELF).ru_maxrss / 1024, which includes the memmap pages resident in the
page cache while they are mapped (as for NetDissect-Lite).

Threads: torch.set_num_threads(--threads). Export OMP_WAIT_POLICY=PASSIVE when comparing with the
C++ binary (set with os.environ.setdefault before torch is imported).
"""

import os

# libgomp reads this once, at import time of torch: idle OpenMP threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
sys.path.insert(0, MODELS)
import _cli  # noqa: E402
from bench_common import clock, torch_device  # noqa: E402

PROG = "dissect_baseline.py"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
INDEX_FIXED = ("image", "split", "ih", "iw", "sh", "sw")
QUANTILE_BLOCK_BYTES = 256 << 20  # memmap bytes read at once when computing thresholds


# ---------------------------------------------------------------- dataset
class Dataset:
    """index.csv rows, label names and primary categories of a Broden-format root."""

    def __init__(self, root, max_images=None):
        self.root = root
        with open(os.path.join(root, "index.csv"), newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [name for name in INDEX_FIXED if name not in header]
            if missing:
                raise _cli.UserError(f"{root}/index.csv lacks column(s) {', '.join(missing)}")
            self.categories = [name for name in header if name not in INDEX_FIXED]
            self.rows = []
            for row in reader:
                if max_images is not None and len(self.rows) >= max_images:
                    break
                self.rows.append(row)
        if not self.rows:
            raise _cli.UserError(f"{root}/index.csv lists no images")
        self.names, self.primary = {}, {}
        with open(os.path.join(root, "label.csv"), newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                number = int(row["number"])
                self.names[number] = row["name"]
                self.primary[number] = primary_category(row.get("category", ""))
        self.num_labels = max(self.names) + 1  # index 0 = unlabelled, never scored
        unknown = sorted({cat for cat in self.primary.values() if cat not in self.categories})
        if unknown:
            raise _cli.UserError(f"label.csv names categories missing from index.csv: {', '.join(unknown)}")
        # primary category index per label number; -1 for 0 and for numbers label.csv skips
        self.primary_index = np.full(self.num_labels, -1, np.int64)
        for number, cat in self.primary.items():
            self.primary_index[number] = self.categories.index(cat)

    def __len__(self):
        return len(self.rows)

    def image_path(self, i):
        return os.path.join(self.root, "images", self.rows[i]["image"])

    def seg_size(self, i):
        return int(self.rows[i]["sh"]), int(self.rows[i]["sw"])

    def labels(self, i, union_across_categories):
        """(carried category indices, [(label, bool mask [sh*sw] or None for the full image)]).

        Within a category the PNGs are unioned per label. Across categories a label is listed once
        per category, or once in all with union_across_categories.
        """
        sh, sw = self.seg_size(i)
        carried, per_category = [], []
        for ci, cat in enumerate(self.categories):
            cell = (self.rows[i].get(cat) or "").strip()
            if not cell:
                continue
            entries = [entry.strip() for entry in cell.split(";") if entry.strip()]
            if not entries:
                continue
            carried.append(ci)
            masks = {}
            for entry in entries:
                if re.fullmatch(r"\d+", entry):
                    masks[int(entry)] = None  # image-level: the full image
                    continue
                with Image.open(os.path.join(self.root, "images", entry)) as png:
                    rgb = np.asarray(png.convert("RGB"), dtype=np.int64)
                if rgb.shape[:2] != (sh, sw):
                    raise _cli.UserError(f"{entry} is {rgb.shape[1]}x{rgb.shape[0]}, index.csv says {sw}x{sh}")
                label_map = (rgb[..., 0] + 256 * rgb[..., 1]).ravel()
                for label in np.unique(label_map):
                    label = int(label)
                    if label == 0 or label >= self.num_labels or self.primary_index[label] < 0:
                        continue  # unlabelled, or not in label.csv
                    if label in masks and masks[label] is None:
                        continue
                    hit = label_map == label
                    masks[label] = hit if label not in masks else (masks[label] | hit)
            per_category.append(masks)
        if not union_across_categories:
            return carried, [item for masks in per_category for item in masks.items()]
        merged = {}
        for masks in per_category:
            for label, mask in masks.items():
                if label in merged and (merged[label] is None or mask is None):
                    merged[label] = None
                else:
                    merged[label] = mask if label not in merged else (merged[label] | mask)
        return carried, list(merged.items())


def primary_category(text):
    """'texture(849);scene(447)' -> 'texture' (largest count; ties -> first listed)."""
    best, best_count = None, -1
    for part in text.split(";"):
        match = re.fullmatch(r"\s*([^()]+?)\s*(?:\((\d+)\))?\s*", part)
        if not match:
            continue
        count = int(match.group(2)) if match.group(2) else 0
        if count > best_count:
            best, best_count = match.group(1), count
    if best is None:
        raise _cli.UserError(f"label.csv: unreadable category {text!r}")
    return best




# ---------------------------------------------------------------- model
def build_model(kind, weights):
    """(eval-mode eager model, input side, mean [1,3,1,1], std [1,3,1,1])."""
    import export_torchvision  # noqa: E402  (build_tinycnn, apply_weights)
    import torchvision

    sidecar = os.path.splitext(weights)[0] + ".json"
    if kind == "tinycnn":
        model = export_torchvision.build_tinycnn(weights)
        if not os.path.isfile(sidecar):
            sidecar = os.path.join(MODELS, "tinycnn.json")
        size, mean, std = 96, None, None
    elif kind == "resnet18":
        model = torchvision.models.resnet18(weights=None)
        model.load_state_dict(torch.jit.load(weights, map_location="cpu").state_dict())
        size, mean, std = 224, IMAGENET_MEAN, IMAGENET_STD
    else:
        raise _cli.UserError(f"unknown --model-kind {kind!r} (tinycnn or resnet18)")
    if os.path.isfile(sidecar):
        with open(sidecar, encoding="utf-8") as handle:
            spec = json.load(handle).get("input", {})
        size = int(spec.get("size", [size])[0])
        mean, std = spec.get("mean", mean), spec.get("std", std)
    if mean is None or std is None:
        raise _cli.UserError(f"no mean/std for {weights} (sidecar {sidecar} missing)")
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return (model, size, torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
            torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))


def load_image(path, size):
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    x = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255).unsqueeze(0)
    if x.shape[2] != size or x.shape[3] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


# ---------------------------------------------------------------- passes
def extract(model, size, mean, std, dataset, layers, batch, workdir, device):
    """Pass (a): {layer: float32 memmap [N, K, h, w]}; the forward runs on `device`, the maps go to the CPU."""
    captured = {}
    handles = []
    for name in layers:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise _cli.UserError(f"--layers: {name!r} is not a module of the model") from None
        handles.append(module.register_forward_hook(
            lambda m, i, o, name=name: captured.__setitem__(name, o.detach().clone())))
    features = {}
    n = len(dataset)
    try:
        with torch.no_grad():
            for start in range(0, n, batch):
                end = min(n, start + batch)
                x = torch.cat([load_image(dataset.image_path(i), size) for i in range(start, end)]).to(device)
                captured.clear()
                model((x - mean) / std)
                for name in layers:
                    out = captured.get(name)
                    if out is None or out.dim() != 4:
                        raise _cli.UserError(f"--layers: {name!r} has no 4-d output in the forward pass")
                    if name not in features:
                        path = os.path.join(workdir, re.sub(r"[^\w.-]", "_", name) + ".mmap")
                        features[name] = np.memmap(path, dtype=np.float32, mode="w+",
                                                   shape=(n,) + tuple(out.shape[1:]))
                    features[name][start:end] = out.cpu().numpy()
    finally:
        for handle in handles:
            handle.remove()
    for memmap in features.values():
        memmap.flush()
    return features


def thresholds(memmap, quantile, rule):
    """Pass (b): exact per-unit thresholds (see the module docstring), reading blocks of units."""
    n, units = memmap.shape[:2]
    per_image = memmap[0, 0].size
    count = n * per_image
    rank = max(1, math.ceil(quantile * n * per_image))  # same double arithmetic as cnnviz
    block = max(1, QUANTILE_BLOCK_BYTES // max(1, count * memmap.dtype.itemsize))
    result = np.empty(units, np.float64)
    for k0 in range(0, units, block):
        chunk = np.asarray(memmap[:, k0:k0 + block])  # [N, b, h, w]
        for j in range(chunk.shape[1]):
            values = np.ascontiguousarray(chunk[:, j]).ravel()
            if rule == "rank":
                position = count - min(rank, count)
                result[k0 + j] = np.partition(values, position)[position]
            else:
                result[k0 + j] = np.quantile(values, 1.0 - quantile)
        del chunk
    return result


def tally_vectorized(features, dataset, thresholds_by_layer, union_across_categories):
    """Pass (c), vectorized over units (faster than NetDissect-Lite): {layer: (I [K, L], A [K, C])} and G [L]."""
    num_labels, num_cats = dataset.num_labels, len(dataset.categories)
    G = np.zeros(num_labels, np.float64)
    stats = {name: (np.zeros((memmap.shape[1], num_labels), np.float64),
                    np.zeros((memmap.shape[1], num_cats), np.float64))
             for name, memmap in features.items()}
    limits = {name: torch.from_numpy(t.astype(np.float32)).view(-1, 1, 1) for name, t in thresholds_by_layer.items()}
    for i in range(len(dataset)):
        sh, sw = dataset.seg_size(i)
        carried, items = dataset.labels(i, union_across_categories)
        pixel = [(label, mask) for label, mask in items if mask is not None]
        scalars = [label for label, mask in items if mask is None]
        for label, mask in pixel:
            G[label] += mask.sum()
        for label in scalars:
            G[label] += sh * sw
        if pixel:
            pixel_labels = np.array([label for label, _ in pixel])
            pixel_masks = torch.from_numpy(np.stack([mask for _, mask in pixel]).astype(np.float32))  # [P, S]
        for name, memmap in features.items():
            I, A = stats[name]
            maps = torch.from_numpy(np.asarray(memmap[i])).unsqueeze(0)  # [1, K, h, w]
            up = F.interpolate(maps, size=(sh, sw), mode="bilinear", align_corners=False)[0]
            masks = (up > limits[name]).flatten(1).float()  # [K, S]
            area = masks.sum(1).numpy().astype(np.float64)
            if carried:
                A[:, carried] += area[:, None]
            if pixel:
                # np.add.at: a label listed twice (two categories) accumulates twice
                np.add.at(I.T, pixel_labels, (masks @ pixel_masks.T).numpy().T.astype(np.float64))
            for label in scalars:
                I[:, label] += area
    return stats, G



def label_planes(dataset, i, union_across_categories):
    """One image's label data as NetDissect-Lite's loader yields it, for tally_faithful.

    (carried category indices, planes int64 [P, sh*sw] or None, scalars). Every PNG of a category cell
    is decoded into one plane (R + 256*G), as loader/data_loader.py's resolve_segmentation does, and
    planes are concatenated over categories; integer entries are image-level labels (scalars). To
    give exactly the per-label sets of Dataset.labels (which tally_vectorized uses) the planes are then
    cleaned with a few whole-plane numpy ops: numbers outside label.csv become 0; a pixel whose label is
    an image-level label of the same category (of any category with union_across_categories) becomes
    0, that label already covering the whole image; and a pixel whose label an earlier plane of the same
    category (of any category with union_across_categories) has at that pixel becomes 0, so that a
    label is unioned within a category instead of counted twice (Lite's one difference there). Scalars
    are listed once per category carrying them (once with union_across_categories).
    """
    sh, sw = dataset.seg_size(i)
    valid = np.append(dataset.primary_index >= 0, False)  # index num_labels: out of range
    carried, planes, scalars = [], [], []
    group_of_plane, scalars_of_group = [], []
    for ci, cat in enumerate(dataset.categories):
        cell = (dataset.rows[i].get(cat) or "").strip()
        entries = [entry.strip() for entry in cell.split(";") if entry.strip()]
        if not entries:
            continue
        carried.append(ci)
        group = 0 if union_across_categories else len(carried) - 1
        if len(scalars_of_group) <= group:
            scalars_of_group.append([])
        for entry in entries:
            if re.fullmatch(r"\d+", entry):
                if int(entry) not in scalars_of_group[group]:
                    scalars_of_group[group].append(int(entry))
                continue
            with Image.open(os.path.join(dataset.root, "images", entry)) as png:
                rgb = np.asarray(png.convert("RGB"), dtype=np.int64)
            if rgb.shape[:2] != (sh, sw):
                raise _cli.UserError(f"{entry} is {rgb.shape[1]}x{rgb.shape[0]}, index.csv says {sw}x{sh}")
            plane = (rgb[..., 0] + 256 * rgb[..., 1]).ravel()
            plane[~valid[np.minimum(plane, dataset.num_labels)]] = 0
            planes.append(plane)
            group_of_plane.append(group)
    for group in scalars_of_group:
        scalars += group
    if not planes:
        return carried, None, scalars
    for p, plane in enumerate(planes):
        group = group_of_plane[p]
        if scalars_of_group[group]:
            plane[np.isin(plane, scalars_of_group[group])] = 0
        for q in range(p):
            if group_of_plane[q] == group:
                plane[plane == planes[q]] = 0
    return carried, np.stack(planes), scalars


def tally_faithful(features, dataset, thresholds_by_layer, union_across_categories):
    """Pass (c) as NetDissect-Lite's FeatureOperator.tally_job runs it: {layer: (I, A)}, G, label seconds.

    One layer at a time (Lite calls tally once per layer), re-reading every image's label maps for
    each layer. Per image: G from np.bincount of the label planes (computed again for every layer, as
    Lite's tally_labels is); then a Python loop over units: skip the unit when its map's maximum does
    not exceed its threshold (Lite's shortcut), else upsample that one unit's map (F.interpolate,
    bilinear, align_corners=False; Lite: scipy.misc.imresize(mode='F'), i.e. PIL bilinear, which for
    upsampling is the same interpolation), M = up > T_k, add |M| to A[k, every carried category],
    np.bincount the label planes under M into I[k] and add |M| to I[k, s] for each image-level label s.

    The one map goes in as a [1, 2, h, w] stride-0 expand of [1, 1, h, w]: for a single channel
    libtorch 1.13's upsample_bilinear2d takes another inner loop whose float32 results differ from the
    multi-channel loop in the last bit (it flips a few mask pixels at the threshold: plateaus left by
    max pooling upsample to T_k exactly in one loop and to T_k + 1 ulp in the other) and is slower for
    7x7 -> 112x112. With the expand each unit's upsampled map is bit-identical to its channel of the
    all-units call of tally_vectorized (and of cnnviz), so both modes give identical tallies.
    """
    num_labels, num_cats = dataset.num_labels, len(dataset.categories)
    stats, G, label_seconds = {}, None, 0.0
    for name, memmap in features.items():
        units = memmap.shape[1]
        I = np.zeros((units, num_labels), np.float64)
        A = np.zeros((units, num_cats), np.float64)
        G_layer = np.zeros(num_labels, np.float64)
        threshold = thresholds_by_layer[name].astype(np.float32)  # the float32 comparison of cnnviz
        for i in range(len(dataset)):
            sh, sw = dataset.seg_size(i)
            mark = time.perf_counter()
            carried, planes, scalars = label_planes(dataset, i, union_across_categories)
            label_seconds += time.perf_counter() - mark
            for scalar in scalars:
                G_layer[scalar] += sh * sw
            if planes is not None:
                counts = np.bincount(planes.ravel(), minlength=num_labels)
                counts[0] = 0
                G_layer += counts
            for unit in range(units):
                feature_map = memmap[i][unit]
                if not feature_map.max() > threshold[unit]:
                    continue
                one = torch.from_numpy(np.asarray(feature_map))[None, None]
                up = F.interpolate(one.expand(1, 2, *one.shape[2:]), size=(sh, sw),
                                   mode="bilinear", align_corners=False)[0, 0].numpy()
                mask = (up > threshold[unit]).ravel()
                area = int(np.count_nonzero(mask))
                if carried:
                    A[unit, carried] += area
                if planes is not None:
                    counts = np.bincount(planes[:, mask].ravel(), minlength=num_labels)
                    counts[0] = 0
                    I[unit] += counts
                for scalar in scalars:
                    I[unit, scalar] += area
        stats[name] = (I, A)
        G = G_layer
    return stats, G, label_seconds


def score(I, A, G, dataset, iou_threshold):
    """Pass (d): (IoU [K, L], best label per unit, its IoU, detector count)."""
    primary = dataset.primary_index
    valid = primary >= 0
    area = np.zeros_like(I)
    area[:, valid] = A[:, primary[valid]]
    denominator = area + G[None, :] - I
    iou = np.divide(I, denominator, out=np.zeros_like(I), where=denominator > 0)
    iou[:, ~valid] = -1.0  # label 0 and numbers label.csv skips are never chosen
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(len(best)), best]
    iou[:, ~valid] = 0.0
    return iou, best, best_iou, int((best_iou > iou_threshold).sum())


# ---------------------------------------------------------------- CLI
def parse_args(argv=None):
    parser = _cli.ArgumentParser(prog=PROG, description="Plain-Python NetDissect-Lite baseline for cnnviz "
                                 "dissect (exact thresholds), timed. See the module docstring.")
    parser.add_argument("--model-kind", required=True, choices=["tinycnn", "resnet18"])
    parser.add_argument("--weights", required=True, metavar="FILE.pt", help="TorchScript file with the weights")
    parser.add_argument("--dataset", required=True, metavar="DIR", help="Broden-format root (index.csv)")
    parser.add_argument("--layers", required=True, help="comma-separated module paths, e.g. conv3,conv4,conv5")
    parser.add_argument("--quantile", type=float, default=0.005, help="top quantile per unit (default 0.005)")
    parser.add_argument("--iou-threshold", type=float, default=0.04, help="detector IoU (default 0.04)")
    parser.add_argument("--batch", type=int, default=16, help="images per forward (default 16)")
    parser.add_argument("--max-images", type=int, help="use only the first N images of index.csv")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--workdir", help="where the activation memmaps go (default: a temporary directory)")
    parser.add_argument("--threshold-rule", choices=["rank", "quantile"], default="rank",
                        help="rank: the ceil(q*N*h*w)-th largest value, as cnnviz (default); quantile: "
                             "np.quantile(1 - q), as NetDissect-Lite's np.percentile")
    parser.add_argument("--union-across-categories", action="store_true",
                        help="tally a label present in several categories of one image once (default: once "
                             "per category, like NetDissect-Lite)")
    parser.add_argument("--tally", choices=["faithful", "vectorized"], default="faithful",
                        help="faithful (default): NetDissect-Lite's tally, a layer at a time, labels re-read per "
                             "layer, a Python loop over units with per-unit upsampling; vectorized: all layers per "
                             "image read, units upsampled together and tallied with one matmul (faster than Lite, "
                             "same tallies)")
    parser.add_argument("--all-ious", action="store_true", help="with --json: every unit's IoU for every label")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the model runs in the extraction pass (default cpu); the other passes "
                             "run on the CPU")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    args.layer_list = [name.strip() for name in args.layers.split(",") if name.strip()]
    if not args.layer_list:
        parser.error("--layers is empty")
    if len(set(args.layer_list)) != len(args.layer_list):
        parser.error("--layers names a layer twice")
    if not 0 < args.quantile < 1:
        parser.error("--quantile must be in (0, 1)")
    for name in ("batch", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    if args.max_images is not None and args.max_images < 1:
        parser.error("--max-images must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    device = torch_device(args.device)
    if not os.path.isfile(args.weights):
        raise _cli.UserError(f"--weights file not found: {args.weights}")
    if not os.path.isfile(os.path.join(args.dataset, "index.csv")):
        raise _cli.UserError(f"--dataset {args.dataset} has no index.csv")
    dataset = Dataset(args.dataset, args.max_images)
    model, size, mean, std = build_model(args.model_kind, args.weights)
    model.to(device)
    mean, std = mean.to(device), std.to(device)
    seconds = {"load": clock(device) - started}
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dissect-baseline-", dir=args.workdir) as workdir:
        mark = clock(device)
        features = extract(model, size, mean, std, dataset, args.layer_list, args.batch, workdir, device)
        seconds["extract"] = clock(device) - mark
        mark = clock(device)
        limits = {name: thresholds(memmap, args.quantile, args.threshold_rule) for name, memmap in features.items()}
        seconds["quantile"] = clock(device) - mark
        mark = clock(device)
        if args.tally == "faithful":
            stats, G, seconds["tally_labels"] = tally_faithful(features, dataset, limits,
                                                               args.union_across_categories)
        else:
            stats, G = tally_vectorized(features, dataset, limits, args.union_across_categories)
        seconds["tally"] = clock(device) - mark
        shapes = {name: list(memmap.shape[1:]) for name, memmap in features.items()}
        del features

    mark = clock(device)
    label_names = [dataset.names.get(number, "-") for number in range(dataset.num_labels)]
    layers = {}
    for name in args.layer_list:
        I, A = stats[name]
        iou, best, best_iou, detectors = score(I, A, G, dataset, args.iou_threshold)
        entry = {"units": int(I.shape[0]), "shape": shapes[name], "detectors": detectors,
                 "labels": [label_names[c] for c in best],
                 "categories": [dataset.primary.get(int(c), "-") for c in best],
                 "ious": [float(v) for v in best_iou],
                 "thresholds": [float(v) for v in limits[name]]}
        if args.all_ious:
            entry["label_names"] = label_names
            entry["all_ious"] = [[round(float(v), 7) for v in row] for row in iou]
        layers[name] = entry
    seconds["score"] = clock(device) - mark
    seconds["total"] = clock(device) - started
    result = {"model_kind": args.model_kind, "weights": args.weights, "dataset": args.dataset,
              "images": len(dataset), "input_size": size, "quantile": args.quantile,
              "iou_threshold": args.iou_threshold,
              "threshold_method": "exact, rank" if args.threshold_rule == "rank" else "exact, np.quantile (linear)",
              "union_across_categories": args.union_across_categories, "tally": args.tally,
              "threads": args.threads, "device": args.device,
              "layers": layers, "seconds": seconds,
              "images_per_second": len(dataset) / seconds["total"],
              "extract_images_per_second": len(dataset) / seconds["extract"],
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.model_kind} on {args.dataset}: {len(dataset)} images at {size}x{size}, quantile {args.quantile} "
          f"(exact, {args.threshold_rule}), IoU > {args.iou_threshold}, {args.tally} tally, {args.threads} thread(s), "
          f"device {args.device} (extraction)")
    for name, entry in layers.items():
        detector_cats = {}
        for label, cat, value in zip(entry["labels"], entry["categories"], entry["ious"]):
            if value > args.iou_threshold:
                detector_cats.setdefault(cat, set()).add(label)
        unique = ", ".join(f"{cat} {len(labels)}" for cat, labels in sorted(detector_cats.items())) or "none"
        print(f"{name} {entry['shape']}: {entry['detectors']}/{entry['units']} detectors; unique concepts: {unique}")
        order = np.argsort(entry["ious"])[::-1][:5]
        print("  best units: " + "; ".join(f"{k} {entry['labels'][k]} ({entry['categories'][k]}) "
                                           f"{entry['ious'][k]:.3f}" for k in order))
    print("seconds: " + ", ".join(f"{key} {value:.2f}" for key, value in seconds.items())
          + f"; {result['images_per_second']:.1f} images/s overall, {result['extract_images_per_second']:.1f} "
          f"in extraction; peak RSS {result['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run_main(main, PROG))
