#!/usr/bin/python3
"""The README's reduced-precision figure: activation maximization of the same units in fp32, in bf16
(same seed) and in fp32 with another seed, side by side, each tile captioned with its final objective
(evaluated with the float32 network on every row), so bf16's difference can be set against the
optimization's own spread.

    /usr/bin/python3 bench/precision_figure.py [--build build] [--model models/tinycnn.pt]
        [--layer conv5] [--units 0-7] [--steps 256] [--out docs/images/tinycnn_conv5_precision.png]

Needs a CPU with native bfloat16 (cnnviz refuses --precision bf16 elsewhere). Runs cnnviz actmax three
times (1 intra-op thread, OMP_WAIT_POLICY=PASSIVE) and composes units/<layer>_<unit>.png with PIL.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from PIL import Image, ImageDraw, ImageFont

from bench_common import ENV, ROOT

ROWS = (("fp32, seed 0", "fp32", 0), ("bf16, seed 0", "bf16", 0), ("fp32, seed 1", "fp32", 1))


def font(size):
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "tinycnn.pt"))
    parser.add_argument("--layer", default="conv5")
    parser.add_argument("--units", default="0-7")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "images", "tinycnn_conv5_precision.png"))
    args = parser.parse_args()
    binary = os.path.join(os.path.abspath(args.build), "apps", "cnnviz")
    work = tempfile.mkdtemp(prefix="precision_figure_")
    rows = []
    for name, precision, seed in ROWS:
        out = os.path.join(work, f"{precision}_{seed}")
        proc = subprocess.run([binary, "-q", "--seed", str(seed), "actmax", "--model", args.model, "--layer", args.layer,
                               "--units", args.units, "--steps", str(args.steps), "--precision", precision,
                               "--out", out], env=ENV, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            sys.exit(f"cnnviz actmax failed: {proc.stderr.strip()}")
        with open(os.path.join(out, "report.json"), encoding="utf-8") as handle:
            report = json.load(handle)
        tiles = [(Image.open(os.path.join(out, "units", f"{args.layer}_{u['unit']}.png")).convert("RGB"), u)
                 for u in report["units"]]
        rows.append((name, tiles))

    tile = rows[0][1][0][0].width
    label_width, caption, title_height, gap = 150, 22, 54, 6
    columns = len(rows[0][1])
    width = label_width + columns * (tile + gap)
    height = title_height + len(rows) * (tile + caption + gap)
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    draw.text((8, 6), f"{os.path.basename(args.model)} {args.layer}, {args.steps} steps: bf16 against fp32 with the same "
                      "seed and with another seed", fill="black", font=font(17))
    draw.text((8, 30), "under each image: final objective (channel mean), evaluated with the float32 network on every row",
              fill=(90, 90, 90), font=font(13))
    exact = {u["unit"]: u["final_value"] for _, u in rows[0][1]}
    for r, (name, tiles) in enumerate(rows):
        y = title_height + r * (tile + caption + gap)
        draw.text((8, y + tile // 2 - 10), name, fill="black", font=font(16))
        for c, (image, unit) in enumerate(tiles):
            x = label_width + c * (tile + gap)
            figure.paste(image, (x, y))
            text = f"u{unit['unit']}: {unit['final_value']:.2f}"
            if r > 0 and exact[unit["unit"]]:
                text += f" ({100 * (unit['final_value'] / exact[unit['unit']] - 1):+.0f}%)"
            draw.text((x + 2, y + tile + 3), text, fill="black", font=font(13))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"wrote {args.out} ({width}x{height}); runs in {work}")


if __name__ == "__main__":
    main()
