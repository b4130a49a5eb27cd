// The scripts' unit state must match web/fleet.go's classify: the same
// table as TestClassify.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classify } from '../src/state.js';

const cases = [
  ['no reading', '', [], false, false, 'nodata'],
  ['no reading but an alert', '', ['overload'], false, false, 'alarm'],
  ['on line', 'OL CHRG', [], false, true, 'online'],
  ['on battery', 'OB DISCHRG', [], false, true, 'on_battery'],
  ['on battery by the alert', 'OL DISCHRG', ['on_battery'], false, true, 'on_battery'],
  ['low battery flag', 'OB DISCHRG LB', [], false, true, 'low_battery'],
  ['low battery alert', 'OB', ['low_battery', 'on_battery'], false, true, 'low_battery'],
  ['lost contact beats all', 'OB LB', ['comm_lost'], false, true, 'lost'],
  ['offline will', '', [], true, true, 'lost'],
  ['overload flag', 'OL OVER', [], false, true, 'alarm'],
  ['replace battery', 'OL RB', [], false, true, 'alarm'],
  ['any other alert', 'OL', ['temperature'], false, true, 'alarm'],
  ['unknown tokens are not alarms', 'OL HE', [], false, true, 'online'],
];

for (const [name, status, firing, offline, has, want] of cases) {
  test(name, () => assert.equal(classify(status, firing, offline, has), want));
}
