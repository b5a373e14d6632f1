import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newestPerKey, nextOffsets, type DecodedRecord } from '../../src/apply/reduce.js';
import type { Envelope, Op } from '../../src/contracts/envelope.js';
import { readObject } from '../../src/contracts/json.js';

function record(offset: number, id: number, op: Op, salary = 1, topic = 'a'): DecodedRecord {
  const row = readObject(`{"emp_id":${id},"salary":${salary}}`, 2);
  const envelope: Envelope = {
    op,
    before: op === 'd' ? row : null,
    after: op === 'd' ? null : row,
    source: { version: '0', connector: 'pgtunnel', name: 'p', db: 'db1', schema: 'public', table: 'employees', txId: '1', lsn: String(offset), snapshot: 'false', tsMs: 1000 + offset, schemaVersion: 1 },
    tsMs: 0,
  };
  return { topic, partition: 0, offset: BigInt(offset), key: `{"emp_id":${id}}`, value: '', envelope };
}

const texts = (rows: { text: string }[]) => rows.map((r) => r.text);

test('the newest change per key wins within a set', () => {
  const writes = newestPerKey([record(1, 7, 'c', 10), record(2, 7, 'u', 20), record(3, 8, 'c', 5), record(4, 7, 'u', 30)]).get('a')!;
  assert.deepEqual(texts(writes.upserts), ['{"emp_id":8,"salary":5}', '{"emp_id":7,"salary":30}']);
  assert.deepEqual(writes.deletes, []);
  assert.equal(writes.newestSourceMs, 1004);
});

test('a delete after an insert leaves only the delete; a re-insert after a delete leaves the insert', () => {
  const writes = newestPerKey([record(1, 1, 'c'), record(2, 1, 'd'), record(3, 2, 'd'), record(4, 2, 'c', 99)]).get('a')!;
  assert.deepEqual(texts(writes.deletes), ['{"emp_id":1,"salary":1}']);
  assert.deepEqual(texts(writes.upserts), ['{"emp_id":2,"salary":99}']);
});

test('topics are reduced separately', () => {
  const out = newestPerKey([record(1, 1, 'c', 1, 'a'), record(1, 1, 'd', 1, 'b')]);
  assert.equal(out.get('a')!.upserts.length, 1);
  assert.equal(out.get('b')!.deletes.length, 1);
});

test('next offsets are one past the highest offset per partition', () => {
  const out = [...nextOffsets([{ topic: 'a', partition: 0, offset: 5n }, { topic: 'a', partition: 0, offset: 3n }, { topic: 'a', partition: 1, offset: 0n }]).values()];
  assert.deepEqual(out, [{ topic: 'a', partition: 0, next: 6n }, { topic: 'a', partition: 1, next: 1n }]);
});
