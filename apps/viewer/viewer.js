/* cnnviz viewer: renders the atlas.json / dissect report.json that data.js assigns to
 * window.CNNVIZ_DATA. Static, no modules, no network, no libraries; opens from file://.
 * Routes (docs/atlas.md): #network, #layer=<name>, #unit=<name>/<k>, with optional
 * &sort=<col>&desc=1&filter=<text>&page=<n> (n is 1-based) and &selftest=1 (browser test hook).
 * All data reaches the page through DOM nodes and textContent, never through innerHTML. */
(function () {
  'use strict';

  var PAGE_SIZE = 100;
  var NA = '\u2013';        // an en dash, shown for missing values (the file stays ASCII)
  var errors = window.CNNVIZ_ERRORS || (window.CNNVIZ_ERRORS = []);
  var broken = [];           // paths of images that failed to load
  var D = window.CNNVIZ_DATA;
  var selftest = /(^|[#&])selftest=1(&|$)/.test(location.hash);

  // console.error also counts as an error for the self-test.
  var origConsoleError = console.error;
  console.error = function () {
    errors.push(Array.prototype.map.call(arguments, String).join(' '));
    return origConsoleError.apply(console, arguments);
  };

  /* ---------- DOM helpers ---------- */

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }

  /** el('a', {href: '#', class: 'x', onclick: fn, text: 'y'}, [children]) */
  function el(tag, attrs, children) {
    var n = tag.indexOf('svg:') === 0
      ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
      : document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === 'text') n.textContent = String(v);
      else if (k === 'style' && typeof v === 'object') Object.assign(n.style, v);
      else if (k.slice(0, 2) === 'on' && typeof v === 'function') n.addEventListener(k.slice(2), v);
      else n.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : String(v));
    });
    append(n, children);
    return n;
  }

  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  /** A number with d decimals, or NA (an en dash) for null/undefined/NaN/non-numbers. */
  function fmt(v, d) { return isNum(v) ? v.toFixed(d === undefined ? 2 : d) : NA; }
  function fmtInt(v) { return isNum(v) ? String(Math.round(v)) : NA; }
  function fmtStr(v) { return v === null || v === undefined || v === '' ? NA : String(v); }
  function fmtPair(a) { return Array.isArray(a) && a.length ? a.map(fmtStr).join('\u00d7') : NA; }
  function pct(a, b) { return isNum(a) && isNum(b) && b > 0 ? ' (' + (100 * a / b).toFixed(0) + '%)' : ''; }
  function basename(p) { return String(p || '').split(/[\\/]/).pop(); }
  function yesNo(v) { return v ? el('span', { class: 'yes', text: 'yes' }) : el('span', { class: 'no', text: 'no' }); }

  /** Every data path is relative to the output folder; encode each segment for the URL. */
  function fileUrl(path) { return String(path).split('/').map(encodeURIComponent).join('/'); }

  /** An <img> that turns into a visible "missing: <path>" box when it fails to load.
   *  opts: {cls, alt, title, scale (displayed at scale x natural size), href (wrap in a link)} */
  function image(path, opts) {
    opts = opts || {};
    if (!path) return el('span', { class: 'missing', text: 'no image' });
    var im = document.createElement('img');
    im.className = opts.cls || '';
    im.alt = opts.alt || basename(path);
    if (opts.title) im.title = opts.title;
    im.loading = selftest ? 'eager' : 'lazy';
    im.decoding = 'async';
    im.addEventListener('error', function () {
      if (broken.indexOf(path) < 0) broken.push(path);
      if (im.parentNode) im.parentNode.replaceChild(el('span', { class: 'missing', text: 'missing: ' + path }), im);
    });
    if (opts.scale) {
      im.addEventListener('load', function () {
        if (im.naturalWidth && im.naturalWidth <= 160) im.style.width = (im.naturalWidth * opts.scale) + 'px';
      });
    }
    im.src = fileUrl(path);
    return opts.href ? el('a', { href: opts.href }, im) : im;
  }

  /** <figure> with an image and caption lines. */
  function figure(path, lines, opts) {
    return el('figure', { class: (opts && opts.figCls) || '' }, [
      image(path, opts),
      el('figcaption', null, lines.filter(function (l) { return l !== null; }).map(function (l) {
        return el('div', null, l);
      }))]);
  }

  function simpleTable(headers, rows, cls) {
    return el('table', { class: cls || 'grid' }, [
      el('thead', null, el('tr', null, headers.map(function (h) { return el('th', null, h); }))),
      el('tbody', null, rows.map(function (r) {
        return el('tr', null, r.map(function (c) {
          return c && c.td ? el('td', { class: c.cls || '' }, c.td) : el('td', null, c);
        }));
      }))]);
  }
  function num(v) { return { td: v, cls: 'num' }; }

  /** Key/value table of a (possibly nested) object, nested keys dotted. */
  function kvTable(obj) {
    var rows = [];
    (function walk(o, prefix) {
      Object.keys(o || {}).forEach(function (k) {
        var v = o[k];
        if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, prefix + k + '.');
        else rows.push([el('code', { text: prefix + k }),
          Array.isArray(v) ? (v.length ? v.map(function (x) { return typeof x === 'object' ? JSON.stringify(x) : String(x); }).join(', ') : '[]')
            : v === null ? NA : String(v)]);
      });
    })(obj, '');
    return el('table', { class: 'kv' }, el('tbody', null, rows.map(function (r) {
      return el('tr', null, [el('th', null, r[0]), el('td', null, r[1])]);
    })));
  }

  /** Every unit's maximizing image as one PNG: folded, since the table shows each one beside its numbers. */
  function overviewGrid(l) {
    var details = el('details', { class: 'overview-grid' }, [
      el('summary', { text: 'Every unit\'s maximizing image in one grid (' + basename(l.overview || '') + ')' }),
      image(l.overview, { cls: 'overview' })]);
    details.open = selftest;  // the browser test checks that every image loads
    return el('section', null, details);
  }

  function section(title, children, id) {
    return el('section', { id: id || null }, [el('h2', { text: title }), children]);
  }
  function note(text) { return el('p', { class: 'note', text: text }); }
  function summaryLine(pairs) {
    return el('dl', { class: 'summary' }, pairs.map(function (p) {
      return el('div', null, [el('dt', { text: p[0] }), el('dd', null, p[1])]);
    }));
  }

  /* ---------- routing ---------- */

  function safeDecode(s) { try { return decodeURIComponent(s.replace(/\+/g, ' ')); } catch (e) { return s; } }

  /** {page: 'network'|'layer'|'unit'|'unknown', layer, unit, params: {...}} from location.hash */
  function parseHash() {
    var r = { page: 'network', params: {} };
    location.hash.replace(/^#/, '').split('&').forEach(function (part, i) {
      if (!part) return;
      var eq = part.indexOf('=');
      var k = eq < 0 ? part : part.slice(0, eq), v = eq < 0 ? '' : safeDecode(part.slice(eq + 1));
      if (i === 0 && k === 'network') return;
      if (i === 0 && k === 'layer') { r.page = 'layer'; r.layer = v; }
      else if (i === 0 && k === 'unit') {
        var slash = v.lastIndexOf('/');  // layer names may contain '/', unit numbers never do
        r.page = 'unit'; r.layer = v.slice(0, slash); r.unit = parseInt(v.slice(slash + 1), 10);
      } else if (i === 0 && eq < 0) r.page = 'unknown';
      else r.params[k] = v;
    });
    return r;
  }
  function layerHref(name) { return '#layer=' + encodeURIComponent(name); }
  function unitHref(name, k) { return '#unit=' + encodeURIComponent(name) + '/' + k; }
  /** A layer as people know it: its sidecar alias with the module path beside it when they differ. */
  function layerTitle(name) {
    var l = (D.layers || []).filter(function (x) { return x.name === name; })[0];
    return l && l.display && l.display !== name ? l.display + ' (' + name + ')' : name;
  }
  function layerLink(name) { return el('a', { href: layerHref(name), text: layerTitle(name) }); }

  /** Write table state into the hash without re-rendering (keeps focus in the filter box). */
  function replaceParams(route, params) {
    var base = route.page === 'layer' ? layerHref(route.layer).slice(1) : location.hash.replace(/^#/, '').split('&')[0];
    var keep = Object.assign({}, route.params, params);
    var parts = [base];
    Object.keys(keep).forEach(function (k) {
      var v = keep[k];
      if (v === '' || v === null || v === undefined || v === false) return;
      parts.push(k + '=' + encodeURIComponent(v));
    });
    route.params = keep;
    try { history.replaceState(null, '', '#' + parts.join('&')); } catch (e) { /* some file:// setups refuse */ }
  }

  function breadcrumb(items) {
    var out = [];
    items.forEach(function (it, i) {
      if (i) out.push(el('span', { class: 'sep', text: '\u203a' }));
      out.push(it[1] ? el('a', { href: it[1], text: it[0] }) : el('span', { class: 'here', text: it[0] }));
    });
    return el('nav', { class: 'crumbs' }, out);
  }

  /* ---------- sortable, filterable, paged table ---------- */

  /** cols: [{key, label, value(row) -> sort value or null, cell(row) -> node, num, desc (default direction)}]
   *  Null/'' sort values always go last. Filter tokens: all-digit = unit number, else label/category substring. */
  function dataTable(cols, rows, route) {
    var p = route.params;
    var state = {
      sort: cols.some(function (c) { return c.key === p.sort && c.value; }) ? p.sort : 'unit',
      desc: p.desc === '1', filter: p.filter || '', page: Math.max(1, parseInt(p.page, 10) || 1)
    };
    var tbody = el('tbody'), info = el('span', { class: 'count' }), pager = el('span', { class: 'pager' });
    var headCells = {};
    var thead = el('thead', null, el('tr', null, cols.map(function (c) {
      var th = el('th', { class: (c.num ? 'num ' : '') + (c.value ? 'sortable' : ''), 'data-col': c.key, title: c.value ? 'sort by ' + c.label : null }, c.label);
      if (c.value) {
        th.addEventListener('click', function () {
          if (state.sort === c.key) state.desc = !state.desc; else { state.sort = c.key; state.desc = !!c.desc; }
          state.page = 1; update();
        });
      }
      headCells[c.key] = th;
      return th;
    })));
    var input = el('input', { type: 'search', value: state.filter, placeholder: 'filter: label, category, unit #' });
    input.addEventListener('input', function () { state.filter = input.value; state.page = 1; update(); });

    function matches(r) {
      var toks = state.filter.toLowerCase().split(/\s+/).filter(Boolean);
      var text = (String(r.label || '') + ' ' + String(r.category || '')).toLowerCase();
      return toks.every(function (t) { return /^\d+$/.test(t) ? r.unit === +t : text.indexOf(t) >= 0; });
    }
    function sorted() {
      var col = cols.filter(function (c) { return c.key === state.sort; })[0];
      var dir = state.desc ? -1 : 1;
      return rows.filter(matches).map(function (r) { return { r: r, v: col.value(r) }; }).sort(function (a, b) {
        var an = a.v === null || a.v === '' || a.v === undefined, bn = b.v === null || b.v === '' || b.v === undefined;
        if (an !== bn) return an ? 1 : -1;
        if (!an && a.v !== b.v) return (a.v < b.v ? -1 : 1) * dir;
        return a.r.unit - b.r.unit;
      }).map(function (x) { return x.r; });
    }
    function pageButton(label, n, pages) {
      var b = el('button', { type: 'button', text: label, disabled: n < 1 || n > pages || n === state.page });
      b.addEventListener('click', function () { state.page = n; update(); });
      return b;
    }
    function update() {
      var list = sorted(), pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
      state.page = Math.min(state.page, pages);
      var shown = list.slice((state.page - 1) * PAGE_SIZE, state.page * PAGE_SIZE);
      tbody.textContent = '';
      shown.forEach(function (r) {
        tbody.appendChild(el('tr', null, cols.map(function (c) {
          var v = c.value ? c.value(r) : null;
          return el('td', { class: c.num ? 'num' : '', 'data-col': c.key, 'data-value': isNum(v) ? v : null }, c.cell(r));
        })));
      });
      if (!shown.length) tbody.appendChild(el('tr', null, el('td', { colspan: cols.length, class: 'note', text: 'no unit matches the filter' })));
      Object.keys(headCells).forEach(function (k) {
        headCells[k].classList.toggle('asc', k === state.sort && !state.desc);
        headCells[k].classList.toggle('desc', k === state.sort && state.desc);
      });
      info.textContent = list.length + ' of ' + rows.length + ' units' +
        (list.length ? ', rows ' + ((state.page - 1) * PAGE_SIZE + 1) + NA + ((state.page - 1) * PAGE_SIZE + shown.length) : '');
      pager.textContent = '';
      append(pager, [pageButton('\u00ab prev', state.page - 1, pages), ' page ' + state.page + ' of ' + pages + ' ',
        pageButton('next \u00bb', state.page + 1, pages)]);
      replaceParams(route, { sort: state.sort === 'unit' ? '' : state.sort, desc: state.desc ? '1' : '',
        filter: state.filter, page: state.page > 1 ? String(state.page) : '' });
    }
    update();
    return el('div', { class: 'datatable' }, [
      el('div', { class: 'tools' }, [input, info, pager]),
      el('div', { class: 'scroll' }, el('table', { class: 'grid units', id: 'unit-table' }, [thead, tbody]))]);
  }

  /* ---------- shared bits ---------- */

  function categoryTable(cats, perCat) {
    return simpleTable(['category', 'detectors', 'unique concepts'], cats.map(function (c) {
      var v = (perCat || {})[c] || {};
      return [c, num(fmtInt(v.detectors)), num(fmtInt(v.unique_concepts))];
    }));
  }
  function keysOf(o) { return Object.keys(o || {}); }
  function rfText(rf) {
    if (!rf) return NA;
    return fmtPair(rf.size) + (rf.global ? ' (global)' : '') + ', stride ' + fmtPair(rf.stride) +
      ', offset ' + fmtPair(rf.offset) + (rf.method ? ', ' + rf.method : '');
  }
  function warningsBox(list) {
    if (!list || !list.length) return null;
    return el('div', { class: 'warnings' }, [el('strong', { text: 'Warnings' }),
      el('ul', null, list.map(function (w) { return el('li', { text: String(w) }); }))]);
  }
  function iouValue(u) { return isNum(u.iou) ? u.iou : null; }
  function bestPerCategory(bpc) {
    var cats = keysOf(bpc);
    if (!cats.length) return note('No per-category labels (no dissection).');
    return simpleTable(['category', 'best label', 'IoU'], cats.map(function (c) {
      return [c, fmtStr(bpc[c].label), num(fmt(bpc[c].iou, 3))];
    }));
  }

  /* ---------- dissect pages ---------- */

  function dissectCategories(layer) {
    var opt = (D.options && D.options.categories) || [];
    var have = keysOf(layer.categories);
    return opt.filter(function (c) { return have.indexOf(c) >= 0; }).concat(have.filter(function (c) { return opt.indexOf(c) < 0; }));
  }

  function dissectNetwork() {
    var o = D.options || {}, m = D.model || {};
    var layers = D.layers || [];
    var cats = layers.length ? dissectCategories(layers[0]) : [];
    var head = ['layer', 'units', 'detectors'];
    cats.forEach(function (c) { head.push(c); });
    head.push('chart', 'links');
    return [
      el('h1', { text: 'Network dissection' }),
      summaryLine([['model', fmtStr(m.path)], ['device', fmtStr(m.device)], ['dataset', fmtStr(o.dataset)],
        ['images', fmtInt(D.images) + (D.images_skipped ? ' (' + D.images_skipped + ' skipped)' : '')],
        ['quantile', fmtStr(o.quantile)], ['IoU threshold', fmtStr(o.iou_threshold)],
        ['time', D.timings ? fmt(D.timings.total_seconds, 1) + ' s' : NA],
        ['cnnviz', fmtStr(D.cnnviz_version)], ['torch', fmtStr(D.torch_version)], ['created', fmtStr(D.created)]]),
      D.unit_numbering ? note('Unit numbering: ' + D.unit_numbering) : null,
      section('Layers', el('div', { class: 'scroll' }, [note('Per category: detectors / unique concepts.'), simpleTable(head, layers.map(function (l) {
        var row = [layerLink(l.name), num(fmtInt(l.units_total)), num(fmtInt(l.detectors) + pct(l.detectors, l.units_total))];
        cats.forEach(function (c) {
          var v = (l.categories || {})[c] || {};
          row.push(num(fmtInt(v.detectors) + ' / ' + fmtInt(v.unique_concepts)));
        });
        row.push(image(l.chart, { cls: 'chart' }));
        row.push([l.tally ? el('a', { href: fileUrl(l.tally), text: 'tally.csv' }) : NA, el('br'),
          el('a', { href: layerHref(l.name), text: 'units \u00bb' })]);
        return row;
      }))])),
      D.skipped && D.skipped.length ? section('Skipped images', simpleTable(['image', 'reason'],
        D.skipped.map(function (s) { return [fmtStr(s.image), fmtStr(s.reason)]; }))) : null,
      D.method ? el('details', null, [el('summary', { text: 'Method' }), kvTable(D.method)]) : null,
      D.options ? el('details', null, [el('summary', { text: 'Options' }), kvTable(D.options)]) : null
    ];
  }

  function dissectLayer(route) {
    var l = (D.layers || []).filter(function (x) { return x.name === route.layer; })[0];
    if (!l) return notFound('No layer "' + route.layer + '" in this report.');
    var cols = [
      { key: 'unit', label: 'unit', num: true, value: function (u) { return u.unit; }, cell: function (u) { return String(u.unit); } },
      { key: 'label', label: 'label', value: function (u) { return u.label || null; }, cell: function (u) { return fmtStr(u.label); } },
      { key: 'category', label: 'category', value: function (u) { return u.category || null; }, cell: function (u) { return fmtStr(u.category); } },
      { key: 'iou', label: 'IoU', num: true, desc: true, value: iouValue, cell: function (u) { return fmt(u.iou, 3); } },
      { key: 'detector', label: 'detector', desc: true, value: function (u) { return u.detector ? 1 : 0; }, cell: function (u) { return yesNo(u.detector); } },
      { key: 'threshold', label: 'threshold', num: true, desc: true, value: function (u) { return isNum(u.threshold) ? u.threshold : null; }, cell: function (u) { return fmt(u.threshold, 3); } },
      { key: 'figure', label: 'top images (activation > threshold outlined)', cell: function (u) {
        var tops = (u.top_images || []).map(function (t) { return basename(t.image) + ' ' + fmt(t.activation, 2); }).join('\n');
        return image(u.figure, { cls: 'strip', title: tops || null });
      } }
    ];
    return [
      breadcrumb([['network', '#network'], [layerTitle(l.name), null]]),
      el('h1', null, ['Layer ', el('code', { text: layerTitle(l.name) })]),
      summaryLine([['units', fmtInt(l.units_total)], ['detectors', fmtInt(l.detectors) + pct(l.detectors, l.units_total)],
        ['tally', l.tally ? el('a', { href: fileUrl(l.tally), text: 'tally.csv' }) : NA]]),
      el('div', { class: 'row' }, [categoryTable(dissectCategories(l), l.categories), image(l.chart, { cls: 'chart' })]),
      section('Units', dataTable(cols, l.units || [], route))
    ];
  }

  /* ---------- atlas: network page ---------- */

  function atlasLayer(name) { return (D.layers || []).filter(function (l) { return l.name === name; })[0]; }

  function atlasNetwork() {
    var m = D.model || {}, ds = D.dataset || {}, net = D.network || {};
    return [
      el('h1', { text: 'Network atlas' }),
      summaryLine([['model', fmtStr(m.path)], ['device', fmtStr(m.device)],
        ['dataset', fmtStr(ds.path) + ' (' + fmtStr(ds.kind) + ')'],
        ['images', fmtInt(ds.images) + (ds.skipped && ds.skipped.length ? ' (' + ds.skipped.length + ' skipped)' : '')],
        ['categories', ds.categories && ds.categories.length ? ds.categories.join(', ') : '\u2013 (plain image folder)'],
        ['seed', fmtStr(D.seed)], ['cnnviz', fmtStr(D.cnnviz_version)], ['torch', fmtStr(D.torch_version)], ['created', fmtStr(D.created)]]),
      stagesSection(D.stages),
      layersTableSection(net.layers_table || []),
      conceptsSection(net.concepts_by_layer),
      inversionsSection(net.inversions),
      classesSection(net.classes),
      ds.skipped && ds.skipped.length ? el('details', null, [el('summary', { text: 'Skipped images (' + ds.skipped.length + ')' }),
        simpleTable(['image', 'reason'], ds.skipped.map(function (s) { return [fmtStr(s.image), fmtStr(s.reason)]; }))]) : null,
      el('details', null, [el('summary', { text: 'Model input' }), kvTable(m.input)]),
      el('details', null, [el('summary', { text: 'Options' }), kvTable(D.options)])
    ];
  }

  function stagesSection(stages) {
    if (!stages || !stages.length) return null;
    var total = stages.reduce(function (s, x) { return s + (isNum(x.seconds) ? x.seconds : 0); }, 0);
    return section('Stages', el('div', { class: 'stages' }, stages.map(function (s) {
      return el('span', { class: 'stage' + (s.resumed ? ' resumed' : '') }, [el('b', { text: fmtStr(s.name) }), ' ' + fmt(s.seconds, 1) + ' s' + (s.resumed ? ' (resumed)' : '')]);
    }).concat([el('span', { class: 'stage total', text: 'total ' + fmt(total, 1) + ' s' })])));
  }

  function layersTableSection(rows) {
    return section('Layers', el('div', { class: 'scroll' }, simpleTable(
      ['layer', 'alias', 'type', 'output shape', 'units', 'receptive field', 'stride', 'offset', 'in atlas'],
      rows.map(function (r) {
        var rf = r.receptive_field || {};
        return [r.in_atlas && atlasLayer(r.name) ? layerLink(r.name) : el('code', { text: r.name }), fmtStr(r.alias), fmtStr(r.type),
          fmtPair(r.shape), num(fmtInt(r.units)), fmtPair(rf.size) + (rf.global ? ' global' : '') + (rf.method ? ' (' + rf.method + ')' : ''),
          fmtPair(rf.stride), fmtPair(rf.offset), r.in_atlas ? yesNo(true) : ''];
      }))));
  }

  function conceptsSection(c) {
    if (!c) return section('Concepts by layer', note('No dissection: the dataset is a plain image folder, so units carry no concept labels.'));
    var cats = c.categories || [];
    var head = ['layer', 'units', 'detectors'].concat(cats);
    return section('Concepts by layer', el('div', { class: 'row' }, [
      image(c.chart, { cls: 'chart' }),
      el('div', { class: 'scroll' }, [note('Per category: detectors / unique concepts.'), simpleTable(head, (c.rows || []).map(function (r) {
        return [atlasLayer(r.layer) ? layerLink(r.layer) : fmtStr(r.layer), num(fmtInt(r.units)), num(fmtInt(r.detectors) + pct(r.detectors, r.units))]
          .concat(cats.map(function (x) {
            var v = (r.per_category || {})[x] || {};
            return num(fmtInt(v.detectors) + ' / ' + fmtInt(v.unique_concepts));
          }));
      }))])]));
  }

  function inversionsSection(inv) {
    if (!inv || !inv.samples || !inv.samples.length) return section('Inversions', note('No inversions in this atlas.'));
    return section('Inversions: the image each layer\'s features determine', [
      inv.samples.map(function (s) {
        return el('div', { class: 'strip-row' }, [figure(s.original, [el('b', { text: 'original' }), basename(s.image)], { cls: 'inv', figCls: 'orig' })]
          .concat((s.layers || []).map(function (l) {
            return figure(l.image, [el('b', { text: fmtStr(l.layer) }), 'PSNR ' + fmt(l.psnr, 1) + ' dB', 'feat. err ' + fmt(l.feature_error, 3)], { cls: 'inv' });
          })));
      }),
      inv.chart ? image(inv.chart, { cls: 'chart' }) : null]);
  }

  function classesSection(c) {
    if (!c) return section('Classes', note('No class visualizations (the model has no classifier output, or the stage was skipped).'));
    return section('Classes (' + fmtStr(c.output) + ', ' + fmtInt(c.count) + ' classes, ' + (c.shown || []).length + ' shown)',
      el('div', { class: 'tiles' }, (c.shown || []).map(function (s) {
        return figure(s.image, [el('b', { text: fmtStr(s.name) }), 'class ' + fmtInt(s['class']) + ' \u00b7 value ' + fmt(s.value, 2)], { cls: 'cls' });
      })));
  }

  /* ---------- atlas: layer page ---------- */

  function hasDissection(layer) { return layer.detectors !== null && layer.detectors !== undefined; }

  /** docs/atlas.md lists layers[].units both as a count and as the unit array; JSON keeps one key, the
   *  array. The layer's unit count comes from a numeric `units`, else layers_table, else shape[0]. */
  function unitCount(l) {
    if (isNum(l.units)) return l.units;
    var row = (((D.network || {}).layers_table) || []).filter(function (r) { return r.name === l.name; })[0];
    if (row && isNum(row.units)) return row.units;
    return Array.isArray(l.shape) && isNum(l.shape[0]) ? l.shape[0] : unitList(l).length;
  }
  function unitList(l) { return Array.isArray(l.units) ? l.units : []; }

  function atlasLayerPage(route) {
    var l = atlasLayer(route.layer);
    if (!l) return notFound('No layer "' + route.layer + '" in this atlas.');
    var idx = D.layers.indexOf(l), prev = D.layers[idx - 1], next = D.layers[idx + 1];
    var cats = keysOf(l.per_category), n = unitCount(l), shown = unitList(l).length;
    return [
      breadcrumb([['network', '#network'], [layerTitle(l.name), null]]),
      el('div', { class: 'prevnext' }, [prev ? el('a', { href: layerHref(prev.name), text: '\u00ab ' + layerTitle(prev.name) }) : null,
        next ? el('a', { href: layerHref(next.name), text: layerTitle(next.name) + ' \u00bb' }) : null]),
      el('h1', null, ['Layer ', el('code', { text: layerTitle(l.name) }), l.type ? el('span', { class: 'sub', text: ' ' + l.type }) : null]),
      summaryLine([['shape', fmtPair(l.shape)], ['units', fmtInt(n) + (shown !== n ? ' (' + shown + ' in this atlas)' : '')],
        ['receptive field', rfText(l.receptive_field)],
        ['detectors', hasDissection(l) ? fmtInt(l.detectors) + pct(l.detectors, n) : '\u2013 (no dissection)']]),
      cats.length ? categoryTable(cats, l.per_category) : null,
      l.atlas ? atlasSection(l) : null,
      section('Units', dataTable(atlasUnitColumns(l), unitList(l), route)),
      overviewGrid(l)
    ];
  }

  function atlasUnitColumns(l) {
    var link = function (u) { return unitHref(l.name, u.unit); };
    var cols = [
      { key: 'unit', label: 'unit', num: true, value: function (u) { return u.unit; }, cell: function (u) { return el('a', { href: link(u), text: String(u.unit) }); } },
      { key: 'actmax', label: 'actmax', cell: function (u) {
        var a = u.actmax || {};
        return [image(a.image, { cls: 'thumb', href: link(u) }), el('div', { class: 'small' }, ['value ' + fmt(a.value, 2),
          a.raised === false ? el('span', { class: 'bad', text: ' NOT RAISED' }) : null])];
      } },
      { key: 'top', label: 'top image', cell: function (u) {
        var t = (u.top || [])[0];
        return t ? [image(t.crop, { cls: 'thumb', href: link(u), title: basename(t.image) }), el('div', { class: 'small', text: basename(t.image) })] : NA;
      } }
    ];
    if (hasDissection(l)) {
      cols.push(
        { key: 'label', label: 'label', value: function (u) { return u.label || null; }, cell: function (u) { return [fmtStr(u.label), u.detector ? el('span', { class: 'badge', text: 'detector' }) : null]; } },
        { key: 'category', label: 'category', value: function (u) { return u.category || null; }, cell: function (u) { return fmtStr(u.category); } },
        { key: 'iou', label: 'IoU', num: true, desc: true, value: iouValue, cell: function (u) { return fmt(u.iou, 3); } });
    }
    cols.push(
      { key: 'activation', label: 'top activation', num: true, desc: true, value: function (u) { return isNum(u.top_activation) ? u.top_activation : null; }, cell: function (u) { return fmt(u.top_activation, 2); } },
      { key: 'mean_peak', label: 'mean peak', num: true, desc: true, value: function (u) { return isNum(u.mean_peak) ? u.mean_peak : null; }, cell: function (u) { return fmt(u.mean_peak, 2); } });
    return cols;
  }

  /** The activation atlas: cells absolutely positioned on a GxG square, a details panel and the points' scatter. */
  function atlasSection(l) {
    var a = l.atlas, G = Math.max(1, a.grid || 1), size = 480, cs = size / G;
    var details = el('div', { class: 'cell-details' }, note('Hover or click a cell for its numbers.'));
    var highlight = el('svg:rect', { class: 'cell-hl', width: 0, height: 0 });
    var board = el('div', { class: 'atlas-board', style: { width: size + 'px', height: size + 'px' } });
    (a.cells || []).forEach(function (c) {
      var share = isNum(c.concept_share) ? ' ' + (100 * c.concept_share).toFixed(0) + '%' : '';
      var tip = 'cell (' + c.x + ', ' + c.y + '), ' + fmtInt(c.count) + ' samples' + (c.concept ? ', ' + c.concept + share : '') +
        ', top units ' + (c.top_units || []).map(function (t) { return t[0] + ' (' + fmt(t[1], 2) + ')'; }).join(', ');
      var cell = el('div', { class: 'atlas-cell', title: tip, tabindex: 0,
        style: { left: (c.x * cs) + 'px', top: (c.y * cs) + 'px', width: cs + 'px', height: cs + 'px' } }, [
        image(c.image, { alt: tip }),
        cs >= 56 ? el('span', { class: 'cell-label' }, [el('b', { text: 'n=' + fmtInt(c.count) }),
          c.concept ? el('br') : null, c.concept ? c.concept + share : null]) : null]);
      var show = function () {
        details.textContent = '';
        append(details, cellDetails(l, c));
        highlight.setAttribute('x', c.x / G); highlight.setAttribute('y', c.y / G);
        highlight.setAttribute('width', 1 / G); highlight.setAttribute('height', 1 / G);
      };
      cell.addEventListener('mouseenter', show); cell.addEventListener('focus', show); cell.addEventListener('click', show);
      board.appendChild(cell);
    });
    return section('Activation atlas', [
      note(fmtStr(a.method) + ', ' + fmtInt(a.samples) + ' samples on a ' + G + '\u00d7' + G + ' grid; cells with fewer than ' +
        fmtInt(a.min_count) + ' samples are left empty. Each cell shows the image that maximizes the mean activation vector of its samples.'),
      el('div', { class: 'row' }, [board, el('div', { class: 'atlas-side' }, [scatter(a.points || [], G, highlight), details])]),
      a.image ? el('p', { class: 'small' }, ['Rendered atlas: ', el('a', { href: fileUrl(a.image), text: basename(a.image) })]) : null]);
  }

  function cellDetails(l, c) {
    return [
      image(c.image, { cls: 'cell-big', scale: 2 }),
      summaryLine([['cell', '(' + c.x + ', ' + c.y + ')'], ['samples', fmtInt(c.count)], ['objective', fmt(c.value, 2)],
        ['concept', c.concept ? c.concept + ' (' + fmt(100 * c.concept_share, 0) + '%)' : NA]]),
      (c.top_concepts || []).length ? simpleTable(['concept', 'share'], c.top_concepts.map(function (t) { return [fmtStr(t[0]), num(fmt(100 * t[1], 0) + '%')]; })) : null,
      (c.top_units || []).length ? simpleTable(['unit', 'mean act.'], c.top_units.map(function (t) {
        return [el('a', { href: unitHref(l.name, t[0]), text: String(t[0]) }), num(fmt(t[1], 2))];
      })) : null];
  }

  /** Scatter of layout positions in [0,1]x[0,1], y downwards like the cell grid. */
  function scatter(points, G, highlight) {
    var lines = [];
    for (var i = 1; i < G; i++) {
      lines.push(el('svg:line', { x1: i / G, y1: 0, x2: i / G, y2: 1, class: 'gridline' }));
      lines.push(el('svg:line', { x1: 0, y1: i / G, x2: 1, y2: i / G, class: 'gridline' }));
    }
    var dots = points.filter(function (p) { return isNum(p[0]) && isNum(p[1]); }).map(function (p) {
      return el('svg:circle', { cx: p[0], cy: p[1], r: 0.006, class: 'dot' });
    });
    return el('figure', { class: 'scatter' }, [
      el('svg:svg', { viewBox: '-0.01 -0.01 1.02 1.02', width: 240, height: 240, role: 'img' },
        [el('svg:rect', { x: 0, y: 0, width: 1, height: 1, class: 'frame' })].concat(lines, dots, [highlight])),
      el('figcaption', { text: points.length + ' samples (layout positions)' })]);
  }

  /* ---------- atlas: unit page ---------- */

  function atlasUnitPage(route) {
    var l = atlasLayer(route.layer);
    if (!l) return notFound('No layer "' + route.layer + '" in this atlas.');
    var units = unitList(l).slice().sort(function (a, b) { return a.unit - b.unit; });
    var i = units.map(function (u) { return u.unit; }).indexOf(route.unit);
    if (i < 0) return notFound('No unit ' + route.unit + ' in layer ' + l.name + '.');
    var u = units[i], prev = units[i - 1], next = units[i + 1], a = u.actmax || {};
    return [
      breadcrumb([['network', '#network'], [layerTitle(l.name), layerHref(l.name)], ['unit ' + u.unit, null]]),
      el('div', { class: 'prevnext' }, [prev ? el('a', { href: unitHref(l.name, prev.unit), text: '\u00ab unit ' + prev.unit }) : null,
        next ? el('a', { href: unitHref(l.name, next.unit), text: 'unit ' + next.unit + ' \u00bb' }) : null]),
      el('h1', null, ['Unit ' + u.unit + ' of ', el('code', { text: layerTitle(l.name) })]),
      summaryLine([['label', fmtStr(u.label)], ['category', fmtStr(u.category)], ['IoU', hasDissection(l) ? fmt(u.iou, 3) : NA],
        ['detector', hasDissection(l) ? yesNo(u.detector) : NA], ['top activation', fmt(u.top_activation, 2)], ['mean peak', fmt(u.mean_peak, 2)]]),
      section('Activation maximization', el('div', { class: 'tiles' }, [
        figure(a.image, [el('b', { text: 'value ' + fmt(a.value, 2) }), 'from ' + fmt(a.initial_value, 2),
          a.raised === false ? el('span', { class: 'bad', text: 'NOT RAISED' }) : null], { cls: 'px', scale: 2 })]
        .concat((a.copies || []).map(function (c, k) {
          return figure(c.image, ['copy ' + (k + 1), 'value ' + fmt(c.value, 2)], { cls: 'px', scale: 2 });
        })))),
      section('Top ' + (u.top || []).length + ' dataset images: receptive-field crop and DeconvNet projection', el('div', { class: 'tiles' },
        (u.top || []).map(function (t, k) {
          return el('figure', { class: 'pair' }, [
            el('div', { class: 'pair-imgs' }, [image(t.crop, { cls: 'px', scale: 2, title: 'crop' }), image(t.deconv, { cls: 'px', scale: 2, title: 'deconv' })]),
            el('figcaption', null, [el('div', null, [el('b', { text: '#' + (k + 1) + ' ' }), basename(t.image)]),
              el('div', { text: 'activation ' + fmt(t.activation, 2) + ' at (y ' + fmtInt(t.y) + ', x ' + fmtInt(t.x) + ')' })])]);
        }))),
      el('div', { class: 'row' }, [
        section('Best label per category', bestPerCategory(u.best_per_category)),
        section('Per-image maximum activation', histogram(u.histogram, u.mean_peak))])
    ];
  }

  /** Inline SVG bar chart of a histogram {edges[n+1], counts[n]}, with axis labels. */
  function histogram(h, mean) {
    var counts = (h && h.counts) || [], edges = (h && h.edges) || [];
    if (!counts.length || edges.length !== counts.length + 1) return note('No histogram.');
    var W = 440, H = 200, L = 44, B = 36, T = 14, R = 26, pw = W - L - R, ph = H - T - B;
    var cmax = Math.max.apply(null, counts.concat([1])), lo = edges[0], hi = edges[edges.length - 1], span = (hi - lo) || 1;
    var xs = function (v) { return L + pw * (v - lo) / span; };
    var kids = [el('svg:line', { x1: L, y1: T + ph, x2: L + pw, y2: T + ph, class: 'axis' }),
      el('svg:line', { x1: L, y1: T, x2: L, y2: T + ph, class: 'axis' })];
    counts.forEach(function (c, i) {
      var x0 = xs(edges[i]), x1 = xs(edges[i + 1]), hgt = ph * (isNum(c) ? c : 0) / cmax;
      kids.push(el('svg:rect', { x: x0, y: T + ph - hgt, width: Math.max(0.5, x1 - x0 - 1), height: hgt, class: 'bar' },
        el('svg:title', { text: fmt(edges[i], 2) + ' \u2013 ' + fmt(edges[i + 1], 2) + ': ' + fmtInt(c) + ' images' })));
    });
    if (isNum(mean) && mean >= lo && mean <= hi) {
      kids.push(el('svg:line', { x1: xs(mean), y1: T, x2: xs(mean), y2: T + ph, class: 'mean' }));
      kids.push(el('svg:text', { x: xs(mean), y: T - 3, class: 'lbl mean-lbl', 'text-anchor': 'middle', text: 'mean peak ' + fmt(mean, 2) }));
    }
    kids.push(
      el('svg:text', { x: L, y: T + ph + 14, class: 'lbl', 'text-anchor': 'middle', text: fmt(lo, 2) }),
      el('svg:text', { x: L + pw, y: T + ph + 14, class: 'lbl', 'text-anchor': 'middle', text: fmt(hi, 2) }),
      el('svg:text', { x: L + pw / 2, y: H - 4, class: 'lbl', 'text-anchor': 'middle', text: 'per-image max activation' }),
      el('svg:text', { x: L - 4, y: T + 8, class: 'lbl', 'text-anchor': 'end', text: fmtInt(cmax) }),
      el('svg:text', { x: L - 4, y: T + ph, class: 'lbl', 'text-anchor': 'end', text: '0' }),
      el('svg:text', { x: 12, y: T + ph / 2, class: 'lbl', 'text-anchor': 'middle', transform: 'rotate(-90 12 ' + (T + ph / 2) + ')', text: 'images' }));
    return el('svg:svg', { class: 'hist', width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, role: 'img' }, kids);
  }

  /* ---------- page assembly ---------- */

  function notFound(text) { return [breadcrumb([['network', '#network']]), el('p', { class: 'fatal', text: text })]; }

  function renderPage(route) {
    var cmd = D.command;
    if (cmd === 'dissect') {
      if (route.page === 'network') return dissectNetwork();
      if (route.page === 'layer') return dissectLayer(route);
      if (route.page === 'unit') return [breadcrumb([['network', '#network'], [route.layer, layerHref(route.layer)]]),
        note('Unit pages exist for atlas outputs only; the layer page lists every unit of this dissection.')];
    } else if (cmd === 'atlas') {
      if (route.page === 'network') return atlasNetwork();
      if (route.page === 'layer') return atlasLayerPage(route);
      if (route.page === 'unit') return atlasUnitPage(route);
    } else {
      return el('p', { class: 'fatal', text: 'Unknown report kind "' + String(cmd) + '": this viewer renders "atlas" and "dissect".' });
    }
    return notFound('Unknown page "' + location.hash + '".');
  }

  function render() {
    var app = document.getElementById('app');
    var route = parseHash();
    app.textContent = '';
    if (!D || typeof D !== 'object') {
      app.appendChild(el('p', { class: 'fatal', text: 'data.js missing: this folder is unfinished or not a cnnviz output.' }));
      errors.push('data.js missing: window.CNNVIZ_DATA is undefined');
      return route;
    }
    var title = D.command === 'atlas' ? 'cnnviz atlas' : 'cnnviz ' + fmtStr(D.command);
    document.title = title + (route.layer ? ' \u00b7 ' + route.layer : '') + (route.page === 'unit' ? ' \u00b7 unit ' + route.unit : '');
    app.appendChild(el('header', { class: 'top' }, [el('a', { href: '#network', class: 'brand', text: title }),
      el('span', { class: 'model', text: D.model ? fmtStr(D.model.path) : '' })]));
    append(app, warningsBox(D.warnings));
    try {
      append(app, el('main', null, renderPage(route)));
    } catch (e) {
      errors.push('render failed: ' + (e && e.stack || e));
      app.appendChild(el('p', { class: 'fatal', text: 'This page failed to render: ' + e }));
    }
    window.scrollTo(0, 0);
    return route;
  }

  /* ---------- self-test (hash contains selftest=1) ---------- */

  /** Resolve once every <img> on the page has loaded or failed (failed ones are replaced by boxes). */
  function imagesSettled() {
    return new Promise(function (resolve) {
      var tries = 0;
      (function poll() {
        var imgs = Array.prototype.slice.call(document.images);
        if (imgs.every(function (i) { return i.complete; }) || ++tries > 400) setTimeout(resolve, 20);
        else setTimeout(poll, 25);
      })();
    });
  }

  function runSelftest(route) {
    var report = { page: route.page + (route.layer !== undefined ? '=' + route.layer : '') + (route.page === 'unit' ? '/' + route.unit : ''),
      images: 0, broken: broken, errors: errors, sorted_iou: [], rows: 0 };
    imagesSettled().then(function () {
      var th = document.querySelector('#unit-table th[data-col="iou"]');
      if (route.page === 'layer' && th) {
        th.click();                                    // a fresh column sorts in its default (descending) direction
        if (!th.classList.contains('desc')) th.click();
        report.sorted_iou = Array.prototype.slice.call(document.querySelectorAll('#unit-table tbody td[data-col="iou"]'), 0, 5)
          .map(function (td) { var v = parseFloat(td.getAttribute('data-value')); return isFinite(v) ? v : null; });
        return imagesSettled();
      }
    }).then(function () {
      var table = document.getElementById('unit-table');
      report.rows = (table || document).querySelectorAll('tbody tr').length;
      if (table && table.querySelector('tbody td.note')) report.rows = 0;
      report.images = document.images.length + broken.length;
      document.body.appendChild(el('pre', { id: 'cnnviz-selftest', text: JSON.stringify(report) }));
      document.title = 'SELFTEST-DONE ' + document.title;
    }).catch(function (e) {
      errors.push('selftest failed: ' + e);
      document.body.appendChild(el('pre', { id: 'cnnviz-selftest', text: JSON.stringify(report) }));
      document.title = 'SELFTEST-DONE ' + document.title;
    });
  }

  var route = render();
  window.addEventListener('hashchange', function () {
    // replaceState does not fire hashchange, so this only runs on real navigation (links, back/forward).
    render();
  });
  if (selftest) runSelftest(route);
})();
