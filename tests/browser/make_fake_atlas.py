#!/usr/bin/env python3
"""Write a small fake `cnnviz atlas` output folder for viewer development and the viewer-only test.

    make_fake_atlas.py OUT_DIR [--plain] [--broken]

The folder follows docs/atlas.md: atlas.json, data.js, the viewer files (apps/viewer/*) and tiny PNGs
(written with zlib + struct). Two layers of 20 units; the first has a 6x6 activation atlas with some
empty cells, the second none; 2 inversion samples; 12 classes; per-unit histograms.
--plain makes a plain-image-folder atlas (no dissection: no concepts, labels "", IoU 0, detectors null).
--broken deletes one referenced image (to check that the browser test notices).
Stdlib only; deterministic.
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
VIEWER = os.path.join(HERE, '..', '..', 'apps', 'viewer')


def png_bytes(w, h, pixel):
    """RGB PNG of w x h, pixel(x, y) -> (r, g, b) in 0..255."""
    raw = bytearray()
    for y in range(h):
        raw.append(0)  # filter type none
        for x in range(w):
            raw.extend(bytes(max(0, min(255, int(c))) for c in pixel(x, y)))

    def chunk(tag, data):
        return (struct.pack('>I', len(data)) + tag + data +
                struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
            chunk(b'IDAT', zlib.compress(bytes(raw), 6)) + chunk(b'IEND', b''))


class Writer:
    def __init__(self, root):
        self.root = root

    def png(self, rel, w, h, pixel):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(png_bytes(w, h, pixel))
        return rel


def pattern(seed, kind=0):
    """A deterministic colourful pattern function for a given seed."""
    r = random.Random(seed)
    fx, fy, ph = r.uniform(0.15, 0.6), r.uniform(0.15, 0.6), r.uniform(0, 6.28)
    base = [r.randint(40, 220) for _ in range(3)]
    if kind == 1:  # blobby (crops)
        return lambda x, y: [b + 60 * math.sin(fx * x * 0.7 + ph) * math.cos(fy * y * 0.7) for b in base]
    if kind == 2:  # grey-ish edges (deconv)
        return lambda x, y: [128 + 90 * math.sin(fx * (x + y) + ph)] * 3
    return lambda x, y: [b + 80 * math.sin(fx * x + ph + i) * math.cos(fy * y + i) for i, b in enumerate(base)]


def chart(w, h, bars, seed):
    """A crude bar chart PNG (white background, blue bars)."""
    r = random.Random(seed)
    heights = [r.uniform(0.1, 0.95) for _ in range(bars)]
    bw = w // bars

    def px(x, y):
        i = min(bars - 1, x // bw)
        if x % bw < 2 or x % bw > bw - 3:
            return (255, 255, 255)
        return (70, 120, 200) if y > h * (1 - heights[i]) else (255, 255, 255)
    return px


def rf(size, stride, glob=False):
    return {'size': [size, size], 'stride': [stride, stride], 'offset': [0, 0], 'global': glob, 'method': 'walked'}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('out')
    ap.add_argument('--plain', action='store_true', help='no dissection (plain image folder)')
    ap.add_argument('--broken', action='store_true', help='remove one referenced image')
    a = ap.parse_args()
    rnd = random.Random(7)
    os.makedirs(a.out, exist_ok=True)
    W = Writer(a.out)
    dissect = not a.plain
    cats = ['color', 'object', 'texture'] if dissect else []
    concepts = {'color': ['red-c', 'green-c', 'blue-c'], 'object': ['circle', 'triangle'], 'texture': ['striped', 'dotted']}

    # layers[].units is the unit array (docs/atlas.md also lists a "units" count there; one JSON key can
    # hold only one of them); the count is layers_table[].units, here equal to shape[0] = 20.
    layer_specs = [('features.3', 'conv2', [20, 24, 24], rf(11, 4)), ('features.8', 'conv5', [20, 6, 6], rf(59, 16))]
    layers = []
    for li, (name, alias, shape, field) in enumerate(layer_specs):
        disp = name
        units = []
        for k in range(20):
            s = li * 1000 + k
            act = W.png('layers/%s/actmax/u%d.png' % (disp, k), 32, 32, pattern(s))
            copies = [{'image': W.png('layers/%s/actmax/u%d_c%d.png' % (disp, k, c), 32, 32, pattern(s + 100 * c)),
                       'value': round(rnd.uniform(3, 9), 3)} for c in (1, 2)]
            top = []
            peak = rnd.uniform(4, 14)
            for r_ in range(3):
                top.append({'image': 'dataset/images/img%04d.jpg' % rnd.randint(0, 9999),
                            'activation': round(peak * (1 - 0.08 * r_), 4), 'y': rnd.randint(0, shape[1] - 1),
                            'x': rnd.randint(0, shape[2] - 1),
                            'crop': W.png('layers/%s/top/u%d_r%d.png' % (disp, k, r_), 24, 24, pattern(s * 7 + r_, 1)),
                            'deconv': W.png('layers/%s/deconv/u%d_r%d.png' % (disp, k, r_), 24, 24, pattern(s * 7 + r_, 2))})
            nb = 12
            lo, hi = 0.0, peak
            edges = [round(lo + (hi - lo) * i / nb, 4) for i in range(nb + 1)]
            counts = [int(200 * math.exp(-((i - 3 - k % 4) ** 2) / 6.0)) + rnd.randint(0, 5) for i in range(nb)]
            if dissect:
                cat = rnd.choice(cats)
                label = rnd.choice(concepts[cat])
                iou = round(rnd.uniform(0.0, 0.12), 5)
                bpc = {c: {'label': rnd.choice(concepts[c]), 'iou': round(rnd.uniform(0, iou), 5)} for c in cats}
                bpc[cat] = {'label': label, 'iou': iou}
            else:
                cat, label, iou, bpc = '', '', 0, {}
            units.append({
                'unit': k,
                'actmax': {'image': act, 'value': round(rnd.uniform(4, 10), 3), 'initial_value': round(rnd.uniform(-0.5, 0.5), 3),
                           'raised': k != 3, 'copies': copies},
                'top_activation': round(peak, 4), 'mean_peak': round(peak * 0.3, 4),
                'histogram': {'edges': edges, 'counts': counts},
                'label': label, 'category': cat, 'iou': iou, 'detector': bool(dissect and iou > 0.04),
                'best_per_category': bpc, 'top': top})
        per_cat = None
        detectors = None
        if dissect:
            detectors = sum(u['detector'] for u in units)
            per_cat = {c: {'detectors': sum(u['detector'] and u['category'] == c for u in units),
                           'unique_concepts': len({u['label'] for u in units if u['detector'] and u['category'] == c})}
                       for c in cats}
        atlas = None
        if li == 0:
            G = 6
            cells = []
            for y in range(G):
                for x in range(G):
                    if (x + 2 * y) % 5 == 0:  # some empty cells
                        continue
                    tc = [[rnd.choice(concepts['color']), 0.5], [rnd.choice(concepts['object']), 0.2]] if dissect else []
                    cells.append({'x': x, 'y': y, 'count': rnd.randint(3, 60),
                                  'image': W.png('layers/%s/atlas/cell_%d_%d.png' % (disp, y, x), 32, 32, pattern(5000 + y * G + x)),
                                  'value': round(rnd.uniform(1, 3), 3),
                                  'concept': tc[0][0] if tc else None, 'concept_share': tc[0][1] if tc else 0,
                                  'top_concepts': tc, 'top_units': [[rnd.randint(0, 19), round(rnd.uniform(2, 4), 3)] for _ in range(3)]})
            atlas = {'method': 't-SNE (exact, perplexity 30)', 'samples': 300, 'grid': G, 'min_count': 3,
                     'image': W.png('layers/%s/atlas.png' % disp, 96, 96, pattern(4242)),
                     'cells': cells, 'points': [[round(rnd.random(), 4), round(rnd.random(), 4)] for _ in range(300)]}
        layers.append({'name': name, 'display': disp, 'type': 'Conv2d', 'shape': shape,
                       'receptive_field': field, 'detectors': detectors, 'per_category': per_cat,
                       'overview': W.png('layers/%s/units.png' % disp, 160, 128, pattern(900 + li)),
                       'atlas': atlas, 'units': units})

    layers_table = [
        {'name': 'features.0', 'alias': 'conv1', 'type': 'Conv2d', 'shape': [32, 48, 48], 'units': 32, 'receptive_field': rf(3, 2), 'in_atlas': False},
        {'name': 'features.3', 'alias': 'conv2', 'type': 'Conv2d', 'shape': [20, 24, 24], 'units': 20, 'receptive_field': rf(11, 4), 'in_atlas': True},
        {'name': 'features.8', 'alias': 'conv5', 'type': 'Conv2d', 'shape': [20, 6, 6], 'units': 20, 'receptive_field': rf(59, 16), 'in_atlas': True},
        {'name': 'classifier', 'alias': 'fc', 'type': 'Linear', 'shape': [12], 'units': 12, 'receptive_field': rf(96, 1, True), 'in_atlas': False}]
    concepts_by_layer = None
    if dissect:
        concepts_by_layer = {'chart': W.png('network/concepts_by_layer.png', 240, 120, chart(240, 120, 6, 1)),
                             'categories': cats,
                             'rows': [{'layer': l['name'], 'units': len(l['units']), 'detectors': l['detectors'],
                                       'per_category': l['per_category']} for l in layers]}
    samples = []
    for s in range(2):
        samples.append({'image': 'dataset/images/sample%d.jpg' % s,
                        'original': W.png('network/inversions/s%d_original.png' % s, 48, 48, pattern(7000 + s)),
                        'layers': [{'layer': l['name'], 'image': W.png('network/inversions/s%d_%s.png' % (s, l['display']), 48, 48, pattern(7000 + s + 10 * (i + 1), 1)),
                                    'psnr': round(24 - 6 * i + rnd.random(), 3), 'feature_error': round(0.05 + 0.1 * i, 4)}
                                   for i, l in enumerate(layers)]})
    names = ['cat', 'dog', 'car', 'ship', 'tree', 'house', 'bird', 'fish', 'plane', 'horse', 'truck', 'frog']
    classes = {'output': 'classifier', 'count': 12,
               'shown': [{'class': c, 'name': names[c], 'image': W.png('network/classes/c%d.png' % c, 48, 48, pattern(8000 + c)),
                          'value': round(rnd.uniform(5, 20), 3)} for c in range(12)]}
    stages = [{'name': n, 'seconds': round(rnd.uniform(0.2, 40), 2), 'resumed': n == 'scan'}
              for n in ['scan', 'dissect', 'actmax', 'top', 'deconv', 'atlas', 'inversions', 'classes']]
    warnings = [] if dissect else ['fake atlas: plain image folder, no concept labels (this warning is a test)']
    data = {
        'command': 'atlas', 'cnnviz_version': '0.1.0-fake', 'torch_version': '1.13.0', 'created': '2026-01-01T00:00:00Z', 'seed': 0,
        'model': {'path': 'models/fake.pt', 'device': 'cpu', 'input': {'size': [96, 96], 'channel_order': 'RGB', 'mean': [0.5, 0.5, 0.5], 'std': [0.25, 0.25, 0.25]}},
        'options': {'layers': [l['name'] for l in layers], 'units_per_layer': 20, 'top': 3, 'atlas': {'grid': 6, 'samples': 300}},
        'dataset': {'path': 'dataset/fake', 'kind': 'broden' if dissect else 'images', 'images': 300,
                    'skipped': [{'image': 'dataset/images/bad.jpg', 'reason': 'cannot decode'}], 'categories': cats},
        'stages': stages, 'warnings': warnings,
        'network': {'layers_table': layers_table, 'concepts_by_layer': concepts_by_layer,
                    'inversions': {'chart': W.png('network/inversion_by_depth.png', 240, 120, chart(240, 120, 2, 2)), 'samples': samples},
                    'classes': classes},
        'layers': layers}
    with open(os.path.join(a.out, 'atlas.json'), 'w') as f:
        json.dump(data, f, indent=1)
    with open(os.path.join(a.out, 'data.js'), 'w') as f:
        f.write('window.CNNVIZ_DATA = ' + json.dumps(data, separators=(',', ':')) + ';\n')
    for fn in ('index.html', 'viewer.js', 'viewer.css'):
        shutil.copy(os.path.join(VIEWER, fn), os.path.join(a.out, fn))
    if a.broken:
        os.remove(os.path.join(a.out, layers[0]['units'][0]['top'][0]['crop']))
    print(a.out)


if __name__ == '__main__':
    main()
