import assert from 'node:assert/strict';
import { test } from 'node:test';
import { copyFields, newestPerKey, partitionRuns, rowsJson } from '../../src/apply/oneStatement.js';
import type { SetChange, TableLines } from '../../src/apply/copyPath.js';
import { CopyOut } from '../../src/contracts/byteScan.js';
import { copyLine } from '../../src/apply/staging.js';
import { readObject } from '../../src/contracts/json.js';

test('a COPY line read back gives each column its exact text, and \\N alone is NULL', () => {
  const row = readObject('{"a":"tab\\there\\\\ and \\n, \\r","b":12.50,"c":null,"d":true,"e":"\\\\x00ff","f":"\\\\N","g":"é ☃"}', 2);
  const line = copyLine(row, ['a', 'b', 'c', 'd', 'e', 'f', 'g'])!;
  assert.deepEqual(copyFields(Buffer.from(line.slice(0, -1))), ['tab\there\\ and \n, \r', '12.50', null, 'true', '\\x00ff', '\\N', 'é ☃']);
});

test("COPY's other escapes (PostgreSQL's text format) and empty fields", () => {
  assert.deepEqual(copyFields(Buffer.from('\\b\\f\\v\t\\101\\x41\\q\t\t\\N')), ['\b\f\v', 'AAq', '', null]);
});

test('rows as JSON objects of column texts, for json_to_recordset', () => {
  const text = Buffer.from('1\tx"y\n2\t\\N\n');
  assert.deepEqual(JSON.parse(rowsJson(['id', 'name'], text)), [{ id: '1', name: 'x"y' }, { id: '2', name: null }]);
});

test("partition runs: each partition's first and next offset; a run that goes back (a redelivery) is refused", () => {
  const r = (partition: number, offset: number) => ({ topic: 't', partition, offset: BigInt(offset) });
  assert.deepEqual(partitionRuns([r(0, 10), r(1, 3), r(0, 12)]), [
    { topic: 't', partition: 0, first: 10n, next: 13n, applied: 2 },
    { topic: 't', partition: 1, first: 3n, next: 4n, applied: 1 },
  ]);
  assert.equal(partitionRuns([r(0, 10), r(0, 11), r(0, 10)]), undefined);
  // a tombstone (offset 11) advances the offset but takes no effect: it is not counted as applied
  assert.deepEqual(partitionRuns([r(0, 10), r(0, 11), r(1, 3)], [r(0, 10), r(1, 3)])!.map((run) => run.applied), [1, 1]);
});

test('newest change per key: a later change of a key replaces an earlier one; a delete keeps only the key', () => {
  const out = new CopyOut();
  out.text('1\ta\n2\tb\n1\tc\n');
  const table = {} as TableLines;
  const group = { columns: ['id', 'name'], out, records: [] };
  const change = (op: SetChange['op'], keyText: string, start: number, end: number): SetChange => ({ table, op, keyText, group: op === 'd' ? undefined : group, start, end });
  const [w] = newestPerKey([change('c', '{"id":1}', 0, 4), change('c', '{"id":2}', 4, 8), change('d', '{"id":2}', 0, 0), change('u', '{"id":1}', 8, 12), change('d', '{"id":3}', 0, 0)]);
  assert.deepEqual(w!.deletes, ['{"id":2}', '{"id":3}']);
  assert.deepEqual([...w!.upserts.get(group)!].map(String), ['1\tc\n']);
});
