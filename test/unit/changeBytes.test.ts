import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseCopyRows } from '../../src/capture/copyRows.js';
import { ChangeReader } from '../../src/capture/changeReader.js';
import { changeFrames, frameChanges, pageFieldCount, writeDigits } from '../../src/contracts/changeFrames.js';
import { changeToMessages, opOf, type ChangeRow, type TableRef } from '../../src/contracts/envelope.js';

// The change pages' byte path against its oracle, the object path: change rows as PostgreSQL's binary COPY
// would send them (built here from generated values), framed, and every envelope compared byte for byte
// with changeToMessages' text for the same change.

type Generated = { changeId: bigint; action: string; txid: bigint; schemaVersion: number | null; capturedMs: number; row: string; key: string; before: string | null };

/** Binary COPY of the page query's fields (pageFields order), as PostgreSQL writes it. */
function copyBytes(cur: string, rows: Generated[]): Buffer {
  const parts: Buffer[] = [Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)];
  const field = (b: Buffer | null) => {
    const length = Buffer.alloc(4);
    length.writeInt32BE(b === null ? -1 : b.length);
    parts.push(length);
    if (b) parts.push(b);
  };
  const text = (s: string | null) => field(s === null ? null : Buffer.from(s));
  for (const r of rows) {
    const count = Buffer.alloc(2);
    count.writeInt16BE(pageFieldCount);
    parts.push(count);
    const ms = Buffer.alloc(8);
    ms.writeDoubleBE(r.capturedMs);
    text(cur);
    text(String(r.changeId));
    text(r.action);
    text(String(r.txid));
    text(r.schemaVersion === null ? null : String(r.schemaVersion));
    field(ms);
    text(r.row);
    text(r.key);
    text(r.before);
  }
  parts.push(Buffer.from([0xff, 0xff]));
  return Buffer.concat(parts);
}

/** The object path's reading of the same change (pg.ts reads int8 as a number while safe). */
function objectOf(r: Generated, schemaVersion: number): ChangeRow {
  const id = Number(r.changeId);
  return {
    changeId: Number.isSafeInteger(id) ? id : String(r.changeId), action: r.action, txid: String(r.txid), capturedMs: r.capturedMs, row: r.row, key: r.key,
    schemaVersion: r.schemaVersion ?? schemaVersion, ...(r.before === null ? {} : { before: r.before }),
  };
}

const text = fc.oneof(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), fc.constantFrom('', '"', '\\', '\u0000', '\u2028', 'null'));
const change = fc.record({
  changeId: fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
  action: fc.constantFrom('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'insert', 'UPDATEX', ''),
  txid: fc.bigInt({ min: 3n, max: 2n ** 64n - 1n }),
  schemaVersion: fc.option(fc.integer({ min: 1, max: 2 ** 31 - 1 })),
  capturedMs: fc.oneof(fc.double({ min: 0, max: 1e13, noNaN: true }), fc.integer({ min: 0, max: 2 ** 40 }).map((n) => n + 0.5), fc.constantFrom(1765000000123.4999, 0.5, 2.5)),
  row: text.map((t) => `{"v":${JSON.stringify(t)}}`),
  key: fc.oneof(fc.integer().map((n) => `{"id":${n}}`), text.map((t) => `{"k":${JSON.stringify(t)}}`)),
  before: fc.option(text.map((t) => `{"old":${JSON.stringify(t)}}`)),
});
const tableRef = fc.record({
  db: text, schema: text, name: text, key: fc.constant(['id']), topic: text, topicPrefix: text,
}) as fc.Arbitrary<TableRef>;

test('change pages as bytes: every framed envelope equals the object path\'s, byte for byte; the rest take the object path', () => {
  fc.assert(
    fc.property(tableRef, fc.array(change, { maxLength: 40 }), fc.integer({ min: 0, max: 2 ** 45 }), fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 200, max: 5000 }), (ref, changes, now, schemaVersion, limit) => {
      const frames = changeFrames(ref, now);
      if (!frames) return; // a name holding a marker's digits: the whole page takes the object path
      const rows = parseCopyRows(copyBytes('10:20:', changes), pageFieldCount);
      const { values, starts, ends, ops } = frameChanges(rows, frames, schemaVersion, limit);
      changes.forEach((r, i) => {
        const object = objectOf(r, schemaVersion);
        assert.deepEqual(ChangeReader.changeAt(rows, i, schemaVersion), object, 'the object path reads the bytes back as the same change');
        const op = opOf(r.action);
        const expected = op === 'c' || op === 'u' || op === 'd' ? changeToMessages(ref, object, op, now)[0]!.value! : undefined;
        if (expected === undefined || Buffer.byteLength(expected) > limit) {
          assert.equal(ops[i], undefined, `row ${i} (${r.action}) is left to the object path`);
          assert.equal(ends[i], -1);
          return;
        }
        assert.equal(ops[i], op);
        const got = values.subarray(starts[i], ends[i]);
        if (!got.equals(Buffer.from(expected))) assert.equal(got.toString(), expected, `envelope of row ${i}`);
      });
    }),
    { numRuns: 300 },
  );
});

test('digits are written without a string, and a frame is refused when a name holds a marker', () => {
  const out = Buffer.alloc(20);
  for (const n of [0, 7, 10, 99, 1765000000123, Number.MAX_SAFE_INTEGER]) assert.equal(out.toString('latin1', 0, writeDigits(out, 0, n)), String(n));
  const ref = { db: 'd', schema: 's', name: 'n', key: ['id'], topic: 't', topicPrefix: 'x4398046511104017' };
  assert.equal(changeFrames(ref, 1), undefined);
  assert.ok(changeFrames({ ...ref, topicPrefix: 'x' }, 1));
});
