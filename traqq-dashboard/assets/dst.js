'use strict';
// The dst (distribution) card of the traqq dashboard, in its own file to keep app.js short.
// app.js builds it with its own helpers: traqqDistribution(ui) returns { dstCard }.
//
// Per bucket, one label's quantiles as the server reports them: the p50 line, a band from
// p50 to p90 and a lighter one from p90 to p99, with a tooltip per bucket (count, min, max,
// p50, p90, p99). Labels cannot be merged here (the page has the figures, not the sketches),
// so the card shows one label at a time: the one with the most values unless one is picked.
// Over the whole range, the quantiles are the server's merge of the sketches
// (`/v1/find?metric_type=dst&merge=true`, in app.js's load()).
function traqqDistribution(ui) {
  const { h, s, fmt, chartFrame, card, stat, OTHER } = ui;
  // The quantiles drawn: a line, then each band between two of them (key, name, CSS class).
  const QS = ['p50', 'p90', 'p99'];
  const BANDS = [['p50', 'p90', 'band90', 'p50 – p90'], ['p90', 'p99', 'band99', 'p90 – p99']];
  // The label picked per metric; it stays picked across reloads and ranges while it exists.
  const picks = new Map();

  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  // A bucket's figures of `label`, or null when it has none (or not the expected shape).
  function figures(bucket, label) {
    const f = bucket && typeof bucket === 'object' ? bucket[label] : null;
    if (!f || typeof f !== 'object' || !(num(f.count) > 0)) return null;
    const out = { count: f.count, sum: num(f.sum), min: num(f.min), max: num(f.max) };
    for (const q of QS) out[q] = num(f[q]);
    return out;
  }
  // Labels by their number of values over the range, most first, ties by name; (other) last.
  function labelsOf(m) {
    const counts = new Map();
    for (const b of m.buckets) {
      if (!b || typeof b !== 'object') continue;
      for (const [label, f] of Object.entries(b)) {
        const n = f && num(f.count);
        if (n !== null) counts.set(label, (counts.get(label) || 0) + n);
      }
    }
    return [...counts.entries()].sort((a, b) => (a[0] === OTHER) - (b[0] === OTHER)
      || b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
  const shownLabel = (l) => (l === '' ? '(empty)' : l === OTHER ? '(other: labels past the cap)' : l);
  function tip(date, f) {
    return date + ' · count ' + fmt(f.count) + ' · min ' + fmt(f.min) + ' · p50 ' + fmt(f.p50)
      + ' · p90 ' + fmt(f.p90) + ' · p99 ' + fmt(f.p99) + ' · max ' + fmt(f.max);
  }
  // The figures as data attributes (the exact numbers, for tooltips' readers and tests).
  function dataOf(f) {
    const out = {};
    for (const k of ['count', 'min', 'max', ...QS]) out['data-' + k] = f[k] === null ? '' : f[k];
    return out;
  }

  // The p50 line over the two bands, per bucket; a bucket without values leaves a gap.
  function bandChart(title, labels, dates, points, wide) {
    let top = 0, bottom = 0;
    for (const f of points) {
      if (!f) continue;
      for (const q of QS) {
        if (f[q] !== null && f[q] > top) top = f[q];
        if (f[q] !== null && f[q] < bottom) bottom = f[q];
      }
    }
    const { svg, x, y, T, H, B } = chartFrame(title, labels, top, wide, bottom);
    const runs = [];
    points.forEach((f, i) => {
      const ok = f && QS.every((q) => f[q] !== null);
      if (!ok) return;
      if (runs.length && runs[runs.length - 1].at(-1) === i - 1) runs[runs.length - 1].push(i);
      else runs.push([i]);
    });
    // A lone bucket gets a few units of width, so its bands still show.
    const xs = (run) => (run.length === 1 ? [x(run[0]) - 4, x(run[0]) + 4] : run.map(x));
    for (const run of runs) {
      const at = run.length === 1 ? [run[0], run[0]] : run;
      const px = xs(run);
      for (const [lo, hi, cls] of BANDS) {
        const upper = at.map((i, k) => px[k].toFixed(1) + ',' + y(points[i][hi]).toFixed(1));
        const lower = at.map((i, k) => px[k].toFixed(1) + ',' + y(points[i][lo]).toFixed(1)).reverse();
        svg.append(s('polygon', { class: cls, points: upper.concat(lower).join(' ') }));
      }
      for (const q of QS) {
        svg.append(s('polyline', {
          class: 'q-' + q,
          points: at.map((i, k) => px[k].toFixed(1) + ',' + y(points[i][q]).toFixed(1)).join(' '),
        }));
      }
    }
    // Per bucket: a dot on p50, and a column to hover for the bucket's figures.
    const n = labels.length;
    const step = n <= 1 ? 40 : x(1) - x(0);
    points.forEach((f, i) => {
      if (!f || f.p50 === null) return;
      if (n <= 48) svg.append(s('circle', { cx: x(i).toFixed(1), cy: y(f.p50).toFixed(1), r: 2.5, class: 'q-p50' }));
      const rect = s('rect', Object.assign({
        class: 'hover', 'data-bucket': dates[i],
        x: (x(i) - step / 2).toFixed(1), y: T, width: step.toFixed(1), height: H - T - B,
      }, dataOf(f)), s('title', {}, tip(dates[i], f)));
      svg.append(rect);
    });
    return svg;
  }
  function bandLegend() {
    return h('div', { class: 'legend' },
      h('span', {}, h('i', { class: 'q-p50' }), 'p50'),
      BANDS.map(([, , cls, name]) => h('span', {}, h('i', { class: cls }), name)));
  }

  function dstCard(m, detail, labels) {
    const { days, unit } = ui.data();
    const all = labelsOf(m);
    const picked = picks.get(m.id);
    const label = all.some(([l]) => l === picked) ? picked : (all.length ? all[0][0] : null);
    let sum = 0, count = 0;
    for (const x of m.summary) if (x && num(x.sum) !== null && num(x.count) !== null) { sum += x.sum; count += x.count; }
    const select = h('select', {
      'data-role': 'dst-label', 'aria-label': 'label',
      onchange: (e) => { picks.set(m.id, e.target.value); ui.rerender(); },
    }, all.map(([l, n]) => h('option', { value: l, selected: l === label }, shownLabel(l) + ' (' + fmt(n) + ')')));
    const dates = days.map((d) => d.date);
    const points = m.buckets.map((b) => (label === null ? null : figures(b, label)));
    // The range's quantiles of the label: the server's merge of the sketches.
    const merged = label !== null && m.merged ? figures(m.merged.Quantiles, label) : null;
    const q = (k) => (merged ? merged[k] : null);
    const perBucket = detail ? h('table', { class: 'quantiles' },
      h('thead', {}, h('tr', {}, h('th', {}, unit),
        ['count', 'min', ...QS, 'max'].map((k) => h('th', { class: 'num' }, k)))),
      h('tbody', {}, days.map((d, i) => {
        const f = points[i];
        return h('tr', Object.assign({ 'data-bucket': d.date, 'data-label': label }, f ? dataOf(f) : {}),
          h('td', {}, d.date),
          ['count', 'min', ...QS, 'max'].map((k) => h('td', { class: 'num', 'data-q': k }, f ? fmt(f[k]) : '–')));
      }))) : null;
    return card(m, detail,
      h('div', { class: 'stats' },
        stat('values of ' + m.addKey, 'count', count),
        stat('average', 'avg', count ? sum / count : null, count ? fmt(sum / count) : '–'),
        QS.map((k) => stat(k + ' over the range', 'range-' + k, q(k), fmt(q(k))))),
      all.length ? h('label', { class: 'pick' }, 'label ', select) : h('p', { class: 'empty' }, 'No values in this range.'),
      label !== null ? [
        bandChart(m.addKey + ' of ' + shownLabel(label) + ' per ' + unit, labels, dates, points, detail),
        bandLegend(),
        h('p', { class: 'more' }, 'Quantiles within 1% of the exact values. Hover a ' + unit + ' for its figures.'),
      ] : null,
      perBucket);
  }
  return { dstCard };
}
