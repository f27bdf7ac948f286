/* cnnviz viewer: renders the atlas.json / dissect / adversarial / compare report.json that data.js assigns to
 * window.CNNVIZ_DATA. Static, no modules, no network, no libraries; opens from file://.
 * Routes (docs/atlas.md): #network, #layer=<name>, #unit=<name>/<k>; adversarial reports
 * (docs/adversarial.md): #network, #image=<k>; compare reports (docs/compare.md): #network,
 * #layer=<name>. With optional
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

  /** {page: 'network'|'layer'|'unit'|'image'|'unknown', layer, unit, image, params: {...}} from location.hash
   *  (image: the adversarial report's image index, NaN when not a whole number) */
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
      } else if (i === 0 && k === 'image') { r.page = 'image'; r.image = /^\d+$/.test(v) ? parseInt(v, 10) : NaN; }
      else if (i === 0 && eq < 0) r.page = 'unknown';
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
    var base = route.page === 'layer' ? layerHref(route.layer).slice(1)
      : route.page === 'network' ? 'network' : location.hash.replace(/^#/, '').split('&')[0];
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

  /** cols: [{key, label, value(row) -> sort value or null, cell(row) -> node, num, desc (default direction), title (header tooltip)}]
   *  Null/'' sort values always go last. Filter tokens: all-digit = unit number, else label/category substring.
   *  opts (all optional; the defaults are the unit tables'): {id: row key and default sort ('unit'),
   *  noun ('units'), placeholder, text(row) -> the text the filter searches, tableId ('unit-table'),
   *  rowClass(row) -> a class for the row's <tr> or null}. */
  function dataTable(cols, rows, route, opts) {
    opts = opts || {};
    var idKey = opts.id || 'unit', noun = opts.noun || 'units';
    var rowText = opts.text || function (r) { return String(r.label || '') + ' ' + String(r.category || ''); };
    var p = route.params;
    var state = {
      sort: cols.some(function (c) { return c.key === p.sort && c.value; }) ? p.sort : idKey,
      desc: p.desc === '1', filter: p.filter || '', page: Math.max(1, parseInt(p.page, 10) || 1)
    };
    var tbody = el('tbody'), info = el('span', { class: 'count' }), pager = el('span', { class: 'pager' });
    var headCells = {};
    var thead = el('thead', null, el('tr', null, cols.map(function (c) {
      var th = el('th', { class: (c.num ? 'num ' : '') + (c.value ? 'sortable' : ''), 'data-col': c.key, title: c.value ? c.title || 'sort by ' + c.label : null }, c.label);
      if (c.value) {
        th.addEventListener('click', function () {
          if (state.sort === c.key) state.desc = !state.desc; else { state.sort = c.key; state.desc = !!c.desc; }
          state.page = 1; update();
        });
      }
      headCells[c.key] = th;
      return th;
    })));
    var input = el('input', { type: 'search', value: state.filter, placeholder: opts.placeholder || 'filter: label, category, unit #' });
    input.addEventListener('input', function () { state.filter = input.value; state.page = 1; update(); });

    function matches(r) {
      var toks = state.filter.toLowerCase().split(/\s+/).filter(Boolean);
      var text = rowText(r).toLowerCase();
      return toks.every(function (t) { return /^\d+$/.test(t) ? r[idKey] === +t : text.indexOf(t) >= 0; });
    }
    function sorted() {
      var col = cols.filter(function (c) { return c.key === state.sort; })[0];
      var dir = state.desc ? -1 : 1;
      return rows.filter(matches).map(function (r) { return { r: r, v: col.value(r) }; }).sort(function (a, b) {
        var an = a.v === null || a.v === '' || a.v === undefined, bn = b.v === null || b.v === '' || b.v === undefined;
        if (an !== bn) return an ? 1 : -1;
        if (!an && a.v !== b.v) return (a.v < b.v ? -1 : 1) * dir;
        return a.r[idKey] - b.r[idKey];
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
        tbody.appendChild(el('tr', { class: opts.rowClass ? opts.rowClass(r) || null : null }, cols.map(function (c) {
          var v = c.value ? c.value(r) : null;
          return el('td', { class: c.num ? 'num' : '', 'data-col': c.key, 'data-value': isNum(v) ? v : null }, c.cell(r));
        })));
      });
      if (!shown.length) tbody.appendChild(el('tr', null, el('td', { colspan: cols.length, class: 'note', text: 'no ' + noun.replace(/s$/, '') + ' matches the filter' })));
      Object.keys(headCells).forEach(function (k) {
        headCells[k].classList.toggle('asc', k === state.sort && !state.desc);
        headCells[k].classList.toggle('desc', k === state.sort && state.desc);
      });
      info.textContent = list.length + ' of ' + rows.length + ' ' + noun +
        (list.length ? ', rows ' + ((state.page - 1) * PAGE_SIZE + 1) + NA + ((state.page - 1) * PAGE_SIZE + shown.length) : '');
      pager.textContent = '';
      append(pager, [pageButton('\u00ab prev', state.page - 1, pages), ' page ' + state.page + ' of ' + pages + ' ',
        pageButton('next \u00bb', state.page + 1, pages)]);
      replaceParams(route, { sort: state.sort === idKey ? '' : state.sort, desc: state.desc ? '1' : '',
        filter: state.filter, page: state.page > 1 ? String(state.page) : '' });
    }
    update();
    return el('div', { class: 'datatable' }, [
      el('div', { class: 'tools' }, [input, info, pager]),
      el('div', { class: 'scroll' }, el('table', { class: 'grid units', id: opts.tableId || 'unit-table' }, [thead, tbody]))]);
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

  /* ---------- adversarial pages (docs/adversarial.md) ---------- */

  function advImages() { return Array.isArray(D.images) ? D.images : []; }
  /** The image whose `index` is k (indices need not be positions: skipped images leave gaps). */
  function advImage(k) { return advImages().filter(function (im) { return im.index === k; })[0]; }
  function imageHref(k) { return '#image=' + k; }
  /** Up to 4 significant digits, no trailing zeros (epsilons, step sizes). */
  function fmtG(v) { return isNum(v) ? String(Number(v.toPrecision(4))) : NA; }
  /** "mean \u00b1 std" of a {mean, std, min, max} object. */
  function pm(s, d) {
    if (!s || !isNum(s.mean)) return NA;
    return fmt(s.mean, d) + (isNum(s.std) ? ' \u00b1 ' + fmt(s.std, d) : '');
  }
  function range(s, d) { return s && (isNum(s.min) || isNum(s.max)) ? fmt(s.min, d) + ' \u2026 ' + fmt(s.max, d) : NA; }
  function percent(p, d) { return isNum(p) ? (100 * p).toFixed(d === undefined ? 1 : d) + '%' : NA; }
  function normText(n) { return n === 'linf' ? 'L\u221e' : n === 'l2' ? 'L2' : fmtStr(n); }
  function meanOf(a) {
    var v = (Array.isArray(a) ? a : []).filter(isNum);
    return v.length ? v.reduce(function (s, x) { return s + x; }, 0) / v.length : null;
  }
  function layerDisplay(l) { return l ? fmtStr(l.display || l.name) : NA; }
  /** A layer's display name, with its module path beside it (small) when they differ. */
  function layerCell(l) {
    return [el('code', { text: layerDisplay(l) }),
      l && l.display && l.name && l.display !== l.name ? el('span', { class: 'small', text: ' ' + l.name }) : null];
  }

  var classNameMap = null;
  /** {class: name} from every top-5 list and the target; names may be null (no sidecar). */
  function classNames() {
    if (classNameMap) return classNameMap;
    classNameMap = {};
    var add = function (c, n) { if (isNum(c) && n !== null && n !== undefined && n !== '' && !(c in classNameMap)) classNameMap[c] = String(n); };
    var t = (D.attack || {}).target;
    if (t) add(t['class'], t.name);
    advImages().forEach(function (im) {
      (im.clean_top5 || []).concat(im.adversarial_top5 || []).forEach(function (e) { if (e) add(e['class'], e.name); });
    });
    return classNameMap;
  }
  /** "cat (3)", or "class 3" without a name. */
  function className(c) {
    if (!isNum(c)) return NA;
    var n = classNames()[c];
    return n ? n + ' (' + c + ')' : 'class ' + c;
  }
  function targetClass() { var t = (D.attack || {}).target; return t && isNum(t['class']) ? t['class'] : null; }

  function niceStep(span, count) {
    var raw = span / Math.max(1, count), mag = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10)), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
  }
  function stepDecimals(step) { var d = 0; while (d < 8 && Math.abs(Math.round(step * Math.pow(10, d)) - step * Math.pow(10, d)) > 1e-6) d++; return d; }

  /** Per-layer line chart: panels stacked on one x axis (the layers, in order).
   *  panels: [{title, ylabel, series: [{name, mean: [], std: [] | null, cls}], ref: {value, label} | null,
   *  floor (lowest allowed y), ceil (highest allowed y), zero (include 0), tip(i, series) -> tooltip text}] */
  function layerChart(labels, panels) {
    var n = labels.length;
    if (!n) return note('No layers.');
    var short = labels.map(function (s) { s = String(s); return s.length > 22 ? s.slice(0, 21) + '\u2026' : s; });
    var maxLab = Math.max.apply(null, short.map(function (s) { return s.length * 6.3; }));
    var legend = panels.some(function (p) { return p.series.length > 1; });
    var refs = panels.some(function (p) { return p.ref && isNum(p.ref.value); });
    var HEAD = legend ? 40 : 24;   // above each panel: its title, then (several series) the legend
    var L = 62, R = refs ? 138 : 24, W = Math.max(760, Math.min(1040, L + R + 90 * n)), PH = 170, GAP = HEAD + 22, T = HEAD;
    var pw = W - L - R, step = pw / n, rotate = maxLab > step - 6;
    if (rotate) {   // the first slanted label reaches left of its tick by cos(40 deg) of its length: make room
      L = Math.max(L, Math.ceil(0.77 * maxLab - step / 2 + 8));
      pw = W - L - R; step = pw / n;
    }
    var xlab = rotate ? Math.ceil(maxLab * 0.66) + 10 : 18, B = xlab + 30;
    var H = T + panels.length * PH + (panels.length - 1) * GAP + B;
    var xs = function (i) { return L + step * (i + 0.5); };
    var kids = [];
    panels.forEach(function (p, pi) {
      var y0 = T + pi * (PH + GAP);
      var vals = [];
      p.series.forEach(function (s) {
        s.mean.forEach(function (m, i) {
          if (!isNum(m)) return;
          var sd = s.std && isNum(s.std[i]) ? s.std[i] : 0;
          vals.push(m - sd, m + sd);
        });
      });
      if (p.ref && isNum(p.ref.value)) vals.push(p.ref.value);
      if (p.zero) vals.push(0);
      var lo = vals.length ? Math.min.apply(null, vals) : 0, hi = vals.length ? Math.max.apply(null, vals) : 1;
      if (hi - lo < 1e-9) { lo -= 0.05; hi += 0.05; }
      var tstep = niceStep(hi - lo, 4);
      lo = Math.floor(lo / tstep - 1e-9) * tstep; hi = Math.ceil(hi / tstep + 1e-9) * tstep;
      if (isNum(p.floor)) lo = Math.max(lo, p.floor);
      if (isNum(p.ceil)) hi = Math.min(hi, p.ceil);
      if (hi <= lo) hi = lo + tstep;
      var ys = function (v) { return y0 + PH - PH * (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo); };
      var dec = stepDecimals(tstep);
      kids.push(el('svg:text', { x: L, y: y0 - HEAD + 12, class: 'ptitle', text: p.title }));
      for (var t = lo; t <= hi + tstep * 1e-6; t += tstep) {
        kids.push(el('svg:line', { x1: L, y1: ys(t), x2: L + pw, y2: ys(t), class: 'grid' }));
        kids.push(el('svg:text', { x: L - 5, y: ys(t) + 4, class: 'lbl', 'text-anchor': 'end', text: t.toFixed(dec) }));
      }
      for (var i = 0; i < n; i++) kids.push(el('svg:line', { x1: xs(i), y1: y0, x2: xs(i), y2: y0 + PH, class: 'vgrid' }));
      kids.push(el('svg:line', { x1: L, y1: y0 + PH, x2: L + pw, y2: y0 + PH, class: 'axis' }),
        el('svg:line', { x1: L, y1: y0, x2: L, y2: y0 + PH, class: 'axis' }),
        el('svg:text', { x: 14, y: y0 + PH / 2, class: 'lbl axis-title', 'text-anchor': 'middle',
          transform: 'rotate(-90 14 ' + (y0 + PH / 2) + ')', text: p.ylabel }));
      p.series.slice().reverse().forEach(function (s) {   // the first series is drawn last, on top
        var si = p.series.indexOf(s), runs = [], run = null;   // contiguous stretches of finite values (a null breaks the line)
        s.mean.forEach(function (m, i) {
          if (isNum(m)) { if (!run) runs.push(run = []); run.push(i); } else run = null;
        });
        runs.forEach(function (r) {
          if (s.std) {
            var up = r.map(function (i) { return xs(i) + ',' + ys(s.mean[i] + (isNum(s.std[i]) ? s.std[i] : 0)); });
            var dn = r.slice().reverse().map(function (i) { return xs(i) + ',' + ys(s.mean[i] - (isNum(s.std[i]) ? s.std[i] : 0)); });
            kids.push(el('svg:polygon', { points: up.concat(dn).join(' '), class: 'band ' + (s.cls || '') }));
            r.forEach(function (i) {
              if (!isNum(s.std[i]) || s.std[i] <= 0) return;
              kids.push(el('svg:line', { x1: xs(i), x2: xs(i), y1: ys(s.mean[i] - s.std[i]), y2: ys(s.mean[i] + s.std[i]), class: 'ebar ' + (s.cls || '') }));
            });
          }
          kids.push(el('svg:polyline', { points: r.map(function (i) { return xs(i) + ',' + ys(s.mean[i]); }).join(' '), class: 'line ' + (s.cls || '') }));
        });
        s.mean.forEach(function (m, i) {
          if (!isNum(m)) return;
          kids.push(el('svg:circle', { cx: xs(i), cy: ys(m), r: 4, class: 'pt ' + (s.cls || '') },
            el('svg:title', { text: p.tip ? p.tip(i, s) : labels[i] + ': ' + fmt(m, 4) })));
        });
        if (p.series.length > 1) {   // legend, under the panel's title
          var lx = L + si * 170;
          kids.push(el('svg:line', { x1: lx, x2: lx + 22, y1: y0 - 11, y2: y0 - 11, class: 'line ' + (s.cls || '') }),
            el('svg:circle', { cx: lx + 11, cy: y0 - 11, r: 3.5, class: 'pt ' + (s.cls || '') }),
            el('svg:text', { x: lx + 28, y: y0 - 7, class: 'lbl', text: s.name }));
        }
      });
      if (p.ref && isNum(p.ref.value)) {
        var ry = ys(p.ref.value);
        kids.push(el('svg:line', { x1: L, y1: ry, x2: L + pw, y2: ry, class: 'ref' }, el('svg:title', { text: p.ref.label + ': ' + fmt(p.ref.value, 4) })),
          el('svg:text', { x: L + pw + 6, y: ry - 2, class: 'lbl ref-lbl', text: p.ref.label }),
          el('svg:text', { x: L + pw + 6, y: ry + 11, class: 'lbl ref-lbl', text: fmt(p.ref.value, 4) }));
      }
    });
    var yb = T + panels.length * PH + (panels.length - 1) * GAP;
    short.forEach(function (s, i) {
      kids.push(el('svg:text', rotate
        ? { x: xs(i), y: yb + 12, class: 'lbl xlbl', 'text-anchor': 'end', transform: 'rotate(-40 ' + xs(i) + ' ' + (yb + 12) + ')', text: s }
        : { x: xs(i), y: yb + 15, class: 'lbl xlbl', 'text-anchor': 'middle', text: s }, el('svg:title', { text: String(labels[i]) })));
    });
    kids.push(el('svg:text', { x: L + pw / 2, y: H - 6, class: 'lbl axis-title', 'text-anchor': 'middle', text: 'layer (forward order)' }));
    return el('svg:svg', { class: 'divchart', width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, role: 'img' }, kids);
  }

  /** The report's divergence: relative L2 (with the input perturbation's own size as reference) and cosine. */
  /** One image attacked: the statistics over images are that image's values (std 0), shown plainly. */
  function oneImage() { return D.mode === 'image' || (D.summary && D.summary.images === 1); }
  /** pm(), or the mean alone for a one-image report. */
  function pmOrValue(s, d) { return oneImage() ? (s ? fmt(s.mean, d) : NA) : pm(s, d); }

  function divergenceChart() {
    var layers = D.layers || [], sm = D.summary || {}, one = oneImage();
    var labels = layers.map(function (l) { return l.display || l.name; });
    var get = function (key, stat) { return layers.map(function (l) { var s = l[key] || {}; return isNum(s[stat]) ? s[stat] : null; }); };
    var tip = function (key, what) {
      return function (i) {
        var s = layers[i][key] || {};
        return labels[i] + ': ' + what + ' ' + pmOrValue(s, 4) + (one ? '' : ' (min ' + fmt(s.min, 4) + ', max ' + fmt(s.max, 4) + ')');
      };
    };
    var ref = sm.input_relative_l2 && isNum(sm.input_relative_l2.mean) ? { value: sm.input_relative_l2.mean, label: 'perturbation (input)' } : null;
    return layerChart(labels, [
      { title: 'relative L2 distance \u2016a\u2032 \u2212 a\u2016 / \u2016a\u2016' + (one ? '' : ' (mean; band and bars: \u00b1 1 std over images)'), ylabel: 'relative L2',
        series: [{ name: 'relative L2', mean: get('relative_l2', 'mean'), std: one ? null : get('relative_l2', 'std'), cls: 's-l2' }],
        ref: ref, zero: true, floor: 0, tip: tip('relative_l2', 'relative L2') },
      { title: 'cosine similarity of clean and adversarial activations' + (one ? '' : ' (mean \u00b1 1 std)'), ylabel: 'cosine',
        series: [{ name: 'cosine', mean: get('cosine', 'mean'), std: one ? null : get('cosine', 'std'), cls: 's-cos' }],
        floor: -1, ceil: 1, tip: tip('cosine', 'cosine') }]);
  }

  function advNetwork(route) {
    var at = D.attack || {}, sm = D.summary || {}, m = D.model || {}, tm = D.timings || {};
    var skipped = Array.isArray(D.skipped) ? D.skipped : [];
    var given = at.source === 'given';
    return [
      el('h1', null, ['Adversarial attack', el('span', { class: 'sub', text: ' ' + (D.mode === 'image' ? 'one image' : D.mode === 'folder' ? 'image folder' : fmtStr(D.mode)) })]),
      el('div', { class: 'adv-head' }, [
        el('div', { class: 'adv-box' }, [el('h3', { text: 'Attack' }), summaryLine([
          ['attack', given ? 'given image' : at.attack ? String(at.attack).toUpperCase() : NA],
          ['norm', normText(at.norm)],
          ['epsilon', fmtG(at.epsilon) + (at.epsilon_text && at.epsilon_text !== fmtG(at.epsilon) ? ' (' + at.epsilon_text + ')' : '')],
          ['steps', fmtInt(at.steps)], ['step size', fmtG(at.step_size)],
          ['random start', at.random_start === null || at.random_start === undefined ? NA : yesNo(at.random_start)],
          ['target', at.target ? className(at.target['class']) : 'untargeted'],
          ['source', given ? 'given (--adversarial-image)' : fmtStr(at.source)]]),
          at.space ? note('Budget and distances are measured in ' + at.space + '.') : null]),
        el('div', { class: 'adv-box' }, [el('h3', { text: 'Result' }), summaryLine([
          ['images', fmtInt(sm.images) + (skipped.length ? ' (' + skipped.length + ' skipped)' : '')],
          ['success', fmtInt(sm.success) + ' of ' + fmtInt(sm.images) + ' (' + percent(sm.success_rate) + ')'],
          ['clean predictions kept', fmtInt(sm.clean_predictions_kept)],
          ['L\u221e', pmOrValue(sm.linf, 4)], ['L2', pmOrValue(sm.l2, 3)], ['input relative L2', pmOrValue(sm.input_relative_l2, 4)],
          ['images / minute', fmt(sm.images_per_minute, 1)], ['time', isNum(tm.total_seconds) ? fmt(tm.total_seconds, 1) + ' s' : NA]]),
          sm.success_meaning ? note('Success: ' + sm.success_meaning + '.') : null])]),
      summaryLine([['model', fmtStr(m.path)], ['device', fmtStr(m.device)], ['seed', fmtStr(D.seed)],
        ['labels from', D.dissection ? fmtStr(D.dissection.path) + ' (' + (D.dissection.layers || []).join(', ') + ')' : NA + ' (no dissection)'],
        ['cnnviz', fmtStr(D.cnnviz_version)], ['torch', fmtStr(D.torch_version)], ['created', fmtStr(D.created)]]),
      section('Divergence per layer', [
        note('How far each layer\'s activation moved under the attack: relative L2 distance between the adversarial and the clean ' +
          'activation, and their cosine similarity' + (D.mode === 'folder' ? ', mean \u00b1 std over ' + fmtInt(sm.images) + ' images' : '') +
          '. The dashed line is the perturbation\'s own relative size at the model input: layers above it amplified the perturbation.'),
        el('div', { class: 'scroll' }, divergenceChart()),
        D.divergence_chart ? pngDetails('The same chart as a PNG (' + basename(D.divergence_chart) + ')', D.divergence_chart) : null]),
      section('Layers', el('div', { class: 'scroll' }, oneImage()
        ? simpleTable(['layer', 'shape', 'relative L2', 'cosine'], (D.layers || []).map(function (l) {
          return [layerCell(l), fmtPair(l.shape), num(pmOrValue(l.relative_l2, 4)), num(pmOrValue(l.cosine, 4))];
        }))
        : simpleTable(['layer', 'shape', 'relative L2 (mean \u00b1 std)', 'relative L2 range', 'cosine (mean \u00b1 std)', 'cosine range'],
          (D.layers || []).map(function (l) {
            return [layerCell(l), fmtPair(l.shape), num(pm(l.relative_l2, 4)), num(range(l.relative_l2, 4)), num(pm(l.cosine, 4)), num(range(l.cosine, 4))];
          })))),
      changesSection(),
      advInversions(),
      advImagesSection(route),
      skipped.length ? section('Skipped images (' + skipped.length + ')', simpleTable(['image', 'reason'],
        skipped.map(function (s) { return [fmtStr(s.image), fmtStr(s.reason)]; }))) : null,
      D.timings ? el('details', null, [el('summary', { text: 'Timings' }), kvTable(D.timings)]) : null,
      el('details', null, [el('summary', { text: 'Model input' }), kvTable(m.input)]),
      el('details', null, [el('summary', { text: 'Options' }), kvTable(D.options)])
    ];
  }

  /** A PNG folded into <details> (open in the self-test so that the test sees it load). */
  function pngDetails(text, path) {
    var d = el('details', { class: 'png' }, [el('summary', { text: text }),
      el('p', { class: 'small' }, el('a', { href: fileUrl(path), text: path })), image(path, { cls: 'chart' })]);
    d.open = selftest;
    return d;
  }

  function signed(v, d) { return isNum(v) ? (v > 0 ? '+' : '') + v.toFixed(d) : NA; }

  function changeTable(title, units) {
    units = Array.isArray(units) ? units : [];
    return el('div', { class: 'change-table' }, [el('h4', { text: title + ' (' + units.length + ')' }),
      units.length ? simpleTable(['unit', 'label', 'clean', 'adversarial', 'change', el('span', { title: 'projections in the example image: clean, adversarial', text: 'projections' })],
        units.map(function (u) {
          var extra = [u.category, isNum(u.iou) ? 'IoU ' + fmt(u.iou, 3) : null,
            u.detector === false ? 'not a detector' : null].filter(function (x) { return x !== null && x !== undefined && x !== ''; });
          return [num(fmtInt(u.unit)),
            u.label ? [u.detector === false ? el('span', { class: 'small', text: String(u.label) }) : el('b', { text: String(u.label) }),
              extra.length ? el('div', { class: 'small nowrap', text: extra.join(', ') }) : null] : NA,
            num(fmt(u.clean, 3)), num(fmt(u.adversarial, 3)),
            { td: signed(u.change, 3), cls: 'num ' + (isNum(u.change) ? (u.change > 0 ? 'up' : u.change < 0 ? 'down' : '') : '') },
            u.projection_clean || u.projection_adversarial ? el('div', { class: 'pair-imgs' }, [
              u.projection_clean ? image(u.projection_clean, { cls: 'thumb', title: 'clean' }) : NA,
              u.projection_adversarial ? image(u.projection_adversarial, { cls: 'thumb', title: 'adversarial' }) : NA]) : NA];
        }), 'grid changes') : note('none')]);
  }

  function changesSection() {
    var ch = Array.isArray(D.changes) ? D.changes : [];
    if (!ch.length) return section('Units that changed most', note('No layer inspected (--inspect): no per-unit changes.'));
    var figs = D.changes_figure || {};
    return section('Units that changed most', [
      note('Per inspected layer, the units whose activation rose and fell most under the attack. Projections: the unit\'s ' +
        (D.options && D.options.rule ? String(D.options.rule) : 'deconvnet') + ' ' +
        'projection in image ' + fmtStr(D.example) + ', clean and adversarial. Labels come from the dissection, where one was given.'),
      ch.map(function (c) {
        var fig = figs[c.name];
        return el('div', { class: 'changes-layer' }, [
          el('h3', null, layerCell(c)),
          el('p', { class: 'note' }, [fmtStr(c.measure) + '; ' + fmtInt(c.images) + ' image' + (c.images === 1 ? '' : 's') + '.',
            fig ? [' All projections in one figure: ', el('a', { href: fileUrl(fig), text: fig })] : null]),
          el('div', { class: 'row change-pair' }, [changeTable('rose most', c.rose), changeTable('fell most', c.fell)])]);
      })]);
  }

  function advInversions() {
    var inv = D.inversions;
    if (!inv) return null;
    var k = isNum(inv.image) ? inv.image : D.example, ex = advImage(k) || {};
    var rows = (inv.layers || []).map(function (l) {
      var drop = isNum(l.clean_psnr) && isNum(l.adversarial_psnr) ? l.adversarial_psnr - l.clean_psnr : null;
      return el('tr', null, [
        el('th', null, layerCell(l)),
        el('td', null, figure(l.clean, ['feature error ' + fmt(l.clean_feature_error, 3), el('b', { text: 'PSNR ' + fmt(l.clean_psnr, 1) + ' dB' })], { cls: 'inv' })),
        el('td', null, figure(l.adversarial, ['feature error ' + fmt(l.adversarial_feature_error, 3), el('b', { text: 'PSNR ' + fmt(l.adversarial_psnr, 1) + ' dB' })], { cls: 'inv' })),
        el('td', { class: 'num' }, signed(drop, 1) + (isNum(drop) ? ' dB' : ''))]);
    });
    return section('Inversions: the image each layer\'s features describe', [
      note('Reconstructions (' + fmtInt(inv.steps) + ' steps) from the clean and from the adversarial activations of image ' + fmtStr(k) +
        '. PSNR against the clean image, dB; feature error: how far the reconstruction\'s features stay from the ones it inverts.'),
      el('div', { class: 'inv-grid' }, [
        el('div', { class: 'inv-originals' }, [
          figure(ex.clean, [el('b', { text: 'clean' }), el('a', { href: imageHref(k), text: 'image ' + fmtStr(k) }), className(ex.clean_class)], { cls: 'inv' }),
          figure(ex.adversarial, [el('b', { text: 'adversarial' }), className(ex.adversarial_class)], { cls: 'inv' })]),
        el('div', { class: 'scroll' }, el('table', { class: 'grid inv-table' }, [
          el('thead', null, el('tr', null, ['layer', 'from clean activations', 'from adversarial activations', 'PSNR change'].map(function (h, i) {
            return el('th', { class: i === 3 ? 'num' : '' }, h);
          }))),
          el('tbody', null, rows)]))]),
      inv.figure ? el('p', { class: 'small' }, ['All inversions in one figure: ', el('a', { href: fileUrl(inv.figure), text: inv.figure })]) : null]);
  }

  /** Top-5 table; the clean class and the target class are highlighted. */
  function top5Table(title, list, im) {
    var tgt = targetClass();
    list = Array.isArray(list) ? list : [];
    return el('div', { class: 'top5' }, [el('h4', { text: title }),
      list.length ? el('table', { class: 'grid top5' }, [
        el('thead', null, el('tr', null, [el('th', { class: 'num', text: 'class' }), el('th', { text: 'name' }),
          el('th', { class: 'num', text: 'probability' }), el('th', { class: 'num', text: 'logit' })])),
        el('tbody', null, list.map(function (e) {
          var c = e['class'], isClean = c === im.clean_class, isTarget = tgt !== null && c === tgt;
          var p = isNum(e.probability) ? Math.max(0, Math.min(1, e.probability)) : 0;
          return el('tr', { class: (isClean ? 'is-clean ' : '') + (isTarget ? 'is-target' : ''),
            title: isClean && isTarget ? 'clean and target class' : isClean ? 'the clean prediction' : isTarget ? 'the target class' : null }, [
            el('td', { class: 'num', text: fmtInt(c) }), el('td', { text: fmtStr(e.name || classNames()[c]) }),
            el('td', { class: 'num prob' }, [el('span', { class: 'pbar', style: { width: (60 * p).toFixed(1) + 'px' } }), percent(e.probability, 1)]),
            el('td', { class: 'num', text: fmt(e.logit, 2) })]);
        }))]) : note('no top-5')]);
  }

  /** One image: clean, adversarial, amplified perturbation, and the top-5 before and after. */
  function imagePanel(im) {
    var changed = isNum(im.clean_class) && isNum(im.adversarial_class) && im.clean_class !== im.adversarial_class;
    return el('div', { class: 'adv-panel' }, [
      el('div', { class: 'adv-imgs' }, [
        figure(im.clean, [el('b', { text: 'clean' }), className(im.clean_class)], { cls: 'adv-big' }),
        figure(im.adversarial, [el('b', { text: 'adversarial' }), el('span', { class: changed ? 'bad' : '', text: className(im.adversarial_class) })], { cls: 'adv-big' }),
        figure(im.perturbation, [el('b', { text: 'perturbation \u00d7' + fmtG(im.perturbation_gain) }), '0.5 + \u03b4 \u00d7 gain, clamped'], { cls: 'adv-big' })]),
      el('div', { class: 'top5s' }, [top5Table('Top 5 before (clean)', im.clean_top5, im), top5Table('Top 5 after (adversarial)', im.adversarial_top5, im)]),
      el('p', { class: 'legend small' }, [el('span', { class: 'sw sw-clean' }), ' the clean prediction',
        targetClass() !== null ? [el('span', { class: 'sw sw-target' }), ' the target class'] : null])]);
  }

  function linfText(v) { return isNum(v) ? fmt(v, 4) + ' (' + fmt(255 * v, 1) + '/255)' : NA; }

  function advImagesSection(route) {
    var list = advImages();
    if (!list.length) return section('Images', note('No image was attacked.'));
    if (D.mode === 'image' && list.length === 1) {
      var im = list[0];
      return section('The image', [
        summaryLine([['name', fmtStr(im.name)], ['success', yesNo(im.success)], ['L\u221e', linfText(im.linf)], ['L2', fmt(im.l2, 3)],
          ['input relative L2', fmt(im.input_relative_l2, 4)], ['page', el('a', { href: imageHref(im.index), text: 'image ' + im.index + ' \u00bb' })]]),
        imagePanel(im),
        im.figure ? el('p', { class: 'small' }, ['Captioned panel: ', el('a', { href: fileUrl(im.figure), text: im.figure })]) : null]);
    }
    var thumb = function (key, what) {
      return { key: key, label: what, cell: function (r) { return image(r[key], { cls: 'thumb', href: imageHref(r.index), title: what }); } };
    };
    var numCol = function (key, label, get, d) {
      return { key: key, label: label, num: true, desc: true, value: function (r) { var v = get(r); return isNum(v) ? v : null; },
        cell: function (r) { return fmt(get(r), d); } };
    };
    var cols = [
      { key: 'index', label: '#', num: true, value: function (r) { return r.index; }, cell: function (r) { return el('a', { href: imageHref(r.index), text: String(r.index) }); } },
      thumb('clean', 'clean'), thumb('adversarial', 'adversarial'), thumb('perturbation', 'perturbation'),
      { key: 'name', label: 'name', value: function (r) { return r.name ? String(r.name).toLowerCase() : null; },
        cell: function (r) { return el('span', { class: 'fname', text: fmtStr(r.name) }); } },
      { key: 'clean_class', label: 'clean \u2192 adversarial', value: function (r) { return isNum(r.clean_class) ? r.clean_class : null; },
        cell: function (r) {
          var changed = r.clean_class !== r.adversarial_class;
          return [className(r.clean_class), ' \u2192 ', el('span', { class: changed ? 'bad' : '', text: className(r.adversarial_class) })];
        } },
      { key: 'success', label: 'success', desc: true, value: function (r) { return r.success ? 1 : 0; }, cell: function (r) { return yesNo(r.success); } },
      numCol('linf', 'L\u221e', function (r) { return r.linf; }, 4),
      numCol('l2', 'L2', function (r) { return r.l2; }, 3),
      numCol('input_relative_l2', 'input rel. L2', function (r) { return r.input_relative_l2; }, 4),
      numCol('mean_relative_l2', 'mean rel. L2 over layers', function (r) { return meanOf(r.relative_l2); }, 4)];
    return section('Images (' + list.length + ')', [
      note('Every attacked image; click a row\'s number or picture for its page. Perturbations are amplified (0.5 + \u03b4 \u00d7 gain).'),
      dataTable(cols, list, route, { id: 'index', noun: 'images', tableId: 'image-table', placeholder: 'filter: name, class, image #',
        text: function (r) { return [r.name, className(r.clean_class), className(r.adversarial_class)].join(' '); } })]);
  }

  function advImagePage(r) {
    var list = advImages(), i = -1;
    list.forEach(function (im, j) { if (im.index === r.image) i = j; });
    if (i < 0) return notFound('No image "' + safeDecode(location.hash.replace(/^#image=/, '').split('&')[0]) + '" in this report.');
    var im = list[i], prev = list[i - 1], next = list[i + 1], layers = D.layers || [];
    var labels = layers.map(function (l) { return l.display || l.name; });
    var rel = layers.map(function (l, j) { return Array.isArray(im.relative_l2) && isNum(im.relative_l2[j]) ? im.relative_l2[j] : null; });
    var cos = layers.map(function (l, j) { return Array.isArray(im.cosine) && isNum(im.cosine[j]) ? im.cosine[j] : null; });
    var folder = list.length > 1;
    var avg = function (key) { return layers.map(function (l) { return l[key] && isNum(l[key].mean) ? l[key].mean : null; }); };
    var tip = function (key) {
      return function (j, s) {
        return labels[j] + ': ' + s.name + ' ' + fmt(s.mean[j], 4) + (s.cls === 's-mean' ? '' : ' (mean over images ' + pm(layers[j][key], 4) + ')');
      };
    };
    var panels = [
      { title: 'relative L2 distance \u2016a\u2032 \u2212 a\u2016 / \u2016a\u2016', ylabel: 'relative L2', zero: true, floor: 0,
        series: [{ name: 'this image', mean: rel, std: null, cls: 's-l2' }].concat(folder ? [{ name: 'mean over images', mean: avg('relative_l2'), std: null, cls: 's-mean' }] : []),
        ref: isNum(im.input_relative_l2) ? { value: im.input_relative_l2, label: 'perturbation (input)' } : null, tip: tip('relative_l2') },
      { title: 'cosine similarity of clean and adversarial activations', ylabel: 'cosine', floor: -1, ceil: 1,
        series: [{ name: 'this image', mean: cos, std: null, cls: 's-cos' }].concat(folder ? [{ name: 'mean over images', mean: avg('cosine'), std: null, cls: 's-mean' }] : []),
        tip: tip('cosine') }];
    return [
      breadcrumb([['network', '#network'], ['image ' + im.index, null]]),
      el('div', { class: 'prevnext' }, [prev ? el('a', { href: imageHref(prev.index), text: '\u00ab image ' + prev.index }) : null,
        next ? el('a', { href: imageHref(next.index), text: 'image ' + next.index + ' \u00bb' }) : null]),
      el('h1', null, ['Image ' + im.index, el('span', { class: 'sub', text: ' ' + fmtStr(im.name) })]),
      summaryLine([['success', yesNo(im.success)], ['prediction', [className(im.clean_class), ' \u2192 ',
        el('span', { class: im.clean_class !== im.adversarial_class ? 'bad' : '', text: className(im.adversarial_class) })]],
        ['target', (D.attack || {}).target ? className(targetClass()) : 'untargeted'],
        ['L\u221e', linfText(im.linf)], ['L2', fmt(im.l2, 3)], ['input relative L2', fmt(im.input_relative_l2, 4)]]),
      imagePanel(im),
      im.figure ? el('p', { class: 'small' }, ['Captioned panel: ', el('a', { href: fileUrl(im.figure), text: im.figure })]) : null,
      section('Divergence per layer', [
        el('div', { class: 'scroll' }, layerChart(labels, panels)),
        el('div', { class: 'scroll' }, simpleTable(
          ['layer', 'shape', 'relative L2'].concat(folder ? ['mean over images'] : []).concat(['cosine']).concat(folder ? ['mean over images'] : []),
          layers.map(function (l, j) {
            return [layerCell(l), fmtPair(l.shape), num(fmt(rel[j], 4))].concat(folder ? [num(pm(l.relative_l2, 4))] : [])
              .concat([num(fmt(cos[j], 4))]).concat(folder ? [num(pm(l.cosine, 4))] : []);
          })))])
    ];
  }

  /* ---------- compare pages (docs/compare.md) ---------- */

  /** The models in comparison order (models[i].order; the array's order where that is missing). */
  function cmpModels() {
    var ms = Array.isArray(D.models) ? D.models : [];
    return ms.map(function (m, i) { return { m: m || {}, i: i }; }).sort(function (a, b) {
      var ao = isNum(a.m.order) ? a.m.order : a.i, bo = isNum(b.m.order) ? b.m.order : b.i;
      return ao - bo || a.i - b.i;
    }).map(function (x) { return x.m; });
  }
  function cmpLayer(name) { return (D.layers || []).filter(function (l) { return l && l.name === name; })[0]; }
  function modelText(m) { return fmtStr(m.name) + (isNum(m.step) ? ' (step ' + m.step + ')' : ''); }

  var cmpCatList = null;
  /** The dataset's categories, then any other category a layer reports, in first-seen order. */
  function cmpCategories() {
    if (cmpCatList) return cmpCatList;
    var cats = (((D.dataset || {}).categories) || []).map(String);
    var add = function (o) { keysOf(o).forEach(function (k) { if (cats.indexOf(k) < 0) cats.push(k); }); };
    (D.layers || []).forEach(function (l) {
      if (!l) return;
      (l.per_model || []).forEach(function (p) { if (p) { add(p.unique_concepts); add(p.detectors_per_category); } });
      ((l.rotations && l.rotations.points) || []).forEach(function (p) { if (p) add(p.unique_concepts); });
    });
    return (cmpCatList = cats);
  }
  /** A category's colour class (k0..k7), the same on every chart and table of the report. */
  function catClass(c) { var i = cmpCategories().indexOf(c); return 'k' + ((i < 0 ? 0 : i) % 8); }
  function catHead(c) { return [el('span', { class: 'ksw ' + catClass(c) }), c]; }

  /** A layer's per_model entries lined up with the models: by model name, else by position. */
  function cmpPerModel(l, models) {
    var list = Array.isArray(l.per_model) ? l.per_model : [];
    return models.map(function (m, i) {
      var byName = list.filter(function (p) { return p && p.model !== undefined && p.model === m.name; })[0];
      if (byName) return byName;
      var p = list[i];
      return p && (p.model === undefined || p.model === null) ? p : null;
    });
  }
  /** One count per category from a {category: n} object (a category missing from a present object is 0). */
  function catCount(o, c) { return o && typeof o === 'object' ? (isNum(o[c]) ? o[c] : 0) : null; }

  /** The x axis over the models: training steps when every model has one and they increase, else the names. */
  function cmpAxis(models) {
    var steps = models.map(function (m) { return m.step; });
    var numeric = models.length > 1 && steps.every(function (s, i) { return isNum(s) && (i === 0 || s > steps[i - 1]); });
    return { values: numeric ? steps : null,
      labels: models.map(function (m) { return numeric ? String(m.step) : fmtStr(m.name); }),
      title: numeric ? 'training step' : 'model (comparison order)', names: models.map(modelText) };
  }
  function countText(v) { return isNum(v) ? (v % 1 ? fmt(v, 3) : String(v)) : NA; }

  /** Lines (or grouped bars) over one x axis, panels stacked; inline SVG with <title> tooltips.
   *  x: {values: [number per point] | null (evenly spaced categories), labels: [tick text per point], title, names: [tooltip text per point]}
   *  panels: [{title, ylabel, what (tooltip noun), legend (default true), integer (default true),
   *            series: [{name, values: [number | null per point], cls}]}]
   *  opts: {bars: grouped bars per point instead of lines (the x axis is then categorical)} */
  function seriesChart(x, panels, opts) {
    opts = opts || {};
    var n = x.labels.length;
    if (!n) return note('Nothing to chart.');
    var bars = !!opts.bars, numeric = !bars && Array.isArray(x.values) && n > 1 && x.values.every(isNum);
    var textW = function (t) { return String(t).length * 6.4; };
    var short = x.labels.map(function (t) { t = String(t); return t.length > 22 ? t.slice(0, 21) + '\u2026' : t; });
    var maxLab = Math.max.apply(null, short.map(textW));
    var maxSeries = Math.max.apply(null, panels.map(function (p) { return p.series.length; }).concat([1]));
    var L = 58, R = 24;
    var W = numeric ? 760 : Math.max(560, Math.min(1040, L + R + n * (bars ? Math.max(96, maxSeries * 14 + 34) : 110)));
    var PAD = numeric ? 20 : 0, PH = 150, GAP = 26;
    var pw = W - L - R, step = pw / n;
    var xmin = numeric ? Math.min.apply(null, x.values) : 0, xmax = numeric ? Math.max.apply(null, x.values) : 1;
    var xv = function (v) { return xmax > xmin ? L + PAD + (pw - 2 * PAD) * (v - xmin) / (xmax - xmin) : L + pw / 2; };
    var xs = function (i) { return numeric ? xv(x.values[i]) : L + step * (i + 0.5); };
    var perPoint = true, rotate = false;
    if (numeric) {
      for (var q = 1; q < n; q++) if (xs(q) - xs(q - 1) < (textW(short[q - 1]) + textW(short[q])) / 2 + 8) perPoint = false;
    } else if (maxLab > step - 6) {
      rotate = true;   // slanted labels reach left of their tick: make room
      L = Math.max(L, Math.ceil(0.77 * maxLab - step / 2 + 8));
      pw = W - L - R; step = pw / n;
    }
    var legendRows = function (series) {
      var rows = [[]], at = 0;
      series.forEach(function (s) {
        var w = 34 + textW(s.name) + 12;
        if (at + w > pw && rows[rows.length - 1].length) { rows.push([]); at = 0; }
        rows[rows.length - 1].push({ s: s, x: L + at }); at += w;
      });
      return rows;
    };
    var kids = [], y = 6;
    panels.forEach(function (p) {
      var rows = p.legend === false ? [] : legendRows(p.series);
      kids.push(el('svg:text', { x: L, y: y + 12, class: 'ptitle', text: p.title }));
      rows.forEach(function (row, ri) {
        var ly = y + 18 + ri * 16 + 8;
        row.forEach(function (it) {
          var s = it.s;
          if (bars) kids.push(el('svg:rect', { x: it.x, y: ly - 6, width: 22, height: 11, class: 'bar ' + s.cls }));
          else kids.push(el('svg:line', { x1: it.x, x2: it.x + 22, y1: ly, y2: ly, class: 'line ' + s.cls }),
            el('svg:circle', { cx: it.x + 11, cy: ly, r: 3.5, class: 'pt ' + s.cls }));
          kids.push(el('svg:text', { x: it.x + 28, y: ly + 4, class: 'lbl', text: s.name }));
        });
      });
      var y0 = y + 22 + rows.length * 16 + (rows.length ? 6 : 0);
      var vals = [];
      p.series.forEach(function (s) { s.values.forEach(function (v) { if (isNum(v)) vals.push(v); }); });
      var lo = Math.min.apply(null, vals.concat([0])), hi = Math.max.apply(null, vals.concat([0]));
      if (hi - lo < 1e-9) hi = lo + 1;
      var integer = p.integer !== false, tstep = niceStep(hi - lo, 4);
      if (integer) tstep = Math.max(1, Math.floor(tstep));
      lo = Math.floor(lo / tstep + 1e-9) * tstep; hi = Math.ceil(hi / tstep - 1e-9) * tstep;
      if (hi <= lo) hi = lo + tstep;
      var ys = function (v) { return y0 + PH - PH * (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo); };
      var dec = stepDecimals(tstep);
      for (var t = lo; t <= hi + tstep * 1e-6; t += tstep) {
        kids.push(el('svg:line', { x1: L, y1: ys(t), x2: L + pw, y2: ys(t), class: 'grid' }),
          el('svg:text', { x: L - 5, y: ys(t) + 4, class: 'lbl', 'text-anchor': 'end', text: t.toFixed(dec) }));
      }
      if (!bars) for (var i = 0; i < n; i++) kids.push(el('svg:line', { x1: xs(i), y1: y0, x2: xs(i), y2: y0 + PH, class: 'vgrid' }));
      kids.push(el('svg:line', { x1: L, y1: y0 + PH, x2: L + pw, y2: y0 + PH, class: 'axis' }),
        el('svg:line', { x1: L, y1: y0, x2: L, y2: y0 + PH, class: 'axis' }),
        el('svg:text', { x: 14, y: y0 + PH / 2, class: 'lbl axis-title', 'text-anchor': 'middle',
          transform: 'rotate(-90 14 ' + (y0 + PH / 2) + ')', text: p.ylabel }));
      var tip = function (i, s, v) { return x.names[i] + ': ' + countText(v) + (p.what ? ' ' + p.what : '') + ' (' + s.name + ')'; };
      if (bars) {
        var gw = Math.min(step * 0.84, p.series.length * 22), bw = gw / Math.max(1, p.series.length);
        for (var j = 0; j < n; j++) {
          p.series.forEach(function (s, si) {
            var v = s.values[j];
            if (!isNum(v)) return;
            var top = ys(v), h = Math.max(1.5, y0 + PH - top);
            kids.push(el('svg:rect', { x: xs(j) - gw / 2 + si * bw + 0.5, y: y0 + PH - h, width: Math.max(1, bw - 1), height: h, class: 'bar ' + s.cls },
              el('svg:title', { text: tip(j, s, v) })));
          });
        }
      } else {
        p.series.forEach(function (s) {   // later series are drawn on top (the total comes last)
          var runs = [], run = null;         // contiguous stretches of numbers (a null breaks the line)
          s.values.forEach(function (v, k) { if (isNum(v)) { if (!run) runs.push(run = []); run.push(k); } else run = null; });
          runs.forEach(function (r) {
            kids.push(el('svg:polyline', { points: r.map(function (k) { return xs(k) + ',' + ys(s.values[k]); }).join(' '), class: 'line ' + s.cls }));
          });
          s.values.forEach(function (v, k) {
            if (isNum(v)) kids.push(el('svg:circle', { cx: xs(k), cy: ys(v), r: 3.5, class: 'pt ' + s.cls }, el('svg:title', { text: tip(k, s, v) })));
          });
        });
      }
      y = y0 + PH + GAP;
    });
    var yb = y - GAP;
    if (perPoint) {
      short.forEach(function (t, i) {
        kids.push(el('svg:text', rotate
          ? { x: xs(i), y: yb + 12, class: 'lbl xlbl', 'text-anchor': 'end', transform: 'rotate(-40 ' + xs(i) + ' ' + (yb + 12) + ')', text: t }
          : { x: xs(i), y: yb + 15, class: 'lbl xlbl', 'text-anchor': 'middle', text: t }, el('svg:title', { text: String(x.names[i]) })));
      });
    } else {   // a numeric axis too crowded for one label per point: round ticks
      var xt = niceStep(xmax - xmin, 6), xd = stepDecimals(xt);
      for (var v = Math.ceil(xmin / xt - 1e-9) * xt; v <= xmax + xt * 1e-6; v += xt) {
        kids.push(el('svg:line', { x1: xv(v), x2: xv(v), y1: yb, y2: yb + 4, class: 'axis' }),
          el('svg:text', { x: xv(v), y: yb + 15, class: 'lbl xlbl', 'text-anchor': 'middle', text: v.toFixed(xd) }));
      }
    }
    var H = yb + (rotate ? Math.ceil(maxLab * 0.66) + 12 : 20) + 22;
    kids.push(el('svg:text', { x: L + pw / 2, y: H - 6, class: 'lbl axis-title', 'text-anchor': 'middle', text: x.title }));
    return el('svg:svg', { class: 'divchart cmpchart', width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, role: 'img' }, kids);
  }

  /** A PNG as a link, with the picture folded under it (open in the self-test so that the test sees it load). */
  function pngLink(text, path) {
    if (!path) return null;
    var d = el('details', { class: 'png cmp-png' }, [el('summary', null, [text + ': ', el('a', { href: fileUrl(path), text: path })]), image(path, { cls: 'chart' })]);
    d.open = selftest;
    return d;
  }

  function cmpNetwork() {
    var models = cmpModels(), ds = D.dataset || {}, m = D.model || {}, tm = D.timings || {};
    var layers = (Array.isArray(D.layers) ? D.layers : []).filter(Boolean), axis = cmpAxis(models), same = D.same_architecture;
    var cats = ds.categories && ds.categories.length ? ds.categories.join(', ') : NA;
    return [
      el('h1', null, ['Model comparison', el('span', { class: 'sub', text: ' ' + models.length + ' model' + (models.length === 1 ? '' : 's') +
        (same === true ? ', one architecture' : same === false ? ', different architectures' : '') })]),
      summaryLine([['dataset', fmtStr(ds.path)], ['images', fmtInt(ds.images)], ['categories', cats],
        ['IoU threshold', fmtStr(D.iou_threshold)], ['same architecture', same === null || same === undefined ? NA : yesNo(same)],
        ['seed', fmtStr(D.seed)], ['time', isNum(tm.total_seconds) ? fmt(tm.total_seconds, 1) + ' s' : NA],
        ['cnnviz', fmtStr(D.cnnviz_version)], ['torch', fmtStr(D.torch_version)], ['created', fmtStr(D.created)]]),
      pngLink('Overall chart, unique concepts and detectors per layer across models', D.chart),
      section('Models (' + models.length + ')', [
        el('div', { class: 'scroll' }, simpleTable(['#', 'model', 'step', 'path', 'resumed'], models.map(function (x, i) {
          return [num(fmtInt(isNum(x.order) ? x.order : i)), el('b', { text: fmtStr(x.name) }), num(fmtInt(x.step)),
            el('code', { text: fmtStr(x.path) }), x.resumed === null || x.resumed === undefined ? NA : yesNo(x.resumed)];
        }))),
        note('Resumed: the model\'s dissection came from an earlier run (stages/).')]),
      layers.length ? section('Layers across models', el('div', { class: 'scroll' }, [
        note('Detectors / unique concepts per layer and model.'),
        simpleTable(['layer', same === false ? 'units (first model)' : 'units'].concat(models.map(function (x) { return fmtStr(x.name); })), layers.map(function (l) {
          var pms = cmpPerModel(l, models);
          return [l.evolution ? el('a', { href: layerHref(l.name) }, layerCell(l)) : layerCell(l), num(fmtInt(l.units))].concat(pms.map(function (p) {
            return num(p ? fmtInt(p.detectors) + ' / ' + fmtInt(p.unique_total) : NA);
          }));
        }))])) : section('Layers', note('No layer in this report.')),
      layers.map(function (l) { return cmpLayerSection(l, models, axis); }),
      D.timings ? el('details', null, [el('summary', { text: 'Timings' }), kvTable(D.timings)]) : null,
      el('details', null, [el('summary', { text: 'Model input (the first model)' }), kvTable(m.input)]),
      el('details', null, [el('summary', { text: 'Options' }), kvTable(D.options)])
    ];
  }

  /** One layer across the models: a chart of detectors and unique concepts per category, its table, its rotations. */
  function cmpLayerSection(l, models, axis, onLayerPage) {
    var pms = cmpPerModel(l, models), cats = cmpCategories(), ev = l.evolution, bars = D.same_architecture === false;
    var series = function (key, totalKey) {
      return cats.map(function (c) {
        return { name: c, cls: catClass(c), values: pms.map(function (p) { return p ? catCount(p[key], c) : null; }) };
      }).concat([{ name: 'total', cls: 'ktot', values: pms.map(function (p) { return p && isNum(p[totalKey]) ? p[totalKey] : null; }) }]);
    };
    var chart = seriesChart(axis, [
      { title: 'detectors (units whose best label has IoU above ' + fmtStr(D.iou_threshold) + ')', ylabel: 'detectors', what: 'detectors',
        series: series('detectors_per_category', 'detectors') },
      { title: 'unique concepts (distinct labels among the detectors)', ylabel: 'unique concepts', what: 'unique concepts', legend: false,
        series: series('unique_concepts', 'unique_total') }], { bars: bars });
    var table = simpleTable(['model', 'detectors', 'unique'].concat(cats.map(catHead)), models.map(function (x, i) {
      var p = pms[i];
      return [modelText(x), num(p ? fmtInt(p.detectors) + (bars ? '' : pct(p.detectors, l.units)) : NA), num(p ? fmtInt(p.unique_total) : NA)]
        .concat(cats.map(function (c) {
          return num(p ? fmtInt(catCount(p.detectors_per_category, c)) + ' / ' + fmtInt(catCount(p.unique_concepts, c)) : NA);
        }));
    }), 'grid cmp-nums');
    var evLine = ev
      ? el('p', { class: 'evo' }, [el('b', { text: fmtInt(ev.changed_units) }), ' of ' + fmtInt(l.units) + ' units changed their concept at least once' +
        pct(ev.changed_units, l.units) + '. ', onLayerPage ? null : el('a', { href: layerHref(l.name), text: 'Every unit across the models \u00bb' })])
      : note(D.same_architecture === false ? 'No unit evolution: the models differ in architecture, so their units do not correspond.'
        : 'No unit evolution for this layer.');
    return el('section', { class: 'cmp-layer' }, [
      onLayerPage ? el('h2', { text: 'Detectors and concepts across models' })
        : el('h2', null, [layerCell(l), el('span', { class: 'small', text: ' \u00b7 ' + fmtInt(l.units) + ' units' + (bars ? ' in the first model' : '') })]),
      evLine,
      bars ? note('Different networks: bars side by side, one group per model.') : null,
      el('div', { class: 'row cmp-row' }, [el('div', { class: 'scroll' }, chart),
        el('div', { class: 'scroll cmp-side' }, [note('Per category: detectors / unique concepts.'), table])]),
      pngLink('This chart as a PNG', l.chart),
      cmpRotations(l)]);
  }

  /** The last model's layer under random rotations of its basis (Bau et al. 2017, section 4). */
  function cmpRotations(l) {
    var r = l.rotations;
    if (!r) return null;
    var cats = cmpCategories();
    var pts = (Array.isArray(r.points) ? r.points : []).filter(Boolean).slice().sort(function (a, b) {
      return isNum(a.alpha) && isNum(b.alpha) ? a.alpha - b.alpha : 0;
    });
    var axis = { values: pts.every(function (p) { return isNum(p.alpha); }) ? pts.map(function (p) { return p.alpha; }) : null,
      labels: pts.map(function (p) { return fmtG(p.alpha); }), title: 'rotation \u03b1 (0: the layer\'s own basis, 1: a fully random rotation)',
      names: pts.map(function (p) { return '\u03b1 = ' + fmtG(p.alpha); }) };
    var get = function (k) { return pts.map(function (p) { return isNum(p[k]) ? p[k] : null; }); };
    return el('div', { class: 'cmp-rot' }, [
      el('h3', { text: 'Rotated basis' }),
      note('The layer of ' + fmtStr(r.model) + ' with its units mixed by a random rotation of strength \u03b1 (seed ' + fmtStr(r.seed) +
        '). Counts that fall as \u03b1 grows mean that the learned basis itself lines units up with concepts (Bau et al. 2017, section 4).'),
      pts.length ? el('div', { class: 'row cmp-row' }, [
        el('div', { class: 'scroll' }, seriesChart(axis, [
          { title: 'detectors and unique concepts', ylabel: 'count', series: [{ name: 'detectors', cls: 'kdet', values: get('detectors') },
            { name: 'unique concepts', cls: 'ktot', values: get('unique_total') }] },
          { title: 'unique concepts per category', ylabel: 'unique concepts', what: 'unique concepts',
            series: cats.map(function (c) { return { name: c, cls: catClass(c), values: pts.map(function (p) { return catCount(p.unique_concepts, c); }) }; }) }])),
        el('div', { class: 'scroll cmp-side' }, [note('Per category: unique concepts.'),
          simpleTable(['\u03b1', 'detectors', 'unique'].concat(cats.map(catHead)), pts.map(function (p) {
            return [num(fmtG(p.alpha)), num(fmtInt(p.detectors) + (D.same_architecture === false ? '' : pct(p.detectors, l.units))), num(fmtInt(p.unique_total))]
              .concat(cats.map(function (c) { return num(fmtInt(catCount(p.unique_concepts, c))); }));
          }), 'grid cmp-nums')])]) : note('No rotation points.'),
      pngLink('The rotation curve as a PNG', r.chart)]);
  }

  function cmpLayerPage(route) {
    var l = cmpLayer(route.layer);
    if (!l) return notFound('No layer "' + route.layer + '" in this report.');
    var models = cmpModels(), ev = l.evolution, all = (D.layers || []).filter(Boolean);
    var idx = all.indexOf(l), prev = all[idx - 1], next = all[idx + 1];
    var units = ev && Array.isArray(ev.units) ? ev.units.filter(Boolean) : [];
    var withStrip = units.filter(function (u) { return u.strip; });
    var head = [
      breadcrumb([['network', '#network'], [layerTitle(l.name), null]]),
      el('div', { class: 'prevnext' }, [prev ? el('a', { href: layerHref(prev.name), text: '\u00ab ' + layerTitle(prev.name) }) : null,
        next ? el('a', { href: layerHref(next.name), text: layerTitle(next.name) + ' \u00bb' }) : null]),
      el('h1', null, ['Layer ', el('code', { text: layerTitle(l.name) }), el('span', { class: 'sub', text: ' across ' + models.length + ' models' })]),
      summaryLine([['units', fmtInt(l.units)], ['models', String(models.length)],
        ['changed units', ev ? fmtInt(ev.changed_units) + ' of ' + fmtInt(l.units) + pct(ev.changed_units, l.units) : NA],
        ['strips', ev ? String(withStrip.length) : NA], ['IoU threshold', fmtStr(D.iou_threshold)]])];
    if (!ev) return head.concat([cmpLayerSection(l, models, cmpAxis(models), true)]);

    var last = models.length - 1;
    var pmAt = function (u, i) { return Array.isArray(u.per_model) ? u.per_model[i] || null : null; };
    var conceptAt = function (u, i) {
      if (Array.isArray(u.concept) && i < u.concept.length) return u.concept[i] || null;
      var p = pmAt(u, i);
      return p && p.detector && p.label ? p.label : null;
    };
    var changedAt = function (u, i) { return i > 0 && conceptAt(u, i) !== conceptAt(u, i - 1); };
    var nChanges = function (u) {
      if (Array.isArray(u.changes)) return u.changes.length;
      var c = 0;
      for (var i = 1; i < models.length; i++) if (changedAt(u, i)) c++;
      return c;
    };
    var changesText = function (u) {
      return (Array.isArray(u.changes) ? u.changes : []).map(function (c) {
        return fmtStr(c && c.at) + ': ' + fmtStr(c && c.from) + ' \u2192 ' + fmtStr(c && c.to);
      }).join('\n');
    };
    var conceptCell = function (u, i) {
      var p = pmAt(u, i), chg = changedAt(u, i), body;
      var tip = p ? [p.label ? String(p.label) + (p.category ? ' (' + p.category + ')' : '') : 'no label', 'IoU ' + fmt(p.iou, 3),
        p.detector ? 'a detector' : 'not a detector'].join(', ') : 'no data';
      if (chg) tip += '\nchanged from ' + fmtStr(conceptAt(u, i - 1)) + ' at ' + fmtStr(models[i].name);
      if (!p || p.label === null || p.label === undefined || p.label === '') body = NA;
      else if (p.detector) body = [el('b', { text: String(p.label) }), el('span', { class: 'iou', text: ' ' + fmt(p.iou, 3) })];
      else body = el('span', { class: 'weak', text: String(p.label) + ' ' + fmt(p.iou, 3) });
      return el('span', { class: 'cc' + (chg ? ' chg' : ''), title: tip }, body);
    };
    var stripThumb = function (u) {
      return el('a', { href: fileUrl(u.strip), class: 'strip-link', title: 'unit ' + u.unit + ': its top image in every model (click: the strip below)',
        onclick: function (e) {
          var f = document.getElementById('strip-' + u.unit);
          if (!f) return;
          e.preventDefault();
          f.scrollIntoView({ block: 'center' });
          f.classList.remove('flash'); void f.offsetWidth; f.classList.add('flash');
        } }, image(u.strip, { cls: 'strip-thumb' }));
    };
    var cols = [
      { key: 'unit', label: 'unit', num: true, value: function (u) { return isNum(u.unit) ? u.unit : null; }, cell: function (u) { return fmtInt(u.unit); } },
      { key: 'changes', label: 'changes', num: true, desc: true, title: 'sort by the number of concept changes', value: nChanges,
        cell: function (u) { var c = nChanges(u); return el('span', { class: c ? 'nchg' : '', title: changesText(u) || null, text: fmtInt(c) }); } }
    ].concat(models.map(function (m, i) {
      return { key: 'm' + i, label: fmtStr(m.name), desc: true, title: 'sort by IoU in ' + modelText(m),
        value: function (u) { var p = pmAt(u, i); return p && isNum(p.iou) ? p.iou : null; }, cell: function (u) { return conceptCell(u, i); } };
    })).concat([
      { key: 'tile', label: 'top image' + (last >= 0 ? ' (' + fmtStr(models[last].name) + ')' : ''), cell: function (u) {
        var p = pmAt(u, last);
        return p && p.tile ? image(p.tile, { cls: 'thumb', title: 'unit ' + u.unit + ': top image in ' + fmtStr(models[last].name) + ', mask outlined' }) : NA;
      } },
      { key: 'strip', label: 'strip', cell: function (u) { return u.strip ? stripThumb(u) : NA; } }]);

    var stripOrder = Array.isArray(ev.strip_units) ? ev.strip_units : [];
    var rank = function (u) { var k = stripOrder.indexOf(u.unit); return k < 0 ? 1e9 : k; };
    withStrip.sort(function (a, b) { return rank(a) - rank(b) || a.unit - b.unit; });

    var perStep = models.map(function (m, i) {
      var at = { all: 0, appeared: 0, vanished: 0, switched: 0 };
      if (i === 0) return at;
      units.forEach(function (u) {
        (Array.isArray(u.changes) ? u.changes : []).forEach(function (c) {
          if (!c || c.at !== m.name) return;
          at.all++;
          if (c.from === null || c.from === undefined) at.appeared++; else if (c.to === null || c.to === undefined) at.vanished++; else at.switched++;
        });
      });
      return at;
    });
    return head.concat([
      el('div', { class: 'row' }, [
        section('Concept changes per model', simpleTable(['model', 'changes', 'appeared', 'vanished', 'switched'], models.map(function (m, i) {
          var c = perStep[i];
          return i === 0 ? [modelText(m), num(NA), num(NA), num(NA), num(NA)]
            : [modelText(m), num(String(c.all)), num(String(c.appeared)), num(String(c.vanished)), num(String(c.switched))];
        }), 'grid cmp-nums')),
        section('Reading the table', el('div', { class: 'legend small' }, [
          el('p', null, [el('b', { text: 'bold' }), ': a detector (its best label\'s IoU is above ' + fmtStr(D.iou_threshold) + '), with the IoU.']),
          el('p', null, [el('span', { class: 'weak', text: 'grey' }), ': the best label of a unit that is no detector there, with its IoU; ' + NA + ': no label.']),
          el('p', null, [el('span', { class: 'cc chg', text: 'a left bar' }), ': the concept differs from the previous model\'s (appeared, vanished or switched).']),
          el('p', null, [el('span', { class: 'sw sw-changed' }), 'a highlighted row: the unit\'s concept changed at least once. Hover a cell for its category and IoU.'])]))]),
      section('Units (' + units.length + ')', dataTable(cols, units, route, {
        placeholder: 'filter: label, category, unit #', rowClass: function (u) { return nChanges(u) ? 'changed' : null; },
        text: function (u) {
          return (Array.isArray(u.per_model) ? u.per_model : []).map(function (p) { return p ? [p.label || '', p.category || ''].join(' ') : ''; }).join(' ');
        } })),
      withStrip.length ? section('Strips (' + withStrip.length + '): each unit\'s top image in every model, in order',
        el('div', { class: 'cmp-strips' }, withStrip.map(function (u) {
          var path = models.map(function (m, i) { return fmtStr(conceptAt(u, i)); }).join(' \u2192 ');
          return el('figure', { id: 'strip-' + u.unit }, [
            el('a', { href: fileUrl(u.strip), title: 'open the PNG' }, image(u.strip, { cls: 'cmp-strip' })),
            el('figcaption', null, [el('div', null, [el('b', { text: 'unit ' + u.unit }), ' \u00b7 ' + nChanges(u) + ' change' + (nChanges(u) === 1 ? '' : 's')]),
              el('div', { text: path })])]);
        }))) : section('Strips', note('No strips in this report.'))]);
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
    } else if (cmd === 'adversarial') {
      if (route.page === 'network') return advNetwork(route);
      if (route.page === 'image') return advImagePage(route);
      if (route.page === 'layer' || route.page === 'unit') return notFound('An adversarial report has no layer or unit pages: its layers are on the network page.');
    } else if (cmd === 'compare') {
      if (route.page === 'network') return cmpNetwork();
      if (route.page === 'layer') return cmpLayerPage(route);
      if (route.page === 'unit' || route.page === 'image') return notFound('A compare report has no unit or image pages: a layer page lists every unit across the models.');
    } else {
      return el('p', { class: 'fatal', text: 'Unknown report kind "' + String(cmd) + '": this viewer renders "atlas", "dissect", "adversarial" and "compare".' });
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
    document.title = title + (route.layer ? ' \u00b7 ' + route.layer : '') + (route.page === 'unit' ? ' \u00b7 unit ' + route.unit : '') +
      (route.page === 'image' ? ' \u00b7 image ' + (isNum(route.image) ? route.image : '?') : '');
    // Reduced precision (--precision): said in the header of every page, as it qualifies every number.
    var precision = (D.precision && (D.precision.forward || D.precision.network)) || (D.options && D.options.precision);
    var header = [el('a', { href: '#network', class: 'brand', text: title }),
      el('span', { class: 'model', text: D.model ? fmtStr(D.model.path) : '' })];
    if (precision && precision !== 'fp32') {
      header.push(el('span', { class: 'precision', text: fmtStr(precision) + ' network (--precision): ' +
        'thresholds, tallies and reported values float32' }));
    }
    app.appendChild(el('header', { class: 'top' }, header));
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
    var report = { page: route.page + (route.layer !== undefined ? '=' + route.layer : '') + (route.page === 'unit' ? '/' + route.unit : '') +
        (route.page === 'image' ? '=' + route.image : ''),
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
      var table = document.getElementById('unit-table') || document.getElementById('image-table');
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
