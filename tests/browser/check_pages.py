#!/usr/bin/python3
"""Open a cnnviz output folder's viewer in headless Chromium and check its self-test report.

    check_pages.py OUTPUT_FOLDER [--screenshots DIR]

Pages: the network page, the first layer's page and (atlas only) the page of the first unit of the
first layer; for an adversarial report (docs/adversarial.md), the network page and the first image's page;
for a compare report (docs/compare.md), the network page and the first layer with unit evolution (whose
table has no IoU column to sort). Each is loaded as file:///.../index.html#<page>&selftest=1; the viewer then waits for its
images, clicks the IoU header on a layer page, and writes a JSON report into <pre id="cnnviz-selftest">,
which this script reads from --dump-dom. It fails (exit 1) when the report is missing, an error was
recorded, an image broke, a layer or image page has no rows, or the IoU column did not sort descending.
Exit 77 (skip) when no chromium is installed. Stdlib only.
"""
import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

BUDGET_MS = 10000


def find_chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        path = shutil.which(name)
        if path:
            return path
    return None


def load_data(folder):
    path = os.path.join(folder, 'data.js')
    with open(path, encoding='utf-8') as f:
        text = f.read().strip()
    m = re.match(r'window\.CNNVIZ_DATA\s*=\s*', text)
    if not m:
        raise ValueError('%s does not start with "window.CNNVIZ_DATA = "' % path)
    text = text[m.end():]
    if text.endswith(';'):
        text = text[:-1]
    return json.loads(text)


def pages_for(data):
    """[(kind, hash)] the pages to check."""
    pages = [('network', 'network')]
    if data.get('command') == 'compare':
        # docs/compare.md: the network page, and the page of the first layer with unit evolution.
        evolved = [l for l in data.get('layers') or [] if l and l.get('evolution')]
        if evolved:
            pages.append(('layer', 'layer=' + urllib.parse.quote(evolved[0]['name'], safe='')))
        return pages
    if data.get('command') == 'adversarial':
        images = data.get('images') or []
        if images:
            pages.append(('image', 'image=%d' % images[0]['index']))
        return pages
    layers = data.get('layers') or []
    if layers:
        name = layers[0]['name']
        pages.append(('layer', 'layer=' + urllib.parse.quote(name, safe='')))
        units = layers[0].get('units') or []
        if data.get('command') == 'atlas' and units:
            pages.append(('unit', 'unit=%s/%d' % (urllib.parse.quote(name, safe=''), units[0]['unit'])))
    return pages


def chromium_args(binary, profile):
    # A private profile dir keeps parallel runs (and a user's own browser) from interfering.
    return [binary, '--headless', '--no-sandbox', '--disable-gpu', '--allow-file-access-from-files',
            '--hide-scrollbars', '--user-data-dir=' + profile, '--virtual-time-budget=%d' % BUDGET_MS]


def run(cmd):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    except subprocess.TimeoutExpired:
        return None


def selftest_report(dom):
    m = re.search(r'<pre id="cnnviz-selftest"[^>]*>(.*?)</pre>', dom, re.S)
    if not m:
        return None
    return json.loads(html.unescape(m.group(1)))


def check_page(binary, profile, url, kind):
    """Returns (problems, report)."""
    proc = run(chromium_args(binary, profile) + ['--dump-dom', url])
    if proc is None:
        return ['chromium timed out'], None
    dom = proc.stdout.decode('utf-8', 'replace')
    try:
        rep = selftest_report(dom)
    except ValueError as e:
        return ['self-test report is not JSON: %s' % e], None
    if rep is None:
        tail = proc.stderr.decode('utf-8', 'replace').strip().splitlines()[-3:]
        return ['self-test element <pre id="cnnviz-selftest"> missing (rc %d; %s)' % (proc.returncode, ' | '.join(tail))], None
    # A recorded error may carry a stack; its first two lines say what and where.
    problems = ['error: %s' % ' | '.join(str(e).strip().splitlines()[:2]) for e in rep.get('errors', [])]
    problems += ['broken image: %s' % b for b in rep.get('broken', [])]
    if kind == 'layer':
        if not rep.get('rows'):
            problems.append('layer page has 0 rows')
        ious = rep.get('sorted_iou', [])
        if any(v is None for v in ious):
            problems.append('sorted IoU has non-numbers: %s' % ious)
        elif any(a < b for a, b in zip(ious, ious[1:])):
            problems.append('IoU column not sorted descending after the header click: %s' % ious)
    if kind == 'image' and not rep.get('rows'):
        problems.append('image page has 0 table rows')
    return problems, rep


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('folder')
    ap.add_argument('--screenshots', metavar='DIR')
    a = ap.parse_args()

    binary = find_chromium()
    if not binary:
        print('SKIP: no chromium')
        return 77
    folder = os.path.abspath(a.folder)
    index = os.path.join(folder, 'index.html')
    if not os.path.isfile(index):
        print('FAIL: %s missing' % index)
        return 1
    try:
        data = load_data(folder)
    except (OSError, ValueError) as e:
        print('FAIL: cannot read data.js: %s' % e)
        return 1
    base = 'file://' + urllib.parse.quote(index)
    failed = False
    profile = tempfile.mkdtemp(prefix='cnnviz-chromium-')
    try:
        for kind, page in pages_for(data):
            problems, rep = check_page(binary, profile, base + '#' + page + '&selftest=1', kind)
            for p in problems:
                print('FAIL %s (#%s): %s' % (kind, page, p))
            if problems:
                failed = True
            else:
                print('OK %s (#%s): %d images, %d rows%s' % (
                    kind, page, rep['images'], rep['rows'],
                    ', IoU sorted %s' % ['%.3f' % v for v in rep['sorted_iou']] if rep.get('sorted_iou') else ''))
            if a.screenshots:
                os.makedirs(a.screenshots, exist_ok=True)
                shot = os.path.abspath(os.path.join(a.screenshots, kind + '.png'))
                if os.path.exists(shot):
                    os.remove(shot)
                proc = run(chromium_args(binary, profile) + ['--screenshot=' + shot, '--window-size=1280,1600', base + '#' + page])
                if proc is None or not os.path.isfile(shot):
                    print('FAIL %s: no screenshot written to %s' % (kind, shot))
                    failed = True
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
