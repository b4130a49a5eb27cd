// The unit page's history charts: one uPlot per figure, each field's mean
// as a line inside its min-max band, outages shaded behind, cursors in
// sync. Data comes from the same API a script would use.
import uPlot from 'uplot';
import { goSeconds, table } from './series.js';

const palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];

function cssVar(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
}

function outagePlugin(outages, fill) {
  return {
    hooks: {
      drawClear: (u) => {
        const { ctx, bbox } = u;
        ctx.save();
        ctx.fillStyle = fill;
        for (const o of outages) {
          const s = Date.parse(o.start) / 1000;
          const e = o.end ? Date.parse(o.end) / 1000 : u.scales.x.max;
          const x0 = Math.max(u.valToPos(s, 'x', true), bbox.left);
          const x1 = Math.min(u.valToPos(e, 'x', true), bbox.left + bbox.width);
          if (x1 > x0) ctx.fillRect(x0, bbox.top, Math.max(x1 - x0, 1), bbox.height);
        }
        ctx.restore();
      },
    },
  };
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

function outageRows(box, outages) {
  const tbody = box.querySelector('tbody');
  tbody.replaceChildren();
  if (!outages.length) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = box.dataset.tNone;
    box.replaceChildren(p);
    return;
  }
  const fmt = (iso) => (iso ? new Date(iso).toLocaleString(document.body.dataset.lang || 'en') : box.dataset.tOngoing);
  for (const o of outages) {
    const tr = document.createElement('tr');
    const dur = o.duration_s !== undefined && o.duration_s !== null ? Math.round(o.duration_s) : undefined;
    const cells = [
      fmt(o.start), fmt(o.end), dur !== undefined ? `${Math.floor(dur / 60)}m${String(dur % 60).padStart(2, '0')}s` : '',
      `${o.lowest_charge ?? '–'} % / ${o.lowest_runtime !== undefined && o.lowest_runtime !== null ? Math.round(o.lowest_runtime / 60) + ' min' : '–'}`,
      o.paged ? '✓' : '–',
    ];
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.append(td);
    }
    tbody.append(tr);
  }
}

export async function startCharts() {
  const root = document.getElementById('charts');
  if (!root) return;
  const t0 = performance.now();
  const { serial, qs } = root.dataset;
  const every = goSeconds(new URLSearchParams(qs).get('every') || '');
  const figs = [...root.querySelectorAll('figure.chart')];
  const fields = figs.flatMap((f) => f.dataset.fields.split(' '));
  root.setAttribute('aria-busy', 'true');
  const [history, outages] = await Promise.all([
    getJSON(`/v1/units/${serial}/history?${qs}&fields=${fields.join(',')}`),
    getJSON(`/v1/units/${serial}/outages?${qs}`).then((d) => d.outages || []).catch(() => []),
  ]);
  const tDraw = performance.now();
  const box = document.getElementById('outages');
  if (box) outageRows(box, outages);
  const fg = cssVar('--fg', '#222');
  const grid = cssVar('--grid', 'rgba(128,128,128,0.2)');
  const shade = cssVar('--outage', 'rgba(214,39,40,0.12)');
  let drawn = 0;
  const plots = [];
  for (const fig of figs) {
    const fs = fig.dataset.fields.split(' ');
    const names = (fig.dataset.names || '').split('|');
    const scale = parseFloat(fig.dataset.scale || '1');
    const data = table(history, fs, scale, every);
    const present = fs.filter((_, i) => data[1 + 3 * i].some((v) => v !== null));
    if (!data[0].length || !present.length) {
      fig.hidden = true;
      continue;
    }
    const series = [{}];
    const bands = [];
    fs.forEach((f, i) => {
      const c = palette[i % palette.length];
      const base = series.length;
      series.push({ label: names[i] || f, stroke: c, width: 1.5, spanGaps: false, value: (u, v) => (v == null ? '–' : v.toFixed(1)) });
      series.push({ label: `${names[i] || f} min`, stroke: alpha(c, 0.35), width: 0.5 });
      series.push({ label: `${names[i] || f} max`, stroke: alpha(c, 0.35), width: 0.5 });
      bands.push({ series: [base + 2, base + 1], fill: alpha(c, 0.15) });
    });
    const opts = {
      width: Math.max(fig.clientWidth, 280),
      height: 180,
      series,
      bands,
      cursor: { sync: { key: `unit-${serial}` } },
      legend: { live: true },
      scales: { x: { time: true } },
      axes: [
        { stroke: fg, grid: { stroke: grid } },
        { stroke: fg, grid: { stroke: grid }, size: 50 },
      ],
      plugins: [outagePlugin(outages, shade)],
    };
    const u = new uPlot(opts, data, fig);
    plots.push([u, fig]);
    drawn += data[0].length;
  }
  root.removeAttribute('aria-busy');
  if (!plots.length) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = root.dataset.tNodata;
    root.append(p);
  }
  const ro = new ResizeObserver(() => {
    for (const [u, fig] of plots) u.setSize({ width: Math.max(fig.clientWidth, 280), height: 180 });
  });
  figs.forEach((f) => ro.observe(f));
  // For the browser tests and the benchmark: how many charts and points,
  // how long drawing took and how long with fetching.
  root.dataset.charts = String(plots.length);
  root.dataset.points = String(drawn);
  root.dataset.drawMs = String(Math.round(performance.now() - tDraw));
  root.dataset.ms = String(Math.round(performance.now() - t0));
}
