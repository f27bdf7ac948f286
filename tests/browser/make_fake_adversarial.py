#!/usr/bin/env python3
"""Write a small fake `cnnviz adversarial` output folder for viewer development and the viewer-only test.

    make_fake_adversarial.py OUT_DIR [--image-mode] [--broken]

The folder follows docs/adversarial.md: report.json, data.js, the viewer files (apps/viewer/*) and tiny
PNGs (written with make_fake_atlas.py's zlib + struct writer). Folder mode: 30 images (indices with gaps
where 2 images were skipped), an untargeted L-inf PGD attack, 5 layers, 2 inspected layers with 5 units
that rose and 5 that fell (some labelled by a dissection, some not, some without projections), inversions
for 3 layers; one image has a null cosine to exercise the en dashes.
--image-mode: one image, a targeted L2 attack, no dissection, a warning.
--broken deletes one referenced image (to check that the browser test notices).
Stdlib only; deterministic.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fake_atlas import VIEWER, Writer, chart, pattern  # noqa: E402

NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', None]  # class 9 has no name
SIZE = 48


def stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return {'mean': None, 'std': None, 'min': None, 'max': None}
    m = sum(v) / len(v)
    return {'mean': round(m, 6), 'std': round(math.sqrt(sum((x - m) ** 2 for x in v) / len(v)), 6),
            'min': round(min(v), 6), 'max': round(max(v), 6)}


def softmax_top5(rnd, first, boost):
    logits = [rnd.uniform(-2, 3) for _ in NAMES]
    logits[first] += boost
    e = [math.exp(x) for x in logits]
    s = sum(e)
    order = sorted(range(len(NAMES)), key=lambda c: -logits[c])[:5]
    return [{'class': c, 'name': NAMES[c], 'probability': round(e[c] / s, 6), 'logit': round(logits[c], 4)} for c in order]


def perturbation(seed, gain):
    r = random.Random(seed)
    noise = [[[r.choice((-1, 1)) * 0.031 for _ in range(3)] for _ in range(SIZE)] for _ in range(SIZE)]
    return lambda x, y: [255 * max(0.0, min(1.0, 0.5 + noise[y][x][i] * gain)) for i in range(3)]


def adversarial_of(seed):
    base = pattern(seed)
    r = random.Random(seed + 1)
    noise = [[r.choice((-8, 8)) for _ in range(SIZE)] for _ in range(SIZE)]
    return lambda x, y: [c + noise[y][x] for c in base(x, y)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('out')
    ap.add_argument('--image-mode', action='store_true', help='one image (--image) instead of a folder')
    ap.add_argument('--broken', action='store_true', help='remove one referenced image')
    a = ap.parse_args()
    rnd = random.Random(11)
    os.makedirs(a.out, exist_ok=True)
    W = Writer(a.out)
    single = a.image_mode

    layer_specs = [('features.0', 'conv1', [32, 48, 48]), ('features.3', 'conv2', [64, 24, 24]),
                   ('features.6', 'conv3', [128, 12, 12]), ('features.8', 'conv5', [128, 6, 6]),
                   ('classifier', 'classifier', [10])]
    nl = len(layer_specs)
    if single:
        indices, skipped = [0], []
        attack = {'source': 'cnnviz', 'attack': 'pgd', 'norm': 'l2', 'epsilon': 0.5, 'epsilon_text': '0.5',
                  'steps': 20, 'step_size': 0.0625, 'random_start': False, 'target': {'class': 3, 'name': 'cat'}}
        meaning = 'prediction reached the target'
    else:
        indices = [i for i in range(32) if i not in (7, 19)]
        skipped = [{'image': 'images/img0007.png', 'reason': 'cannot decode'},
                   {'image': 'images/img0019.png', 'reason': 'not an image (3 bytes)'}]
        attack = {'source': 'cnnviz', 'attack': 'pgd', 'norm': 'linf', 'epsilon': 8 / 255, 'epsilon_text': '8/255',
                  'steps': 10, 'step_size': 2 / 255, 'random_start': True, 'target': None}
        meaning = 'prediction moved off the clean prediction'
    attack['space'] = "image pixels in [0, 1], before the model's range and normalization"

    images = []
    for n, k in enumerate(indices):
        s = 100 + k
        gain = 6.4 if not single else 4.0
        clean_cls = rnd.randrange(len(NAMES))
        success = (n % 7) != 3
        if single:
            adv_cls = 3
        else:
            adv_cls = (clean_cls + 1 + rnd.randrange(len(NAMES) - 1)) % len(NAMES) if success else clean_cls
        irl = round(rnd.uniform(0.03, 0.07), 5)
        amp = rnd.uniform(0.7, 1.4)
        rel = [round(irl * amp * (1.0 + 1.6 * j) + rnd.uniform(0, 0.02), 5) for j in range(nl)]
        cos = [round(max(-1.0, 1 - 0.5 * r_ * r_ - rnd.uniform(0, 0.01)), 5) for r_ in rel]
        if not single and n == len(indices) - 1:
            cos[2] = None  # a value that does not exist shows an en dash
        name = 'images/img%04d.png' % k if not single else 'photos/cat.png'
        linf = round(attack['epsilon'] * (1 if not single else 0.4), 6)
        images.append({
            'index': k, 'name': name,
            'figure': W.png('images/%04d.png' % k, 3 * SIZE + 8, SIZE + 12, pattern(s + 5000)),
            'clean': W.png('images/%04d_clean.png' % k, SIZE, SIZE, pattern(s)),
            'adversarial': W.png('images/%04d_adversarial.png' % k, SIZE, SIZE, adversarial_of(s)),
            'perturbation': W.png('images/%04d_perturbation.png' % k, SIZE, SIZE, perturbation(s, gain)),
            'perturbation_gain': gain,
            'linf': linf, 'l2': round(rnd.uniform(1.2, 2.4), 4), 'input_relative_l2': irl,
            'clean_class': clean_cls, 'adversarial_class': adv_cls, 'success': success,
            'clean_top5': softmax_top5(rnd, clean_cls, 4.0),
            'adversarial_top5': softmax_top5(rnd, adv_cls, 2.5),
            'relative_l2': rel, 'cosine': cos})

    layers = []
    for j, (name, disp, shape) in enumerate(layer_specs):
        layers.append({'name': name, 'display': disp, 'shape': shape,
                       'relative_l2': stats([im['relative_l2'][j] for im in images]),
                       'cosine': stats([im['cosine'][j] for im in images])})

    example = indices[0] if single else 4
    labelled = set() if single else {'features.8'}
    concepts = [('striped', 'texture'), ('red-c', 'color'), ('wheel', 'part'), ('dotted', 'texture'), ('sky', 'object')]

    def units(layer, disp, sign, seed):
        r = random.Random(seed)
        out = []
        for i in range(5):
            u = r.randrange(0, 128)
            clean = round(r.uniform(0.2, 2.0), 4)
            change = round(sign * (3.0 - 0.45 * i) * r.uniform(0.8, 1.1), 4)
            lab = concepts[(u + i) % len(concepts)] if layer in labelled and i % 2 == 0 else None
            proj = i != 4  # the last one has no projection
            out.append({'unit': u, 'clean': clean, 'adversarial': round(clean + change, 4), 'change': change,
                        'label': lab[0] if lab else None, 'category': lab[1] if lab else None,
                        'iou': round(r.uniform(0.04, 0.15), 4) if lab else None,
                        'projection_clean': W.png('changes/%s_%04d_clean.png' % (disp, u), 24, 24, pattern(seed * 10 + u, 2)) if proj else None,
                        'projection_adversarial': W.png('changes/%s_%04d_adversarial.png' % (disp, u), 24, 24, pattern(seed * 10 + u + 1, 1)) if proj else None})
        return out

    changes, changes_figure = [], {}
    for name, disp in (('features.3', 'conv2'), ('features.8', 'conv5')):
        changes.append({'name': name, 'display': disp,
                        'measure': "the unit's spatial maximum" + ('' if single else '; folder mode: its mean over images'),
                        'images': len(images), 'rose': units(name, disp, 1, len(changes) * 2 + 1),
                        'fell': units(name, disp, -1, len(changes) * 2 + 2)})
        changes_figure[name] = W.png('changes/%s.png' % disp, 240, 120, chart(240, 120, 10, len(changes)))

    inversions = {'image': example, 'steps': 200, 'figure': W.png('inversions.png', 240, 120, chart(240, 120, 3, 9)),
                  'layers': [{'name': name, 'display': disp,
                              'clean': W.png('inversions/%s_clean.png' % disp, SIZE, SIZE, pattern(900 + i, 1)),
                              'adversarial': W.png('inversions/%s_adversarial.png' % disp, SIZE, SIZE, pattern(950 + i, 1)),
                              'clean_feature_error': round(0.05 + 0.04 * i, 4), 'adversarial_feature_error': round(0.07 + 0.05 * i, 4),
                              'clean_psnr': round(24 - 3 * i, 2), 'adversarial_psnr': round(22 - 4 * i, 2)}
                             for i, (name, disp, _) in enumerate(layer_specs[:4]) if disp != 'conv3']}

    succ = sum(im['success'] for im in images)
    data = {
        'command': 'adversarial', 'cnnviz_version': '0.1.0-fake', 'torch_version': '1.13.0',
        'created': '2026-01-01T00:00:00Z', 'seed': 0,
        'model': {'path': 'models/fake.pt', 'device': 'cpu',
                  'input': {'size': [SIZE, SIZE], 'channel_order': 'RGB', 'mean': [0.5, 0.5, 0.5], 'std': [0.25, 0.25, 0.25]}},
        'options': {'attack': attack['attack'], 'norm': attack['norm'], 'epsilon': attack['epsilon_text'],
                    'steps': attack['steps'], 'inspect': [c['name'] for c in changes], 'changed_units': 5,
                    'images' if not single else 'image': 'images/' if not single else 'photos/cat.png'},
        'warnings': ['fake adversarial report: one image, no dissection (this warning is a test)'] if single else [],
        'mode': 'image' if single else 'folder',
        'attack': attack,
        'summary': {'images': len(images), 'success': succ, 'success_rate': round(succ / len(images), 6),
                    'success_meaning': meaning,
                    'clean_predictions_kept': sum(im['clean_class'] == im['adversarial_class'] for im in images),
                    'linf': stats([im['linf'] for im in images]), 'l2': stats([im['l2'] for im in images]),
                    'input_relative_l2': stats([im['input_relative_l2'] for im in images]),
                    'images_per_minute': 123.4},
        'layers': layers,
        'divergence_chart': W.png('divergence.png', 320, 200, chart(320, 200, nl, 3)),
        'images': images,
        'skipped': skipped,
        'changes': changes,
        'changes_figure': changes_figure,
        'example': example,
        'inversions': inversions,
        'dissection': None if single else {'path': 'out/dissect', 'layers': ['features.8']},
        'timings': {'attack_seconds': 4.2, 'attack_steps': 10 * len(images), 'seconds_per_step': 0.014,
                    'divergence_seconds': 0.8, 'changes_seconds': 1.1, 'inversion_seconds': 9.5, 'total_seconds': 16.3}}
    with open(os.path.join(a.out, 'report.json'), 'w') as f:
        json.dump(data, f, indent=1)
    with open(os.path.join(a.out, 'data.js'), 'w') as f:
        f.write('window.CNNVIZ_DATA = ' + json.dumps(data, separators=(',', ':')) + ';\n')
    for fn in ('index.html', 'viewer.js', 'viewer.css'):
        shutil.copy(os.path.join(VIEWER, fn), os.path.join(a.out, fn))
    if a.broken:
        os.remove(os.path.join(a.out, images[0]['adversarial']))
    print(a.out)


if __name__ == '__main__':
    main()
