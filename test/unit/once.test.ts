import assert from 'node:assert/strict';
import { test } from 'node:test';
import { onceTimeout, parseTimeout } from '../../src/cli/once.js';

test('--timeout takes seconds or a unit, and refuses anything else', () => {
  assert.equal(parseTimeout('90'), 90_000);
  assert.equal(parseTimeout('90s'), 90_000);
  assert.equal(parseTimeout('10m'), 600_000);
  assert.equal(parseTimeout('1h'), 3_600_000);
  assert.equal(parseTimeout('1.5s'), 1500);
  for (const bad of ['', 'soon', '-5', '0', '10 minutes']) assert.throws(() => parseTimeout(bad), /not a duration|must be positive/, bad);
});

test('a timed-out run --once names what it waited for; an outage exits 3, slowness 4', () => {
  const outage = onceTimeout(60, 'the target to apply t[0] 3/9', ['consumer is waiting: cannot connect to the target database'], true);
  assert.match(outage.message, /timed out after 60 s waiting for the target to apply t\[0\] 3\/9; consumer is waiting: cannot connect/);
  assert.equal(outage.errorClass, 'unreachable');
  assert.equal(onceTimeout(60, 'x', [], false).errorClass, 'fatal');
  assert.match(onceTimeout(60, 'x', [], false).hint!, /--timeout/);
});
