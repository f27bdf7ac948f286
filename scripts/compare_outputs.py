#!/usr/bin/python3
"""Compares two output trees of scripts/readme_outputs.sh file for file.

    scripts/compare_outputs.py BEFORE AFTER

Images, CSV and .npy files must be byte-identical. report.json files must hold the same values under
every key both have, except what differs by nature between runs (created, timings, seconds, per-step
milliseconds, versions); keys only one side has are listed (reports may gain fields). The page files
(index.html, data.js, viewer.*) are listed, not compared: the page itself may change. Exit 1 on any
difference that is not listed as allowed.
"""
import json
import os
import sys

VOLATILE = {"created", "timings", "seconds", "ms_per_step", "cnnviz_version", "torch_version", "out",
            "images_per_second", "threshold_seconds", "tally_seconds", "total_seconds", "cache_mb_used"}
PAGES = {"index.html", "data.js", "viewer.js", "viewer.css"}


def files(root):
    found = set()
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.startswith("."):
                found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def compare_json(a, b, path, problems, added):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in VOLATILE:
                continue
            if key not in a or key not in b:
                added.append(f"{path}.{key} ({'after' if key in b else 'before'} only)")
                continue
            compare_json(a[key], b[key], f"{path}.{key}", problems, added)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            compare_json(x, y, f"{path}[{i}]", problems, added)
    elif a != b:
        problems.append(f"{path}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}")


def main():
    before, after = sys.argv[1], sys.argv[2]
    a, b = files(before), files(after)
    problems, added, pages = [], [], []
    for rel in sorted(a - b):
        (pages if os.path.basename(rel) in PAGES else problems).append(f"{rel}: only before")
    for rel in sorted(b - a):
        (pages if os.path.basename(rel) in PAGES else problems).append(f"{rel}: only after")
    same = 0
    for rel in sorted(a & b):
        if os.path.basename(rel) in PAGES:
            pages.append(f"{rel}: page file, not compared")
            continue
        pa, pb = os.path.join(before, rel), os.path.join(after, rel)
        if rel.endswith(".json"):
            with open(pa) as fa, open(pb) as fb:
                compare_json(json.load(fa), json.load(fb), rel, problems, added)
        else:
            with open(pa, "rb") as fa, open(pb, "rb") as fb:
                if fa.read() != fb.read():
                    problems.append(f"{rel}: bytes differ")
                    continue
        same += 1
    for line in pages:
        print("page:", line)
    for line in added:
        print("field:", line)
    for line in problems:
        print("DIFFERENT:", line)
    print(f"{same} files identical, {len(problems)} differences, {len(added)} fields on one side only")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
