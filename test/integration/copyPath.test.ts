import assert from 'node:assert/strict';
import { test } from 'node:test';
import { query } from '../helpers/services.js';
import { copyWriter, expected, row, storedThings } from '../helpers/byteWriter.js';

/**
 * The byte path against the real target: a snapshot set of new keys goes by COPY straight into the table
 * (the session makes no staging table), values exact; a set holding a key the target has rolls its COPY
 * back and is upserted by the general path in the same transaction.
 */
test('a snapshot set of new keys goes by COPY into the table, exact; a set with a key the target has is upserted instead', { timeout: 120_000 }, async (t) => {
  const { db, target, writer, records } = await copyWriter(t);
  const staged = async () => Number((await target.query<{ n: string }>("SELECT count(*) AS n FROM pg_class WHERE relname LIKE 'pgtunnel_stage_%' AND pg_table_is_visible(oid)")).rows[0]!.n);
  const stored = () => storedThings(db.targetUrl);
  const first = Array.from({ length: 300 }, (_, i) => row(i + 1));
  assert.equal((await writer.apply(records(first))).applied, 300);
  assert.equal(await staged(), 0, 'the set of new keys went by COPY, without a staging table');
  assert.deepEqual(await stored(), expected(first));

  // a re-snapshot of 10 keys the target has, beside 10 new ones: the COPY's unique violation hands the set to the upsert
  const second = Array.from({ length: 20 }, (_, i) => row(i + 291, ' again'));
  assert.equal((await writer.apply(records(second))).applied, 20);
  assert.equal(await staged(), 1, 'the set with existing keys went through the staging table');
  const all = [...first.slice(0, 290), ...second];
  assert.deepEqual(await stored(), expected(all));
});

test('a value the target refuses in a byte-path set: the COPY line names its record, the set is split there (no bisecting) and the rest is applied', { timeout: 120_000 }, async (t) => {
  // orderPolicy continue: a parked key (the default policy's) would leave the table's later sets to the general path
  const { db, writer, records, attempts } = await copyWriter(t, 'continue');
  const rows = Array.from({ length: 200 }, (_, i) => row(i + 1));
  rows[40] = { ...rows[40], at: 'not a time' };
  rows[150] = { ...rows[150], price: '99999999999.99' };
  const result = await writer.apply(records(rows));
  assert.deepEqual(result, { applied: 198, deadLettered: 2, skipped: 0 });
  const ids = (await query<{ id: number }>(db.targetUrl, 'SELECT id::int FROM things ORDER BY id')).map((r) => r.id);
  assert.deepEqual(ids, rows.map((r) => r.id as number).filter((id) => id !== 41 && id !== 151));
  // whole set, before 41, 41 (COPY then its letter), after 41 (refused at 151), before 151, 151 (two), after 151:
  // bisecting would take about 2 × 2 × log2(100) ≈ 27 attempts
  t.diagnostic(`write attempts: ${attempts.n}`);
  assert.ok(attempts.n <= 10, `the set took ${attempts.n} write attempts`);
});

test('COPY line buffers reused set after set: a later set carries none of an earlier set\'s lines, and a set scanned ahead keeps its own', { timeout: 120_000 }, async (t) => {
  const { db, writer, records } = await copyWriter(t);
  const rows = (from: number, count: number, suffix: string) => Array.from({ length: count }, (_, i) => row(from + i, suffix));
  // sets 1 and 2 change keys of set 0 in turn: a line of an earlier set showing up again in a later set would undo them
  const sets = [rows(1, 200, ' first, a name long enough to fill the line buffer'), rows(1, 3, ' second'), rows(1, 3, ' third'), rows(3001, 1, '')];
  const batches = sets.map((s) => records(s));
  // as the consumer does: each set scanned before the previous one is written, released once written
  let ahead = writer.scan(batches[0]!);
  const applied: number[] = [];
  for (let i = 0; i < batches.length; i++) {
    const current = ahead;
    if (i + 1 < batches.length) ahead = writer.scan(batches[i + 1]!);
    applied.push((await writer.apply(batches[i]!, current)).applied);
    writer.release(current);
    writer.release(current); // twice: still one place for its buffers
  }
  assert.deepEqual(applied, sets.map((s) => s.length));
  assert.deepEqual(await storedThings(db.targetUrl), expected([...sets[2]!, ...sets[0]!.slice(3), ...sets[3]!]));
});
