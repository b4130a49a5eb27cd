// Live updates of the fleet and unit pages from the server's event stream
// (GET /v1/events, Server-Sent Events): readings change a row's numbers
// and state, alert events its firing rules.
import { classify } from './state.js';

const lang = () => document.body.dataset.lang || 'en';

function texts() {
  const t = document.getElementById('i18n');
  const out = { state: {}, minutes: '{n} min' };
  if (!t) return out;
  t.content.querySelectorAll('[data-state-text]').forEach((e) => { out.state[e.dataset.stateText] = e.textContent; });
  const m = t.content.querySelector('[data-text="minutes"]');
  if (m) out.minutes = m.textContent;
  return out;
}

function fmt(x, digits) {
  return new Intl.NumberFormat(lang(), { maximumFractionDigits: digits }).format(x);
}

function fmtNum(x) {
  const a = Math.abs(x);
  return fmt(x, a >= 100 ? 0 : a >= 10 ? 1 : 2);
}

export function ago(iso) {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const rtf = new Intl.RelativeTimeFormat(lang(), { style: 'short', numeric: 'always' });
  if (s < 60) return rtf.format(-s, 'second');
  if (s < 3600) return rtf.format(-Math.floor(s / 60), 'minute');
  if (s < 48 * 3600) return rtf.format(-Math.floor(s / 3600), 'hour');
  return rtf.format(-Math.floor(s / 86400), 'day');
}

function num(v) {
  if (v === undefined || v === null || v === '') return undefined;
  const x = typeof v === 'number' ? v : parseFloat(v);
  return Number.isFinite(x) ? x : undefined;
}

function setCell(row, field, text) {
  const c = row.querySelector(`[data-f="${field}"]`);
  if (c && c.textContent !== text) c.textContent = text;
}

function render(row, t) {
  const firing = (row.dataset.firing || '').split(' ').filter(Boolean);
  const st = classify(row.dataset.status || '', firing, row.dataset.offline === '1', row.dataset.has !== '0');
  if (row.dataset.state !== st) {
    row.classList.remove(`st-${row.dataset.state}`);
    row.classList.add(`st-${st}`);
    row.dataset.state = st;
    const b = row.querySelector('[data-f="state"]');
    if (b) {
      b.className = `badge st-${st}`;
      b.textContent = t.state[st] || st;
    }
    return true;
  }
  return false;
}

function recount() {
  const tally = (rows) => {
    const counts = {};
    rows.forEach((r) => { counts[r.dataset.state] = (counts[r.dataset.state] || 0) + 1; });
    return counts;
  };
  const all = tally(document.querySelectorAll('tr[data-serial]'));
  document.querySelectorAll('[data-count]').forEach((e) => { e.textContent = String(all[e.dataset.count] || 0); });
  document.querySelectorAll('section.site').forEach((sec) => {
    const counts = tally(sec.querySelectorAll('tr[data-serial]'));
    sec.querySelectorAll('[data-site-count]').forEach((e) => {
      const n = counts[e.dataset.siteCount] || 0;
      e.hidden = n === 0;
      e.querySelector('b').textContent = String(n);
    });
  });
}

// The event's reading: {serial, ts (unix ms), time, values: NUT variables
// by name}.
function readingOf(d) {
  const values = d.values || d;
  return { serial: d.serial, ts: d.ts ?? d.time, status: values['ups.status'], presence: d.presence, values };
}

export function startLive() {
  const root = document.querySelector('[data-live="fleet"], [data-live="unit"]');
  if (!root || !window.EventSource) return;
  const t = texts();
  // Looked up each time: a refresh replaces them.
  const showFeed = (ok) => {
    const up = document.querySelector('[data-feed]');
    const down = document.querySelector('[data-feed-down]');
    if (up) up.hidden = !ok;
    if (down) down.hidden = ok;
  };
  const es = new EventSource('/v1/events');
  // Events sent while the stream was down are lost: after a reconnect the
  // page takes the server's state again.
  let broken = false;
  es.onopen = () => {
    showFeed(true);
    if (broken && root.id) {
      window.htmx.ajax('GET', window.location.pathname + window.location.search,
        { target: `#${root.id}`, select: `#${root.id}`, swap: 'outerHTML' }).then(() => showFeed(true));
    }
    broken = false;
  };
  es.onerror = () => { broken = true; showFeed(false); };
  es.addEventListener('reading', (e) => {
    const r = readingOf(JSON.parse(e.data));
    const row = document.getElementById(`u-${r.serial}`);
    if (!row) return;
    row.dataset.has = '1';
    if (r.presence === 'offline') row.dataset.offline = '1';
    else if (r.presence === 'online' || r.status !== undefined) row.dataset.offline = '0';
    if (r.status !== undefined) row.dataset.status = r.status;
    const v = r.values;
    const charge = num(v['battery.charge']);
    if (charge !== undefined) setCell(row, 'battery.charge', `${fmtNum(charge)} %`);
    const runtime = num(v['battery.runtime']);
    if (runtime !== undefined) setCell(row, 'battery.runtime', t.minutes.replace('{n}', fmtNum(runtime / 60)));
    const load = num(v['ups.load']);
    if (load !== undefined) setCell(row, 'ups.load', `${fmtNum(load)} %`);
    const input = num(v['input.voltage']);
    if (input !== undefined) setCell(row, 'input.voltage', `${fmtNum(input)} V`);
    if (r.ts) {
      const tm = row.querySelector('[data-f="ts"]');
      if (tm) {
        const iso = typeof r.ts === 'number' ? new Date(r.ts).toISOString() : r.ts;
        tm.setAttribute('datetime', iso);
        tm.textContent = ago(iso);
        tm.title = new Date(iso).toLocaleString(lang());
      }
    }
    if (render(row, t)) recount();
  });
  es.addEventListener('alert', (e) => {
    const ev = JSON.parse(e.data);
    const row = document.getElementById(`u-${ev.serial}`);
    if (!row || ev.area) return; // an area alert is the site's, not its anchor unit's
    const firing = new Set((row.dataset.firing || '').split(' ').filter(Boolean));
    if (ev.kind === 'resolved') firing.delete(ev.rule);
    else firing.add(ev.rule);
    row.dataset.firing = [...firing].join(' ');
    if (render(row, t)) recount();
  });
  // Relative times age even without events.
  setInterval(() => {
    document.querySelectorAll('time[data-f="ts"]').forEach((tm) => {
      const iso = tm.getAttribute('datetime');
      if (iso) tm.textContent = ago(iso);
    });
  }, 15000);
  window.addEventListener('pagehide', () => es.close());
}

// The alerts page reloads its list when an alert or an acknowledgement
// changes (another recipient's too), unless the person is typing a reason.
export function startAlertsLive() {
  const page = document.getElementById('alerts-page');
  if (!page || !window.EventSource) return;
  let timer = 0;
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const typing = document.activeElement && document.activeElement.matches('#alerts-page input[name="reason"]') &&
        document.activeElement.value !== '';
      if (typing) {
        refresh();
        return;
      }
      window.htmx.ajax('GET', window.location.pathname + window.location.search,
        { target: '#alerts-page', select: '#alerts-page', swap: 'outerHTML' });
    }, 300);
  };
  const es = new EventSource('/v1/events');
  es.addEventListener('alert', refresh);
  es.addEventListener('action', refresh);
  window.addEventListener('pagehide', () => es.close());
}
