#!/usr/bin/env python3
"""Write a small fake `cnnviz compare` output folder for viewer development and the viewer-only test.

    make_fake_compare.py OUT_DIR [--different] [--broken]

The folder follows docs/compare.md: compare.json and report.json (the same object), data.js, the viewer
files (apps/viewer/*) and tiny PNGs (written with make_fake_atlas.py's zlib + struct writer).
Default: 5 checkpoints of one run (ckpt_00000 .. ckpt_01000, steps 0, 250, 500, 750, 1000; the first two
resumed), 2 layers (conv3 with 64 units, conv5 with 128) with unit evolution (concepts that appear,
vanish and switch; a few units without any label at the first checkpoint), strips for 6 units per layer, and rotations of
conv5 at alpha 0, 0.25, 0.5 and 1.
--different: 2 different architectures (one name without a number, so no step; the second twice as
wide, while layers[].units holds the first model's count), same_architecture false, evolution null,
rotations still on conv5, a warning.
--broken deletes one referenced PNG (to check that the browser test notices): a tile on the first layer
page by default, the overall chart with --different (the only page then is the network page).
Stdlib only; deterministic.
"""
import argparse
import json
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fake_atlas import VIEWER, Writer, chart, pattern  # noqa: E402

CATS = ['color', 'object', 'part', 'material', 'texture']
CONCEPTS = {'color': ['red-c', 'green-c', 'blue-c', 'yellow-c', 'white-c'],
            'object': ['car', 'dog', 'tree', 'sky', 'person', 'building'],
            'part': ['wheel', 'eye', 'window', 'leg'],
            'material': ['wood', 'metal', 'glass'],
            'texture': ['striped', 'dotted', 'banded', 'zigzagged', 'chequered', 'grid']}
THRESHOLD = 0.04
TILE = 32


def random_label(r):
    cat = r.choice(CATS)
    return r.choice(CONCEPTS[cat]), cat


def tile(seed):
    """A top-image tile: a pattern with a yellow mask outline."""
    base = pattern(seed, 1)
    r = random.Random(seed)
    x0, y0 = r.randint(2, 12), r.randint(2, 12)
    x1, y1 = x0 + r.randint(8, 16), y0 + r.randint(8, 16)

    def px(x, y):
        edge = (x in (x0, x1) and y0 <= y <= y1) or (y in (y0, y1) and x0 <= x <= x1)
        return (250, 220, 40) if edge else base(x, y)
    return px


def strip(seeds):
    """The tiles of one unit side by side, 2 px apart (white gaps)."""
    fns = [tile(s) for s in seeds]

    def px(x, y):
        i, dx = divmod(x, TILE + 2)
        if dx >= TILE or y >= TILE:
            return (255, 255, 255)
        return fns[i](dx, y)
    return px


def summarize(model, per_unit):
    """per_model statistics of a layer from [(label, category, iou)] per unit."""
    dets = [(lab, cat) for lab, cat, iou in per_unit if lab is not None and iou is not None and iou > THRESHOLD]
    return {'model': model, 'detectors': len(dets), 'unique_total': len({lab for lab, _ in dets}),
            'unique_concepts': {c: len({lab for lab, cat in dets if cat == c}) for c in CATS},
            'detectors_per_category': {c: sum(cat == c for _, cat in dets) for c in CATS}}


def evolve(r, n_models):
    """One unit's best label and IoU per model: usually settling on one concept as training goes on."""
    final = random_label(r)
    final_iou = r.uniform(0.0, 0.17)
    settle = r.choice([0, 0, 0, 0, 1, 2, 3, 4]) if n_models > 1 else 0
    early = random_label(r)
    fading = r.random() < 0.1  # a detector early on that loses its concept (a change to null)
    if fading:
        final_iou, settle = r.uniform(0.06, 0.09), 0
    out = []
    for t in range(n_models):
        growth = (t / max(1, n_models - 1)) ** 1.3
        if fading:
            iou = final_iou * (1.0 - 0.8 * growth)
        else:
            iou = max(0.0, final_iou * (0.3 + 0.7 * growth) + r.uniform(-0.006, 0.006))
        lab, cat = final if t >= settle else early
        if t == 0 and r.random() < 0.12:
            lab, cat, iou = None, None, 0.0
        out.append((lab, cat, round(iou, 4)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('out')
    ap.add_argument('--different', action='store_true', help='two different architectures, no unit evolution')
    ap.add_argument('--broken', action='store_true', help='remove one referenced PNG')
    a = ap.parse_args()
    rnd = random.Random(5)
    os.makedirs(a.out, exist_ok=True)
    W = Writer(a.out)
    different = a.different

    if different:
        models = [{'name': 'tinycnn', 'path': 'models/tinycnn.pt', 'order': 0, 'step': None, 'resumed': False},
                  {'name': 'widecnn2', 'path': 'models/widecnn2.pt', 'order': 1, 'step': 2, 'resumed': True}]
    else:
        models = [{'name': 'ckpt_%05d' % s, 'path': 'models/checkpoints/ckpt_%05d.pt' % s, 'order': i, 'step': s,
                   'resumed': i < 2} for i, s in enumerate((0, 250, 500, 750, 1000))]
    names = [m['name'] for m in models]
    nm = len(models)

    layers = []
    for li, (lname, units) in enumerate((('conv3', 64), ('conv5', 128))):
        per_unit_models = [[] for _ in models]  # per model: [(label, category, iou)] per unit
        evo_units = []
        if different:
            # Different networks: each model has its own units; only the statistics are comparable.
            for mi in range(nm):
                n = units * (1 + mi)
                for k in range(n):
                    lab, cat = random_label(rnd)
                    per_unit_models[mi].append((lab, cat, round(rnd.uniform(0, 0.12 + 0.03 * mi), 4)))
        else:
            for k in range(units):
                traj = evolve(rnd, nm)
                for mi, v in enumerate(traj):
                    per_unit_models[mi].append(v)
                concept = [lab if lab is not None and iou > THRESHOLD else None for lab, cat, iou in traj]
                changes = [{'at': names[t], 'from': concept[t - 1], 'to': concept[t]}
                           for t in range(1, nm) if concept[t] != concept[t - 1]]
                evo_units.append({
                    'unit': k,
                    'per_model': [{'label': lab, 'category': cat, 'iou': iou, 'detector': concept[t] is not None,
                                   'tile': W.png('layers/%s/%s/unit_%04d.png' % (lname, names[t], k), TILE, TILE,
                                                 tile(li * 100000 + k * 10 + (t if concept[t] != concept[max(0, t - 1)] else 0)))}
                                  for t, (lab, cat, iou) in enumerate(traj)],
                    'concept': concept, 'changes': changes, 'strip': None})
        per_model = [summarize(names[mi], per_unit_models[mi]) for mi in range(nm)]
        evolution = None
        if not different:
            strip_units = [u['unit'] for u in evo_units if u['changes']][:6]
            for u in evo_units:
                if u['unit'] in strip_units:
                    seeds = [li * 100000 + u['unit'] * 10 + (t if u['concept'][t] != u['concept'][max(0, t - 1)] else 0)
                             for t in range(nm)]
                    u['strip'] = W.png('layers/%s/strips/unit_%04d.png' % (lname, u['unit']), nm * (TILE + 2), TILE + 2, strip(seeds))
            evolution = {'changed_units': sum(1 for u in evo_units if u['changes']), 'strip_units': strip_units, 'units': evo_units}
        rotations = None
        if lname == 'conv5':
            last = per_model[-1]
            points = []
            for alpha in (0.0, 0.25, 0.5, 1.0):
                keep = 1.0 - 0.85 * alpha ** 0.7
                uc = {c: int(round(last['unique_concepts'][c] * keep)) for c in CATS}
                if alpha == 0.0:
                    uc = dict(last['unique_concepts'])
                points.append({'alpha': alpha,
                               'detectors': last['detectors'] if alpha == 0.0 else int(round(last['detectors'] * keep)),
                               'unique_total': last['unique_total'] if alpha == 0.0 else sum(uc.values()),
                               'unique_concepts': uc})
            rotations = {'model': names[-1], 'seed': 0, 'points': points,
                         'chart': W.png('layers/%s/rotations.png' % lname, 240, 120, chart(240, 120, 4, 30 + li))}
        layers.append({'name': lname, 'display': lname, 'units': units, 'per_model': per_model,
                       'chart': W.png('layers/%s/interpretability.png' % lname, 240, 120, chart(240, 120, nm, 10 + li)),
                       'evolution': evolution, 'rotations': rotations})

    data = {
        'command': 'compare', 'cnnviz_version': '0.1.0-fake', 'torch_version': '1.13.0',
        'created': '2026-01-01T00:00:00Z', 'seed': 0,
        'model': {'path': models[0]['path'], 'device': 'cpu',
                  'input': {'size': [96, 96], 'channel_order': 'RGB', 'mean': [0.5, 0.5, 0.5], 'std': [0.25, 0.25, 0.25]}},
        'options': {'models': [m['path'] for m in models], 'dataset': 'dataset/broden_fake', 'layers': ['conv3', 'conv5'],
                    'rotations': 'conv5', 'iou_threshold': THRESHOLD},
        'warnings': ['fake compare: the models differ in architecture, so units are not compared (this warning is a test)'] if different else [],
        'dataset': {'path': 'dataset/broden_fake', 'images': 60, 'categories': CATS},
        'iou_threshold': THRESHOLD,
        'models': models,
        'same_architecture': not different,
        'layers': layers,
        'chart': W.png('interpretability.png', 320, 160, chart(320, 160, 2 * nm, 3)),
        'timings': {'pass_seconds': 12.5, 'figures_seconds': 3.25, 'total_seconds': 16.0}}
    for fn in ('compare.json', 'report.json'):
        with open(os.path.join(a.out, fn), 'w') as f:
            json.dump(data, f, indent=1)
    with open(os.path.join(a.out, 'data.js'), 'w') as f:
        f.write('window.CNNVIZ_DATA = ' + json.dumps(data, separators=(',', ':')) + ';\n')
    for fn in ('index.html', 'viewer.js', 'viewer.css'):
        shutil.copy(os.path.join(VIEWER, fn), os.path.join(a.out, fn))
    if a.broken:
        if different:
            os.remove(os.path.join(a.out, data['chart']))
        else:
            os.remove(os.path.join(a.out, layers[0]['evolution']['units'][0]['per_model'][-1]['tile']))
    print(a.out)


if __name__ == '__main__':
    main()
