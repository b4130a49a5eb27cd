import { test } from 'node:test';
import assert from 'node:assert/strict';
import { goSeconds, table } from '../src/series.js';

test('Go durations', () => {
  for (const [d, s] of [['10s', 10], ['1m0s', 60], ['5m0s', 300], ['1h0m0s', 3600], ['1h30m', 5400], ['500ms', 0.5], ['', 0]]) {
    assert.equal(goSeconds(d), s, d);
  }
});

const t0 = Date.parse('2026-12-01T00:00:00Z') / 1000;
const at = (min) => new Date((t0 + min * 60) * 1000).toISOString();
const history = {
  fields: [
    { field: 'input.voltage', points: [0, 1, 2, 10].map((m) => ({ time: at(m), mean: 230 + m, min: 229, max: 231 + m })) },
    { field: 'battery.runtime', points: [1, 2].map((m) => ({ time: at(m), mean: 600, min: 540, max: 660 })) },
  ],
};

test('columns: the union of times, mean/min/max per field, null where a field has no bucket', () => {
  const [xs, vMean, vMin, vMax, rMean] = table(history, ['input.voltage', 'battery.runtime'], 1, 0);
  assert.deepEqual([...xs], [0, 1, 2, 10].map((m) => t0 + m * 60));
  assert.deepEqual(vMean, [230, 231, 232, 240]);
  assert.deepEqual(vMin, [229, 229, 229, 229]);
  assert.deepEqual(vMax, [231, 232, 233, 241]);
  assert.deepEqual(rMean, [null, 600, 600, null]);
});

test('a scale converts units (runtime seconds to minutes)', () => {
  const [, mean, min] = table(history, ['battery.runtime'], 1 / 60, 60);
  assert.deepEqual(mean, [10, 10]);
  assert.deepEqual(min, [9, 9]);
});

test('missing buckets break the line instead of bridging the gap', () => {
  const [xs, mean] = table(history, ['input.voltage'], 1, 60);
  assert.deepEqual([...xs], [0, 1, 2, 3, 10].map((m) => t0 + m * 60));
  assert.deepEqual(mean, [230, 231, 232, null, 240]);
});
