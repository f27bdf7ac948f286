#!/usr/bin/python3
"""Synthetic concept dataset written in the Broden on-disk layout ("synth").

Each image shows one or two coloured shapes filled with a texture, drawn on a
background "scene". Every concept is known exactly, so network dissection,
the Broden reader and the bundled model can be tested without the 1 GB Broden.

Concepts (label names as they appear in label.csv):

  color    (pixel-level) red-c orange-c yellow-c green-c cyan-c blue-c
           magenta-c white-c gray-c black-c  (the "-c" suffix is Broden's);
           every pixel is labelled with the named colour it was painted with:
           a shape's main colour, its pattern colour or the background colour.
           Gradient backgrounds are the one ambiguous case: a gradient pixel
           gets the nearest named colour when that is closer than
           GRADIENT_LABEL_RADIUS in RGB, and 0 (unlabelled) otherwise.
  object   (pixel-level) circle square triangle cross: the visible pixels of
           each shape. One shape: <id>_object.png. Two shapes: one PNG per
           shape, dominant (larger visible area) first, named
           <id>_object_1.png;<id>_object_2.png as Broden names layered
           segmentations (its part PNGs are _part_1, _part_2, ...).
  texture  (image-level) striped dotted chequered: the fill pattern of the
           shapes, dominant shape first, duplicates removed ("7;12").
  scene    (image-level) plain gradient noise chequered: the background.
           "chequered" is shared with texture: a chequered floor is a scene
           and a chequered fill is a texture, one label number in two
           categories (like Broden's "fabric", material(36);object(3)), so a
           reader must pick its primary category (the one it occurs in most).

Broden layout written to --out (see docs/broden.md; statistics follow
CSAILVision/NetDissect src/joinseg.py exactly):
  index.csv     image,split,ih,iw,sh,sw,color,object,part,material,scene,texture
                (part and material are always empty; parse by header name)
  label.csv     number,name,category,frequency,coverage,syns; numbers 1..N in
                order of decreasing frequency, then coverage, then name;
                category "texture(900);scene(500)" (most frequent first);
                frequency = images with the label summed over categories;
                coverage = SUM over images of the fraction of segmentation
                pixels it covers (1.0 per image for image-level labels), as
                Broden's joinseg computes it -- not a mean
  category.csv  name,first,last,count,frequency: first/last = smallest and
                largest global label number in the category, count = labels,
                frequency = sum of its labels' image frequencies (joinseg)
  c_<cat>.csv   code,number,name,frequency,coverage: dense code 1..n by
                decreasing frequency within the category
  images/synth/<NNNNNN>.jpg (JPEG quality 95), <NNNNNN>_color.png,
                <NNNNNN>_object[_k].png at half the image size (nearest
                neighbour), label = R + 256*G, B = 0, 0 = unlabelled.

Output is a pure function of (count, size, seed, val_fraction): the CSVs and
PNGs are byte-identical between runs.

Usage:  /usr/bin/python3 models/make_concepts.py --out DIR [--count 2000]
        [--size 96] [--seed 0] [--val-fraction 0.2]
Library: generate(out_dir, count, size, seed, val_fraction) and
         render_sample(rng, size) -> Sample.
"""

import csv
import os
import sys
from typing import NamedTuple

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _cli  # noqa: E402

# ---------------------------------------------------------------- vocabulary
# Named colours: base RGB values; every painted region is jittered around one.
COLORS = {
    "red-c": (225, 30, 30),
    "orange-c": (245, 140, 20),
    "yellow-c": (240, 220, 35),
    "green-c": (35, 175, 55),
    "cyan-c": (35, 210, 220),
    "blue-c": (35, 65, 220),
    "magenta-c": (205, 45, 200),
    "white-c": (245, 245, 245),
    "gray-c": (128, 128, 128),
    "black-c": (15, 15, 15),
}
COLOR_NAMES = tuple(COLORS)
COLOR_RGB = np.array([COLORS[name] for name in COLOR_NAMES], dtype=np.float32)
SHAPES = ("circle", "square", "triangle", "cross")
TEXTURES = ("striped", "dotted", "chequered")
SCENES = ("plain", "gradient", "noise", "chequered")
SYNONYMS = {"chequered": ("checkered",), "gray-c": ("grey-c",)}
CATEGORIES = ("color", "object", "part", "material", "scene", "texture")
INDEX_FIELDS = ("image", "split", "ih", "iw", "sh", "sw") + CATEGORIES
SOURCE = "synth"  # images/<SOURCE>/..., like Broden's ade20k/, dtd/, ...

# ---------------------------------------------------------------- rendering
COLOR_JITTER = 18  # max |offset| per channel added to a region's base colour
PIXEL_NOISE = 5  # max |offset| per channel of independent per-pixel noise
GRADIENT_LABEL_RADIUS = 60.0  # RGB distance within which a gradient pixel is named
GRADIENT_LEVELS = 256  # distinct blend weights of a gradient background
TWO_SHAPE_PROBABILITY = 0.4
PRIMARY_EXTENT = (0.40, 0.65)  # first shape's extent, fraction of the image side
SECONDARY_EXTENT = (1 / 6, 0.32)  # second shape's extent, fraction of the side
DOMINANCE_RATIO = 1.5  # dominant visible area >= this x the other one's
MIN_VISIBLE_FRACTION = 0.5  # each shape keeps at least this much of its area
PLACEMENT_TRIES = 20  # tries to place the second shape before giving up
CROSS_ARM_FRACTION = 1 / 3  # cross arm width / cross extent
STRIPE_PERIOD = (6, 11)  # pixels, [low, high)
STRIPE_ANGLES = (0.0, 45.0, 90.0, 135.0)  # degrees
DOT_SPACING = (7, 12)  # pixels, [low, high)
DOT_RADIUS_FRACTION = 0.3  # dot radius / dot spacing
CHECK_CELL = (4, 8)  # texture cell, pixels, [low, high)
FLOOR_CELLS = (4, 7)  # chequered scene: cells across the image, [low, high)
NOISE_CELL = 4  # noise scene: pixels per noise cell (above JPEG chroma blocks)
NOISE_COLORS = 3  # noise scene: named colours mixed
JPEG_QUALITY = 95
SEGMENTATION_SCALE = 2  # segmentations are image size // this
MIN_SIZE = 32


class Sample(NamedTuple):
    """One rendered image with its ground truth, in local (per-vocabulary) codes.

    image:       H x W x 3 uint8 RGB.
    color_map:   H x W uint8; k > 0 means COLOR_NAMES[k-1], 0 unlabelled.
    object_maps: list of H x W uint8 maps, one per shape, dominant first; a
                 map holds SHAPES.index(shape)+1 on that shape's visible
                 pixels and 0 elsewhere.
    shapes:      shape names, dominant first (same order as object_maps).
    textures:    texture name of each shape, same order (may repeat).
    scene:       background name (one of SCENES).
    """

    image: np.ndarray
    color_map: np.ndarray
    object_maps: list
    shapes: tuple
    textures: tuple
    scene: str


def jittered(rng, color_index, shape=()):
    """Base RGB of COLOR_NAMES[color_index] plus one uniform jitter per channel."""
    offset = rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
    return np.broadcast_to(COLOR_RGB[color_index] + offset, shape + (3,)).astype(np.float32)


def pixel_grid(size):
    """(y, x) float arrays of pixel-centre coordinates of a size x size image."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(coords, coords, indexing="ij")


def shape_mask(kind, centre, extent, grid):
    """Boolean mask of a shape of the given kind, centre (y, x) and extent (pixels)."""
    y, x = grid[0] - centre[0], grid[1] - centre[1]
    half = extent / 2
    if kind == "circle":
        return x * x + y * y <= half * half
    if kind == "square":
        return (np.abs(x) <= half) & (np.abs(y) <= half)
    if kind == "triangle":  # apex up; half-width grows linearly from 0 to `half`
        depth = (y + half) / extent
        return (depth >= 0) & (depth <= 1) & (np.abs(x) <= half * depth)
    if kind == "cross":
        arm = extent * CROSS_ARM_FRACTION / 2
        inside = (np.abs(x) <= half) & (np.abs(y) <= half)
        return inside & ((np.abs(x) <= arm) | (np.abs(y) <= arm))
    raise ValueError(f"unknown shape {kind!r}")


def texture_mask(rng, kind, grid):
    """Boolean mask of the pattern-coloured pixels of a texture (random scale and phase)."""
    y, x = grid
    if kind == "striped":
        period = rng.integers(*STRIPE_PERIOD)
        angle = np.deg2rad(rng.choice(STRIPE_ANGLES))
        along = x * np.cos(angle) + y * np.sin(angle) + rng.uniform(0, period)
        return np.mod(along, period) < period / 2
    if kind == "dotted":
        spacing = rng.integers(*DOT_SPACING)
        dy = np.mod(y + rng.uniform(0, spacing), spacing) - spacing / 2
        dx = np.mod(x + rng.uniform(0, spacing), spacing) - spacing / 2
        radius = spacing * DOT_RADIUS_FRACTION
        return dx * dx + dy * dy <= radius * radius
    if kind == "chequered":
        return checks(rng, rng.integers(*CHECK_CELL), grid)
    raise ValueError(f"unknown texture {kind!r}")


def checks(rng, cell, grid):
    """Chequerboard mask with square cells of `cell` pixels and a random offset."""
    row = np.floor((grid[0] + rng.uniform(0, cell)) / cell)
    col = np.floor((grid[1] + rng.uniform(0, cell)) / cell)
    return np.mod(row + col, 2) == 0


def render_background(rng, scene, palette, grid):
    """Paint a scene with colours drawn from `palette` (indices into COLOR_NAMES).

    Returns (rgb float32 H x W x 3, color label map uint8 H x W, 0 = unlabelled).
    """
    size = grid[0].shape[0]
    hw = (size, size)
    picks = rng.choice(palette, size=max(2, NOISE_COLORS), replace=False)
    if scene == "plain":
        return jittered(rng, picks[0], hw), np.full(hw, picks[0] + 1, np.uint8)
    if scene == "chequered":
        mask = checks(rng, size / rng.integers(*FLOOR_CELLS), grid)
        return paint_two(rng, mask, picks[0], picks[1])
    if scene == "noise":
        cells = -(-size // NOISE_CELL)
        choice = rng.choice(picks[:NOISE_COLORS], size=(cells, cells))
        choice = np.kron(choice, np.ones((NOISE_CELL, NOISE_CELL), np.int64))[:size, :size]
        rgb = COLOR_RGB[choice] + rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=hw + (3,))
        return rgb.astype(np.float32), (choice + 1).astype(np.uint8)
    if scene == "gradient":
        return gradient(rng, picks[0], picks[1], grid)
    raise ValueError(f"unknown scene {scene!r}")


def paint_two(rng, mask, first, second):
    """RGB and colour labels: colour `first` where mask is set, `second` elsewhere."""
    hw = mask.shape
    rgb = np.where(mask[..., None], jittered(rng, first, hw), jittered(rng, second, hw))
    labels = np.where(mask, first + 1, second + 1).astype(np.uint8)
    return rgb, labels


def gradient(rng, first, second, grid):
    """Linear two-colour gradient in a random direction; labels by nearest named colour.

    The blend weight is quantized to GRADIENT_LEVELS steps so the nearest
    named colour is computed once per step rather than once per pixel.
    """
    angle = rng.uniform(0, 2 * np.pi)
    size = grid[0].shape[0]
    along = (grid[1] - size / 2) * np.cos(angle) + (grid[0] - size / 2) * np.sin(angle)
    level = np.rint(np.clip(along / size + 0.5, 0, 1) * (GRADIENT_LEVELS - 1)).astype(np.int64)
    t = np.linspace(0, 1, GRADIENT_LEVELS, dtype=np.float32)[:, None]
    ramp = (1 - t) * jittered(rng, first) + t * jittered(rng, second)
    distance = np.linalg.norm(ramp[:, None, :] - COLOR_RGB[None], axis=-1)
    named = np.where(distance.min(axis=1) < GRADIENT_LABEL_RADIUS, distance.argmin(axis=1) + 1, 0)
    return ramp[level], named.astype(np.uint8)[level]


def place_shapes(rng, size, grid):
    """Choose 1 or 2 (kind, mask) shapes, bottom first, meeting the visibility rules.

    A second shape is kept only if both stay at least MIN_VISIBLE_FRACTION
    visible and one visible area is DOMINANCE_RATIO times the other, so the
    dominant shape (the training target) is unambiguous.
    """
    shapes = [random_shape(rng, size, PRIMARY_EXTENT, grid)]
    if rng.random() >= TWO_SHAPE_PROBABILITY:
        return shapes
    for _ in range(PLACEMENT_TRIES):
        top = random_shape(rng, size, SECONDARY_EXTENT, grid)
        bottom_visible = (shapes[0][1] & ~top[1]).sum()
        top_visible = top[1].sum()
        big, small = max(bottom_visible, top_visible), min(bottom_visible, top_visible)
        if bottom_visible >= MIN_VISIBLE_FRACTION * shapes[0][1].sum() and big >= DOMINANCE_RATIO * small:
            return shapes + [top]
    return shapes


def random_shape(rng, size, extent_range, grid):
    """A random shape kind with a random extent (fraction range) placed fully inside the image."""
    kind = SHAPES[rng.integers(len(SHAPES))]
    extent = rng.uniform(*extent_range) * size
    centre = rng.uniform(extent / 2, size - extent / 2, size=2)
    return kind, shape_mask(kind, centre, extent, grid)


def render_sample(rng, size):
    """Render one random image of `size` x `size` pixels from numpy Generator `rng`.

    Returns a Sample (full-resolution maps; see Sample). Deterministic given
    the generator state; consumes a variable number of draws.
    """
    grid = pixel_grid(size)
    placed = place_shapes(rng, size, grid)
    main_colors = rng.choice(len(COLOR_NAMES), size=len(placed), replace=False)
    background_palette = np.setdiff1d(np.arange(len(COLOR_NAMES)), main_colors)
    scene = SCENES[rng.integers(len(SCENES))]
    rgb, color_map = render_background(rng, scene, background_palette, grid)
    visible, textures = [], []
    for (kind, mask), main in zip(placed, main_colors):
        texture = TEXTURES[rng.integers(len(TEXTURES))]
        pattern_color = rng.choice(np.delete(np.arange(len(COLOR_NAMES)), main))
        fill_rgb, fill_labels = paint_two(rng, texture_mask(rng, texture, grid), pattern_color, main)
        rgb[mask] = fill_rgb[mask]
        color_map[mask] = fill_labels[mask]
        visible = [v & ~mask for v in visible] + [mask]
        textures.append(texture)
    rgb += rng.integers(-PIXEL_NOISE, PIXEL_NOISE + 1, size=rgb.shape)
    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    order = sorted(range(len(placed)), key=lambda i: -int(visible[i].sum()))
    kinds = [placed[i][0] for i in order]
    object_maps = [(visible[i] * (SHAPES.index(placed[i][0]) + 1)).astype(np.uint8) for i in order]
    return Sample(image, color_map, object_maps, tuple(kinds), tuple(textures[i] for i in order), scene)


# ---------------------------------------------------------------- dataset
def downsample(label_map, seg_size):
    """Nearest-neighbour resize of a square label map to seg_size x seg_size."""
    size = label_map.shape[0]
    index = ((np.arange(seg_size) + 0.5) * size / seg_size).astype(np.int64)
    return label_map[np.ix_(index, index)]


class LabelStats:
    """Per-(category, name) image frequency and summed pixel coverage (joinseg's rules)."""

    def __init__(self):
        self.frequency = {}
        self.coverage = {}

    def add_pixels(self, category, names, maps):
        """Count one image's pixel-level maps (local codes k -> names[k-1]) of one category."""
        counts = np.bincount(np.concatenate([m.ravel() for m in maps]), minlength=len(names) + 1)
        for code in np.flatnonzero(counts[1:]) + 1:
            self._add(category, names[code - 1], counts[code] / maps[0].size)

    def add_image_level(self, category, names):
        """Count one image's image-level labels (each covers the whole image)."""
        for name in dict.fromkeys(names):
            self._add(category, name, 1.0)

    def _add(self, category, name, coverage):
        key = (category, name)
        self.frequency[key] = self.frequency.get(key, 0) + 1
        self.coverage[key] = self.coverage.get(key, 0.0) + float(coverage)

    def numbering(self):
        """Global label numbers 1..N: by decreasing frequency, then coverage, then name."""
        frequency, coverage = {}, {}
        for key, value in self.frequency.items():
            name = key[1]
            frequency[name] = frequency.get(name, 0) + value
            coverage[name] = coverage.get(name, 0.0) + self.coverage[key]
        names = sorted(frequency, key=lambda n: (-frequency[n], -round(coverage[n], 9), n))
        return {name: number for number, name in enumerate(names, start=1)}


def split_names(count, seed, val_fraction):
    """Deterministic 'train'/'val' per image: exactly round(count*val_fraction) val images."""
    val = np.random.default_rng([seed, 1]).permutation(count)[: round(count * val_fraction)]
    splits = np.full(count, "train", dtype=object)
    splits[val] = "val"
    return splits


def generate(out_dir, count=2000, size=96, seed=0, val_fraction=0.2):
    """Write a synthetic Broden-format dataset of `count` images to `out_dir`.

    Images are size x size, segmentations size//2. Returns the number of
    images written. Raises ValueError on bad arguments.
    """
    check_arguments(count, size, val_fraction)
    image_dir = os.path.join(out_dir, "images", SOURCE)
    os.makedirs(image_dir, exist_ok=True)
    seg_size = size // SEGMENTATION_SCALE
    rng = np.random.default_rng([seed, 0])
    stats, records = LabelStats(), []
    for index in range(count):
        sample = render_sample(rng, size)
        stem = f"{index + 1:06d}"
        Image.fromarray(sample.image).save(os.path.join(image_dir, stem + ".jpg"), quality=JPEG_QUALITY)
        color = downsample(sample.color_map, seg_size)
        objects = [downsample(m, seg_size) for m in sample.object_maps]
        stats.add_pixels("color", COLOR_NAMES, [color])
        stats.add_pixels("object", SHAPES, objects)
        stats.add_image_level("texture", sample.textures)
        stats.add_image_level("scene", [sample.scene])
        records.append((stem, color, objects, sample))
    numbers = stats.numbering()
    splits = split_names(count, seed, val_fraction)
    rows = [write_segmentations(image_dir, numbers, record, split, size, seg_size)
            for record, split in zip(records, splits)]
    write_csv(os.path.join(out_dir, "index.csv"), INDEX_FIELDS, rows)
    write_label_tables(out_dir, stats, numbers)
    return count


def check_arguments(count, size, val_fraction):
    """Raise ValueError unless the generation arguments are usable."""
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    if size < MIN_SIZE:
        raise ValueError(f"--size must be at least {MIN_SIZE}, got {size}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")


def encode_labels(label_map, lookup):
    """RGB uint8 image of global labels: R = n % 256, G = n // 256, B = 0."""
    numbers = lookup[label_map]
    rgb = np.zeros(label_map.shape + (3,), np.uint8)
    rgb[..., 0] = numbers % 256
    rgb[..., 1] = numbers // 256
    return rgb


def write_segmentations(image_dir, numbers, record, split, size, seg_size):
    """Write one image's label PNGs; return its index.csv row (dict)."""
    stem, color, objects, sample = record
    color_lookup = np.array([0] + [numbers.get(n, 0) for n in COLOR_NAMES], np.int64)
    object_lookup = np.array([0] + [numbers.get(n, 0) for n in SHAPES], np.int64)
    color_file = f"{stem}_color.png"
    Image.fromarray(encode_labels(color, color_lookup)).save(os.path.join(image_dir, color_file))
    if len(objects) == 1:
        object_files = [f"{stem}_object.png"]
    else:
        object_files = [f"{stem}_object_{k}.png" for k in range(1, len(objects) + 1)]
    for name, labels in zip(object_files, objects):
        Image.fromarray(encode_labels(labels, object_lookup)).save(os.path.join(image_dir, name))
    return {
        "image": f"{SOURCE}/{stem}.jpg", "split": split, "ih": size, "iw": size,
        "sh": seg_size, "sw": seg_size,
        "color": f"{SOURCE}/{color_file}",
        "object": ";".join(f"{SOURCE}/{name}" for name in object_files),
        "part": "", "material": "",
        "scene": str(numbers[sample.scene]),
        "texture": ";".join(str(numbers[t]) for t in dict.fromkeys(sample.textures)),
    }


def write_label_tables(out_dir, stats, numbers):
    """Write label.csv, category.csv and c_<category>.csv from the statistics."""
    by_category = {}
    for (category, name), frequency in stats.frequency.items():
        by_category.setdefault(category, []).append(name)
    label_rows = []
    for name, number in sorted(numbers.items(), key=lambda item: item[1]):
        cats = sorted((c for c in by_category if name in by_category[c]),
                      key=lambda c: (-stats.frequency[(c, name)], CATEGORIES.index(c)))
        label_rows.append({
            "number": number, "name": name,
            "category": ";".join(f"{c}({stats.frequency[(c, name)]})" for c in cats),
            "frequency": sum(stats.frequency[(c, name)] for c in cats),
            "coverage": f"{sum(stats.coverage[(c, name)] for c in cats):f}",
            "syns": ";".join(SYNONYMS.get(name, ())),
        })
    write_csv(os.path.join(out_dir, "label.csv"),
              ("number", "name", "category", "frequency", "coverage", "syns"), label_rows)
    category_rows = []
    for category in sorted(by_category, key=lambda c: min(numbers[n] for n in by_category[c])):
        names = by_category[category]
        category_rows.append({
            "name": category, "first": min(numbers[n] for n in names),
            "last": max(numbers[n] for n in names), "count": len(names),
            "frequency": sum(stats.frequency[(category, n)] for n in names),
        })
        write_dense_codes(out_dir, category, names, stats, numbers)
    write_csv(os.path.join(out_dir, "category.csv"),
              ("name", "first", "last", "count", "frequency"), category_rows)


def write_dense_codes(out_dir, category, names, stats, numbers):
    """Write c_<category>.csv: dense codes 1..n by decreasing frequency, coverage, number."""
    key = lambda n: (-stats.frequency[(category, n)], -round(stats.coverage[(category, n)], 9), numbers[n])
    rows = [{"code": code, "number": numbers[name], "name": name,
             "frequency": stats.frequency[(category, name)],
             "coverage": f"{stats.coverage[(category, name)]:f}"}
            for code, name in enumerate(sorted(names, key=key), start=1)]
    write_csv(os.path.join(out_dir, f"c_{category}.csv"),
              ("code", "number", "name", "frequency", "coverage"), rows)


def write_csv(path, fields, rows):
    """Write dict rows as CSV with a header line and '\\n' line endings."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def parse_args(argv=None):
    """Command-line arguments (see --help)."""
    parser = _cli.ArgumentParser(
        prog="make_concepts.py",
        description="Write a synthetic concept dataset (coloured, textured shapes on "
                    "varied backgrounds) in the Broden on-disk layout.")
    parser.add_argument("--out", required=True,
                        help="output directory (created if missing; files of the same name are "
                             "overwritten, other files are left alone)")
    parser.add_argument("--count", type=int, default=2000, help="number of images (default 2000)")
    parser.add_argument("--size", type=int, default=96,
                        help="image side in pixels; segmentations are size//2 (default 96)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="fraction of images in the 'val' split (default 0.2)")
    return parser.parse_args(argv)


def main(argv=None):
    """Entry point: generate the dataset and print a one-line summary."""
    args = parse_args(argv)
    written = generate(args.out, args.count, args.size, args.seed, args.val_fraction)
    print(f"wrote {written} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(_cli.run_main(main, "make_concepts.py"))
