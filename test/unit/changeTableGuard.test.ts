import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { ChangeTableGuard } from '../../src/report/changeTables.js';
import { telemetry } from '../../src/instruments/telemetry.js';

test('the change-table guard warns once per crossing of each threshold and says when it is back below', () => {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const guard = new ChangeTableGuard({ changeTableWarnRows: 100, changeTableWarnSeconds: 60 }, log);
  const measure = (rows: number, oldestSeconds: number | null) => telemetry.changeTable({ table: 'public.t', rows, bytes: rows * 100, oldestSeconds });
  const warnings = () => lines.filter((l) => l.level === 40).map((l) => l.msg);
  try {
    measure(10, 5);
    assert.deepEqual(warnings(), []);
    measure(150, 5);
    measure(200, 30);
    assert.equal(warnings().length, 1);
    assert.match(warnings()[0]!, /public\.t holds 150 unpublished changes .*above changeTableWarnRows 100/);
    measure(200, 90);
    measure(300, 120);
    assert.equal(warnings().length, 2);
    assert.match(warnings()[1]!, /oldest unpublished change of public\.t has waited 90 s, above changeTableWarnSeconds 60/);
    measure(0, null);
    assert.deepEqual(lines.filter((l) => l.level === 30).map((l) => l.msg), ['the change table of public.t is back below changeTableWarnRows', 'the change table of public.t is back below changeTableWarnSeconds']);
    measure(101, 5);
    assert.equal(warnings().length, 3, 'a new crossing warns again');
  } finally {
    guard.close();
  }
  measure(10_000, 10_000);
  assert.equal(warnings().length, 3, 'a closed guard no longer listens');
});
