import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freshRecords } from '../../src/apply/offsets.js';
import { partitionId } from '../../src/names.js';

const r = (partition: number, offset: number) => ({ topic: 't', partition, offset: BigInt(offset) });
const offsets = (rs: { partition: number; offset: bigint }[]) => rs.map((x) => `${x.partition}@${x.offset}`);

test('a set holding a run of a partition twice (a fetch again from the group offset after a rebalance) keeps each record once, in order', () => {
  const set = [r(0, 10), r(0, 11), r(1, 5), r(0, 12), r(0, 10), r(0, 11), r(1, 6), r(0, 12), r(0, 13)];
  assert.deepEqual(offsets(freshRecords(set, new Map())), ['0@10', '0@11', '1@5', '0@12', '1@6', '0@13']);
});

test('records below the stored next offset have already taken effect', () => {
  const stored = new Map([[partitionId('t', 0), 12n]]);
  assert.deepEqual(offsets(freshRecords([r(0, 10), r(0, 11), r(0, 12), r(1, 0), r(0, 11), r(0, 13)], stored)), ['0@12', '1@0', '0@13']);
});
