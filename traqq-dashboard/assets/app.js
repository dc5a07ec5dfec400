'use strict';
// traqq dashboard. Talks only to the server it was loaded from (relative URLs; the page's
// Content-Security-Policy enforces it). Every metric value comes from user events, so text is
// always set as text (textContent, text nodes), never parsed as HTML.
(function () {
  const TYPES = [
    ['bmp', 'Unique counts (bmp)'],
    ['add', 'Counters (add)'],
    ['adv', 'Sums (adv)'],
    ['top', 'Leaderboards (top)'],
    ['dst', 'Distributions (dst)'],
  ];
  const RANGES = ['today', '7d', '30d', 'custom'];
  const COLORS = ['#2f6fde', '#e8590c', '#2b8a3e', '#c2255c', '#7048e8',
    '#0c8599', '#f08c00', '#5c940d', '#862e9c', '#495057'];
  const TOKEN_KEY = 'traqq.token';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- network log
  // Every resource the page fetched, and any request the CSP blocked, are counted on <body>
  // (data-requests, data-foreign-requests) so a test can check the page stayed on its origin.
  const seen = [];
  let foreign = 0;
  function noteEntry(name, blocked) {
    let local = false;
    if (!blocked) {
      try { local = new URL(name, location.href).origin === location.origin; } catch (_) { /* counts as foreign */ }
    }
    if (!local) foreign += 1;
    seen.push((local ? '' : blocked ? 'BLOCKED ' : 'FOREIGN ') + name);
    if (seen.length > 200) seen.splice(0, seen.length - 200);
    document.body.dataset.requests = String((Number(document.body.dataset.requests) || 0) + 1);
    document.body.dataset.foreignRequests = String(foreign);
    $('netlog').textContent = seen.join('\n');
  }
  document.body.dataset.requests = '0';
  document.body.dataset.foreignRequests = '0';
  if (typeof PerformanceObserver === 'function') {
    new PerformanceObserver((list) => list.getEntries().forEach((e) => noteEntry(e.name)))
      .observe({ type: 'resource', buffered: true });
  }
  document.addEventListener('securitypolicyviolation', (e) => noteEntry(e.blockedURI || e.violatedDirective, true));

  // ---------------------------------------------------------------- small helpers
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function s(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  function fmt(n) {
    if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
    return n.toLocaleString('en-US', { maximumFractionDigits: Number.isInteger(n) ? 0 : 2 });
  }
  function isoDate(d) {
    const p = (x) => String(x).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate());
  }
  function daysAgo(n) {
    const d = new Date();
    d.setDate(d.getDate() - n);
    return isoDate(d);
  }
  function validDate(v) {
    return v && /^\d{4}-\d{2}-\d{2}$/.test(v) && !Number.isNaN(Date.parse(v + 'T00:00:00Z')) ? v : '';
  }
  // The chosen dates, first <= last.
  function customDates() {
    return state.from <= state.to ? [state.from, state.to] : [state.to, state.from];
  }
  function utcSeconds(date, hours) {
    return Math.floor(Date.parse(date + 'T00:00:00Z') / 1000) + hours * 3600;
  }
  function readToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }
  function writeToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: the token lasts until reload */ }
    memoryToken = t;
  }
  let memoryToken = readToken();

  // ---------------------------------------------------------------- state <-> URL
  const state = { range: '7d', from: '', to: '', m: '', refresh: 0, group: 'day' };
  const GROUPS = ['day', 'week', 'month'];
  // What a unique count per bucket is called.
  const ACTIVES = { hour: 'unique per hour', day: 'DAU', week: 'WAU', month: 'MAU' };
  function readUrl() {
    const p = new URLSearchParams(location.search);
    state.range = RANGES.includes(p.get('range')) ? p.get('range') : '7d';
    state.from = validDate(p.get('from')) || daysAgo(6);
    state.to = validDate(p.get('to')) || daysAgo(0);
    state.m = p.get('m') || '';
    state.group = GROUPS.includes(p.get('group')) ? p.get('group') : 'day';
    const r = Number(p.get('refresh'));
    state.refresh = r === 10 || r === 60 ? r : 0;
  }
  function writeUrl(push) {
    const p = new URLSearchParams();
    p.set('range', state.range);
    if (state.range === 'custom') { p.set('from', state.from); p.set('to', state.to); }
    if (state.m) p.set('m', state.m);
    if (state.group !== 'day') p.set('group', state.group);
    if (state.refresh) p.set('refresh', String(state.refresh));
    const url = '?' + p.toString();
    if (url !== location.search) history[push ? 'pushState' : 'replaceState'](null, '', url);
  }
  function rangeParams() {
    switch (state.range) {
      case 'today': return 'bucket=h&days=0';
      case '30d': return 'days=29';
      case 'custom': {
        // The server counts days in its own zone, which the page does not know. Ask for a
        // span that holds the chosen dates in every zone (UTC-12 to UTC+14); load() keeps
        // only the days whose server-side date is among them.
        const [a, b] = customDates();
        return 'min=' + utcSeconds(a, -14) + '&max=' + (utcSeconds(b, 36) - 1);
      }
      default: return 'days=6';
    }
  }

  // ---------------------------------------------------------------- API
  class AuthNeeded extends Error {}
  async function api(path) {
    const headers = { Accept: 'application/json' };
    if (memoryToken) headers.Authorization = 'Bearer ' + memoryToken;
    const res = await fetch(path, { headers, cache: 'no-store', credentials: 'omit' });
    let body = null;
    try { body = await res.json(); } catch (_) { /* reported below */ }
    if (res.status === 401) throw new AuthNeeded((body && body.error) || 'unauthorized');
    if (!body || body.success !== true) {
      throw new Error((body && body.error) || ('HTTP ' + res.status + ' from ' + path));
    }
    return body.data;
  }

  // ---------------------------------------------------------------- data shaping
  const typeOrder = (t) => TYPES.findIndex(([k]) => k === t);
  function metricId(r) {
    return r.metric_type + '/' + r.key.join('~') + (r.add_key ? '/' + r.add_key : '');
  }
  // The metrics that exist in the range, from the query's results (the server discovers them
  // through its key sets), each with its per-bucket values.
  function catalog(days) {
    const byId = new Map();
    days.forEach((day, i) => {
      for (const r of day.results || []) {
        // A reply this page does not understand is skipped, not fatal.
        if (!r || !Array.isArray(r.key) || !r.result || typeof r.result !== 'object') continue;
        const id = metricId(r);
        let m = byId.get(id);
        if (!m) {
          m = {
            id, type: r.metric_type, pattern: r.key.join('~'), addKey: r.add_key || '',
            buckets: days.map(() => null), summary: days.map(() => null),
            counts: days.map(() => null), merged: null,
          };
          byId.set(id, m);
        }
        const [variant] = Object.keys(r.result);
        if (variant === 'Summary') m.summary[i] = r.result.Summary;
        // An adv metric's integer hash is its `:c` key: events per label (sums are floats).
        else if (r.metric_type === 'adv' && variant === 'Hash') m.counts[i] = r.result.Hash;
        else m.buckets[i] = r.result[variant];
      }
    });
    return [...byId.values()].sort((a, b) => typeOrder(a.type) - typeOrder(b.type)
      || a.pattern.localeCompare(b.pattern) || a.addKey.localeCompare(b.addKey));
  }
  // Per-field totals over all buckets (exact for add/adv hashes), largest first, ties by name.
  function totals(buckets) {
    const sum = new Map();
    for (const b of buckets) {
      if (!b) continue;
      for (const [k, v] of Object.entries(b)) sum.set(k, (sum.get(k) || 0) + v);
    }
    return [...sum.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
  function bucketLabel(day) {
    if (data.hourly) return day.date.slice(11, 16);
    return data.unit === 'month' ? day.date.slice(0, 7) : day.date.slice(5);
  }

  // ---------------------------------------------------------------- charts (SVG)
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  // Sized in viewBox units close to the pixels it gets (a card, or the full width when one
  // metric is selected), so its 11-unit text stays readable without scaling tricks.
  // The frame: grid and values from `bottom` (0 unless negative) to a nice max over `top`,
  // bucket labels below. Returns the svg and its scales.
  function chartFrame(title, labels, top, wide, bottom = 0) {
    const W = wide ? 900 : 360, H = wide ? 220 : 150, L = 44, R = 10, T = 10, B = 22;
    const n = labels.length;
    const max = niceMax(top), min = bottom < 0 ? -niceMax(-bottom) : 0;
    const x = (i) => (n <= 1 ? (L + W - R) / 2 : L + (i * (W - L - R)) / (n - 1));
    const y = (v) => T + (H - T - B) * (1 - (v - min) / (max - min));
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
    for (const g of [0, 0.5, 1]) {
      const yy = y(min + (max - min) * g).toFixed(1);
      svg.append(s('line', { x1: L, x2: W - R, y1: yy, y2: yy, class: 'grid' }));
      svg.append(s('text', { x: L - 6, y: Number(yy) + 4, 'text-anchor': 'end' }, fmt(min + (max - min) * g)));
    }
    const step = Math.max(1, Math.ceil(n / (wide ? 12 : 5)));
    const ticks = [];
    for (let i = 0; i < n; i += step) ticks.push(i);
    // Always label the last bucket; drop the tick before it when the two would crowd.
    if (n > 1 && ticks[ticks.length - 1] !== n - 1) {
      if (n - 1 - ticks[ticks.length - 1] < step) ticks.pop();
      ticks.push(n - 1);
    }
    for (const i of ticks) {
      const anchor = n === 1 ? 'middle' : i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle';
      svg.append(s('text', { x: x(i).toFixed(1), y: H - 6, 'text-anchor': anchor }, labels[i]));
    }
    return { svg, x, y, T, H, B };
  }
  function lineChart(title, labels, series, wide) {
    const n = labels.length;
    let top = 0;
    for (const sr of series) for (const v of sr.values) if (v !== null && v > top) top = v;
    const { svg, x, y } = chartFrame(title, labels, top, wide);
    series.forEach((sr, k) => {
      const color = COLORS[k % COLORS.length];
      // A null value (nothing in that bucket, e.g. the average of no events) leaves a gap.
      let run = [];
      const flush = () => {
        if (run.length > 1) svg.append(s('polyline', { points: run.join(' '), stroke: color }));
        run = [];
      };
      sr.values.forEach((v, i) => (v === null ? flush() : run.push(x(i).toFixed(1) + ',' + y(v).toFixed(1))));
      flush();
      if (n <= 48) {
        sr.values.forEach((v, i) => {
          if (v === null) return;
          svg.append(s('circle', { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: color },
            s('title', {}, labels[i] + ' · ' + sr.name + ': ' + fmt(v))));
        });
      }
    });
    return svg;
  }
  function legend(series) {
    return h('div', { class: 'legend' }, series.map((sr, k) =>
      h('span', {}, h('i', { style: 'background:' + COLORS[k % COLORS.length] }), sr.name)));
  }
  // The label that new labels past a metric's cap ([limits] max_labels) are counted under.
  const OTHER = '(other)';
  const labelled = (rows) => rows.filter((r) => r[0] !== OTHER);
  // A ranked table: each row's name sits on a bar proportional to its value. `columns` adds
  // cells after the value: [heading, (name, value) => [text, data-attributes]]. The (other)
  // row is not ranked: it comes last, set apart, saying what it holds.
  function rankedTable(allRows, limit, valueHead, columns = []) {
    const other = allRows.find((r) => r[0] === OTHER);
    const rows = labelled(allRows);
    const max = rows.reduce((a, r) => Math.max(a, Math.abs(r[1])), 0) || 1;
    const body = rows.slice(0, limit).map(([name, value], i) => {
      const bar = h('div', { class: 'bar' });
      bar.style.width = ((Math.abs(value) / max) * 100).toFixed(1) + '%';
      const cells = columns.map(([, cell]) => cell(name, value));
      return h('tr', Object.assign({ 'data-member': name, 'data-value': value, 'data-rank': i + 1 },
        ...cells.map(([, attrs]) => attrs || {})),
        h('td', { class: 'rank' }, i + 1),
        h('td', { class: 'member' }, bar, h('span', {}, name === '' ? '(empty)' : name)),
        h('td', { class: 'num' }, fmt(value)),
        cells.map(([text]) => h('td', { class: 'num' }, text)));
    });
    const otherRow = other ? (() => {
      const cells = columns.map(([, cell]) => cell(OTHER, other[1]));
      return h('tr', Object.assign({ 'data-member': OTHER, 'data-value': other[1], class: 'other' },
        ...cells.map(([, attrs]) => attrs || {})),
        h('td', { class: 'rank' }, '–'),
        h('td', { class: 'member', title: 'labels that arrived after this metric held limits.max_labels labels in a bucket' },
          h('span', {}, '(other: labels past the cap)')),
        h('td', { class: 'num' }, fmt(other[1])),
        cells.map(([text]) => h('td', { class: 'num' }, text)));
    })() : null;
    // Several number columns get narrower ones, so the names keep room on a phone.
    const table = h('table', { class: columns.length > 1 ? 'many' : null },
      h('thead', {}, h('tr', {}, h('th', { class: 'rank' }, '#'), h('th', {}, 'value'),
        h('th', { class: 'num' }, valueHead), columns.map(([head]) => h('th', { class: 'num' }, head)))),
      h('tbody', {}, body, otherRow));
    const more = rows.length > limit ? h('p', { class: 'more' }, `${rows.length - limit} more not shown`) : null;
    return [table, more];
  }
  const share = (total) => ['share', (_, v) => [total ? ((v / total) * 100).toFixed(1) + '%' : '–']];
  function stat(label, role, value, shown, title) {
    return h('div', { class: 'stat', title: title || null }, h('span', {}, label),
      h('b', { 'data-role': role, 'data-value': value }, shown === undefined ? fmt(value) : shown));
  }
  // A unique count's 95% interval (the server's `error` beside the count), for a tooltip.
  function interval(e) {
    if (!e) return null;
    return e.exact ? 'exact' : `95% interval ${fmt(e.low)} – ${fmt(e.high)} (±${(e.rse * 100).toFixed(1)}%)`;
  }

  // ---------------------------------------------------------------- cards
  function seriesOf(m, names) {
    return names.map((name) => ({
      name: name === '' ? '(empty)' : name,
      values: m.buckets.map((b) => (b && typeof b[name] === 'number' ? b[name] : 0)),
    }));
  }
  function card(m, detail, ...content) {
    const title = m.pattern + (m.addKey ? ' / ' + m.addKey : '');
    const head = detail
      ? h('button', { type: 'button', onclick: () => select('') }, '← all metrics')
      : h('button', { type: 'button', onclick: () => select(m.id), title: 'Show only this metric' }, 'details');
    return h('section', { class: 'card', 'data-metric': m.id },
      h('header', {}, h('div', {}, h('div', { class: 'kind' }, m.type), h('h3', {}, title)), head),
      content);
  }
  function bmpCard(m, detail, labels) {
    const merged = m.merged && typeof m.merged.Count === 'number' ? m.merged.Count : null;
    const daily = m.buckets.map((c) => (typeof c === 'number' ? c : 0));
    const unit = data.unit;
    const peak = Math.max(0, ...daily);
    return card(m, detail,
      h('div', { class: 'stats' },
        stat('unique over the range', 'union', merged, merged === null ? '–' : fmt(merged), interval(m.mergedError)),
        stat(ACTIVES[unit] + ', last ' + unit, 'latest', daily.length ? daily[daily.length - 1] : 0),
        stat('busiest ' + unit, 'peak', peak)),
      lineChart('unique ' + m.pattern + ' per ' + unit, labels, [{ name: 'unique per ' + unit, values: daily }], detail),
      h('p', { class: 'more' }, 'The range total is the union of the ' + unit + ' sketches, not the sum of the ' + unit + 's.'),
      detail ? h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, unit), h('th', { class: 'num' }, 'unique'))),
        h('tbody', {}, data.days.map((d, i) => h('tr', { 'data-bucket': d.date, 'data-value': daily[i] },
          h('td', {}, d.date), h('td', { class: 'num' }, fmt(daily[i])))))) : null);
  }
  function addCard(m, detail, labels) {
    const rows = totals(m.buckets);
    const total = rows.reduce((a, r) => a + r[1], 0);
    const shown = labelled(rows).slice(0, detail ? 10 : 5).map((r) => r[0]);
    const series = seriesOf(m, shown);
    return card(m, detail,
      h('div', { class: 'stats' }, stat('total', 'total', total), stat('distinct values', 'distinct', labelled(rows).length)),
      lineChart(m.pattern + ' per ' + data.unit, labels, series, detail), legend(series),
      rankedTable(rows, detail ? 100 : 10, 'count', [share(total)]));
  }
  function advCard(m, detail, labels) {
    const rows = totals(m.buckets);
    const counts = new Map(totals(m.counts));
    let sum = 0, count = 0;
    for (const x of m.summary) if (x) { sum += x.sum; count += x.count; }
    const shown = labelled(rows).slice(0, detail ? 10 : 5).map((r) => r[0]);
    const series = seriesOf(m, shown);
    // Average per label per bucket: that bucket's sum over its count; a gap where it has none.
    const averages = shown.map((name) => ({
      name: name === '' ? '(empty)' : name,
      values: m.buckets.map((b, i) => {
        const n = m.counts[i] && m.counts[i][name];
        return n && b && typeof b[name] === 'number' ? b[name] / n : null;
      }),
    }));
    const unit = data.unit;
    const perBucket = detail ? h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, unit), h('th', { class: 'num' }, 'sum'),
        h('th', { class: 'num' }, 'count'), h('th', { class: 'num' }, 'average'),
        averages.slice(0, 3).map((a) => h('th', { class: 'num' }, 'avg ' + a.name)))),
      h('tbody', {}, data.days.map((d, i) => {
        const x = m.summary[i] || { sum: 0, count: 0 };
        return h('tr', { 'data-bucket': d.date },
          h('td', {}, d.date), h('td', { class: 'num' }, fmt(x.sum)), h('td', { class: 'num' }, fmt(x.count)),
          h('td', { class: 'num' }, x.count ? fmt(x.sum / x.count) : '–'),
          averages.slice(0, 3).map((a) => {
            const v = a.values[i];
            return h('td', { class: 'num', 'data-label': a.name, 'data-avg': v === null ? '' : v }, v === null ? '–' : fmt(v));
          }));
      }))) : null;
    return card(m, detail,
      h('div', { class: 'stats' },
        stat('sum of ' + m.addKey, 'sum', sum), stat('events summed', 'count', count),
        stat('average', 'avg', count ? sum / count : null, count ? fmt(sum / count) : '–')),
      lineChart('sum of ' + m.addKey + ' per label', labels, series, detail), legend(series),
      h('p', { class: 'more' }, 'Average ' + m.addKey + ' per label per ' + unit + ' (sum / count):'),
      lineChart('average ' + m.addKey + ' per label per ' + unit, labels, averages, detail),
      // Per label: the sum, the number of summed events (the `:c` key) and sum / count.
      rankedTable(rows, detail ? 100 : 10, 'sum', [
        ['count', (name) => [counts.get(name) ? fmt(counts.get(name)) : '–', { 'data-count': counts.get(name) || 0 }]],
        ['average', (name, v) => {
          const n = counts.get(name);
          return [n ? fmt(v / n) : '–', { 'data-avg': n ? v / n : '' }];
        }],
        share(sum)]),
      perBucket);
  }
  function topCard(m, detail, labels) {
    const ranked = m.merged && Array.isArray(m.merged.Ranked) ? m.merged.Ranked : [];
    const first = labelled(ranked).length ? labelled(ranked)[0] : null;
    const names = labelled(ranked).slice(0, 5).map((r) => r[0]);
    const series = names.map((name) => ({
      name: name === '' ? '(empty)' : name,
      values: m.buckets.map((b) => {
        const hit = Array.isArray(b) ? b.find((r) => r[0] === name) : null;
        return hit ? hit[1] : 0;
      }),
    }));
    return card(m, detail,
      h('div', { class: 'stats' },
        stat('top member', 'top1', first ? first[0] : '', first ? first[0] : '–'),
        stat('its score', 'top1-score', first ? first[1] : null, first ? fmt(first[1]) : '–')),
      detail && series.length ? [lineChart('top members per ' + data.unit, labels, series, detail), legend(series)] : null,
      rankedTable(ranked, detail ? 250 : 10, 'score'));
  }
  const { dstCard } = traqqDistribution({
    h, s, fmt, chartFrame, card, stat, OTHER, data: () => data, rerender: () => renderCards(),
  });
  const BUILD = { bmp: bmpCard, add: addCard, adv: advCard, top: topCard, dst: dstCard };

  // ---------------------------------------------------------------- rendering
  let data = null;
  function renderControls() {
    for (const b of document.querySelectorAll('[data-range]')) {
      b.setAttribute('aria-pressed', String(b.dataset.range === state.range));
    }
    $('custom').hidden = state.range !== 'custom';
    for (const b of document.querySelectorAll('[data-group]')) {
      b.setAttribute('aria-pressed', String(b.dataset.group === state.group));
    }
    // Today is hourly: nothing to group.
    $('groups').hidden = state.range === 'today';
    $('from').value = state.from;
    $('to').value = state.to;
    $('refresh').value = String(state.refresh);
    $('signout').hidden = !memoryToken;
  }
  function renderCatalog() {
    const nav = $('catalog');
    nav.replaceChildren();
    if (!data) return;
    const chip = (id, text) => h('button', {
      type: 'button', class: 'chip', 'data-select': id, 'aria-pressed': String(state.m === id),
      onclick: () => select(id),
    }, text);
    nav.append(h('div', { class: 'group' }, chip('', 'All metrics (' + data.metrics.length + ')')));
    for (const [type] of TYPES) {
      const ms = data.metrics.filter((m) => m.type === type);
      if (!ms.length) continue;
      nav.append(h('div', { class: 'group', 'data-type': type }, h('b', {}, type),
        ms.map((m) => chip(m.id, m.pattern + (m.addKey ? ' / ' + m.addKey : '')))));
    }
  }
  function renderCards() {
    const main = $('cards');
    main.replaceChildren();
    if (!data) return;
    const labels = data.days.map(bucketLabel);
    const picked = state.m ? data.metrics.find((m) => m.id === state.m) : null;
    main.classList.toggle('single', Boolean(picked));
    if (picked && BUILD[picked.type]) {
      main.append(BUILD[picked.type](picked, true, labels));
      return;
    }
    if (state.m) {
      main.append(h('p', { class: 'empty' }, picked
        ? `This page cannot show ${state.m} (metric type ${picked.type}); showing all metrics.`
        : `No data for ${state.m} in this range; showing all metrics.`));
    }
    if (!data.metrics.length) {
      main.append(h('p', { class: 'empty' }, data.hourly
        ? 'No hourly buckets today. Hourly buckets are stored only with time.store_hourly = true.'
        : 'No metrics recorded in this range.'));
      return;
    }
    for (const [type, title] of TYPES) {
      const ms = data.metrics.filter((m) => m.type === type && BUILD[type]);
      if (!ms.length) continue;
      main.append(h('h2', { 'data-type': type }, title));
      for (const m of ms) main.append(BUILD[type](m, false, labels));
    }
  }
  function render() {
    renderControls();
    renderCatalog();
    renderCards();
  }
  function setStatus(text, error) {
    $('status').textContent = text;
    $('status').classList.toggle('error', Boolean(error));
  }
  function select(id) {
    state.m = id;
    writeUrl(true);
    renderCatalog();
    renderCards();
    window.scrollTo(0, 0);
  }

  // ---------------------------------------------------------------- loading
  let generation = 0;
  async function load() {
    const mine = ++generation;
    document.body.dataset.state = 'loading';
    setStatus('Loading…');
    try {
      let range = rangeParams();
      // Weeks and months: the server merges each group's days (uniques as unions: WAU, MAU).
      const grouped = state.group !== 'day' && state.range !== 'today';
      const by = grouped ? '&group=' + state.group : '';
      let days = await api('/v1/query?' + range + (state.range === 'custom' ? '' : by));
      if (state.range === 'custom') {
        const [a, b] = customDates();
        days = days.filter((d) => d.date.slice(0, 10) >= a && d.date.slice(0, 10) <= b);
        // The merged reads below cover exactly the days kept (from the first one's start to
        // the last one's).
        range = days.length ? 'min=' + days[0].timestamp + '&max=' + days[days.length - 1].timestamp : range;
        if (grouped && days.length) days = await api('/v1/query?' + range + by);
      }
      const metrics = catalog(days);
      // bmp: the union over the range (never the sum of daily uniques); top: the exact merged
      // leaderboard; dst: each label's quantiles over the range (the sketches merged). All
      // come from the server's merge. `accept` narrows the server's read to this one metric
      // (skipped when the pattern itself holds glob characters).
      await Promise.all(metrics.filter((m) => ['bmp', 'top', 'dst'].includes(m.type)).map(async (m) => {
        const name = m.type + ':' + (m.addKey ? m.addKey + ':' : '') + m.pattern;
        const only = /[*?[\]{}\\]/.test(name) ? '' : '&accept=' + encodeURIComponent(name);
        const add = m.addKey ? '&add_key=' + encodeURIComponent(m.addKey) : '';
        const found = await api('/v1/find?metric_type=' + m.type + '&key=' + encodeURIComponent(m.pattern)
          + add + '&merge=true' + only + '&' + range);
        m.merged = Array.isArray(found) && found.length ? found[0].result : null;
        m.mergedError = Array.isArray(found) && found.length ? found[0].error || null : null;
      }));
      if (mine !== generation) return;
      const hourly = state.range === 'today';
      data = { days, metrics, hourly, unit: hourly ? 'hour' : (grouped ? state.group : 'day') };
      $('auth').hidden = true;
      render();
      const when = (d) => d.date.slice(0, 16).replace('T', ' ');
      const span = days.length ? `${when(days[0])} … ${when(days[days.length - 1])}` : 'empty range';
      setStatus(`${metrics.length} metrics · ${days.length} ${data.unit}${days.length === 1 ? '' : 's'} (${span}) · updated ${new Date().toLocaleTimeString()}`);
      document.body.dataset.state = 'ready';
    } catch (e) {
      if (mine !== generation) return;
      if (e instanceof AuthNeeded) {
        $('auth').hidden = false;
        $('token').focus();
        setStatus(memoryToken ? 'The token was refused: ' + e.message : 'This server needs a token.', true);
        document.body.dataset.state = 'auth';
      } else {
        setStatus('Error: ' + e.message, true);
        document.body.dataset.state = 'error';
      }
    }
  }
  let timer = null;
  function schedule() {
    if (timer) clearInterval(timer);
    timer = state.refresh ? setInterval(() => { if (!document.hidden) load(); }, state.refresh * 1000) : null;
  }

  // ---------------------------------------------------------------- wiring
  for (const b of document.querySelectorAll('[data-range]')) {
    b.addEventListener('click', () => {
      state.range = b.dataset.range;
      writeUrl(true);
      renderControls();
      load();
    });
  }
  for (const b of document.querySelectorAll('[data-group]')) {
    b.addEventListener('click', () => {
      state.group = b.dataset.group;
      writeUrl(true);
      renderControls();
      load();
    });
  }
  for (const id of ['from', 'to']) {
    $(id).addEventListener('change', () => {
      const v = validDate($(id).value);
      if (!v) return;
      state[id] = v;
      writeUrl(true);
      load();
    });
  }
  $('refresh').addEventListener('change', () => {
    const r = Number($('refresh').value);
    state.refresh = r === 10 || r === 60 ? r : 0;
    writeUrl(false);
    schedule();
  });
  $('reload').addEventListener('click', () => load());
  $('signout').addEventListener('click', () => { writeToken(''); renderControls(); load(); });
  $('auth').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    writeToken(t);
    $('token').value = '';
    renderControls();
    load();
  });
  window.addEventListener('popstate', () => { readUrl(); renderControls(); renderCatalog(); renderCards(); load(); schedule(); });

  readUrl();
  writeUrl(false);
  renderControls();
  schedule();
  load();
}());
