// The history answer of the API as uPlot's columns.

// table builds uPlot's columns for some fields of a history answer: the
// union of bucket times, then mean, min and max per field (null where a
// field has no bucket).
// goSeconds parses a Go duration such as 1m0s or 1h30m (seconds).
export function goSeconds(d) {
  let total = 0;
  for (const [, n, unit] of String(d).matchAll(/([\d.]+)(h|ms|m|s)/g)) {
    total += parseFloat(n) * { h: 3600, m: 60, s: 1, ms: 0.001 }[unit];
  }
  return total;
}

export function table(history, fields, scale, every) {
  const byField = new Map((history.fields || []).map((f) => [f.field, f.points]));
  const times = new Set();
  for (const f of fields) for (const p of byField.get(f) || []) times.add(Date.parse(p.time) / 1000);
  const sorted = [...times].sort((a, b) => a - b);
  // Where buckets are missing (no readings: the unit was silent), an
  // empty bucket breaks the line instead of drawing across the gap.
  if (every > 0) {
    for (let i = sorted.length - 1; i > 0; i--) {
      if (sorted[i] - sorted[i - 1] > 1.5 * every) sorted.splice(i, 0, sorted[i - 1] + every);
    }
  }
  const xs = Float64Array.from(sorted);
  const idx = new Map();
  xs.forEach((x, i) => idx.set(x, i));
  const cols = [xs];
  for (const f of fields) {
    const mean = new Array(xs.length).fill(null);
    const min = new Array(xs.length).fill(null);
    const max = new Array(xs.length).fill(null);
    for (const p of byField.get(f) || []) {
      const i = idx.get(Date.parse(p.time) / 1000);
      mean[i] = p.mean * scale;
      min[i] = p.min * scale;
      max[i] = p.max * scale;
    }
    cols.push(mean, min, max);
  }
  return cols;
}

