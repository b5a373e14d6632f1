import assert from 'node:assert/strict';
import { test } from 'node:test';
import { partitionId } from '../../src/names.js';
import { formatOffsets, offsetRows } from '../../src/report/offsets.js';

test("offset rows: lag is log end − group offset as Kafka's tool has it, unknown without a committed group offset", () => {
  const rows = offsetRows(
    [{ table: 'public.employees', topic: 't' }],
    { ends: new Map([['t', [10n, 0n, 7n]]]), committed: new Map([[partitionId('t', 0), 4n], [partitionId('t', 2), 7n]]) },
    new Map([[partitionId('t', 0), 6n], [partitionId('t', 2), 7n]]),
  );
  assert.deepEqual(rows.map((r) => [r.partition, r.groupOffset, r.targetOffset, r.logEndOffset, r.lag]), [
    [0, 4, 6, 10, 6],
    [1, null, 0, 0, null],
    [2, 7, 7, 7, 0],
  ]);
  assert.equal(offsetRows([{ table: 'x', topic: 't' }], { ends: new Map([['t', [1n]]]), committed: new Map() }, undefined)[0]!.targetOffset, null, 'an unreachable target leaves its column empty');
  const text = formatOffsets({ group: 'g', partitions: rows, errors: ['cannot connect to the target database'] });
  assert.match(text, /^group g\nTOPIC\s+PARTITION\s+GROUP-OFFSET\s+TARGET-OFFSET\s+LOG-END-OFFSET\s+LAG\nt\s+0\s+4\s+6\s+10\s+6\nt\s+1\s+-\s+0\s+0\s+-/);
  assert.match(text, /unavailable: cannot connect to the target database$/);
});
