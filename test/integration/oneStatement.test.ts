import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { RawRecord } from '../../src/validate/deadLetters.js';
import { connect } from '../../src/pg.js';
import { onCleanup, query, waitFor } from '../helpers/services.js';
import { copyWriter, expected, row, storedThings, type ThingChange } from '../helpers/byteWriter.js';

/**
 * A small scanned set as one statement (src/apply/oneStatement.ts) against the real target: new rows,
 * updates, deletes, a key twice, values exact, offsets stored with the rows; a stale set, a parked or
 * lettered key, a partition never applied and a refused value each leave the set to the general path,
 * which keeps its guarantees; and the general path's own result for any small set (property).
 */
const rows = (from: number, n: number, suffix = '') => Array.from({ length: n }, (_, i) => row(from + i, suffix));

test('one statement: exact values and offsets; a key the target has is updated; a stale redelivery is skipped by the general path', { timeout: 120_000 }, async (t) => {
  const { db, writer, records, topic } = await copyWriter(t);
  const stored = () => storedThings(db.targetUrl);
  const offset = async () => (await query<{ n: string }>(db.targetUrl, 'SELECT next_offset::text AS n FROM pgtunnel.consumer_offsets WHERE topic = $1', [topic]))[0]?.n;
  const apply = (set: ReturnType<typeof records>) => writer.apply(set, writer.scan(set));

  // a partition never applied has no offset row yet: the general path creates it
  const first = rows(1, 20);
  assert.equal((await apply(records(first))).applied, 20);
  assert.equal(writer.setsAsOne, 0);
  const second = rows(21, 30);
  assert.deepEqual(await apply(records(second)), { applied: 30, deadLettered: 0, skipped: 0 });
  assert.equal(writer.setsAsOne, 1, 'the second set went as one statement');
  assert.equal(await offset(), '50');
  assert.deepEqual(await stored(), expected([...first, ...second]));

  // keys the target has (a re-snapshot) are upserted by the same statement
  const again = rows(41, 20, ' again');
  assert.equal((await apply(records(again))).applied, 20);
  assert.equal(writer.setsAsOne, 2);
  assert.equal(await offset(), '70');
  assert.deepEqual(await stored(), expected([...first, ...second.slice(0, 20), ...again]));

  // offsets 60..69 took effect already: the verdict refuses, the general path skips them, nothing changes
  const before = await stored();
  assert.deepEqual(await apply(records(rows(51, 10, ' stale'), 60)), { applied: 0, deadLettered: 0, skipped: 10 });
  assert.equal(writer.setsAsOne, 2);
  assert.deepEqual(await stored(), before);
  assert.equal(await offset(), '70');
});

test('one statement: a parked or lettered key of the topic leaves the set to the general path, which honours it', { timeout: 120_000 }, async (t) => {
  const { db, writer, records, topic } = await copyWriter(t);
  const apply = (set: ReturnType<typeof records>) => writer.apply(set, writer.scan(set));
  await apply(records(rows(1, 5)));
  await query(db.targetUrl, "INSERT INTO pgtunnel.parked_keys (topic, key, dead_letters) VALUES ($1, '{\"id\":7}', 1)", [topic]);
  const parked = await apply(records(rows(6, 5)));
  assert.equal(writer.setsAsOne, 0);
  assert.deepEqual(parked, { applied: 4, deadLettered: 1, skipped: 0 }, 'the parked key 7 became a dead letter, the others applied');

  await query(db.targetUrl, 'DELETE FROM pgtunnel.parked_keys WHERE topic = $1', [topic]);
  await query(db.targetUrl, 'DELETE FROM pgtunnel.lettered_keys WHERE topic = $1', [topic]);
  await query(db.targetUrl, "INSERT INTO pgtunnel.lettered_keys (topic, key, partition, dead_letters) VALUES ($1, '{\"id\":12}', 0, 1)", [topic]);
  const set = records(rows(11, 5));
  assert.equal((await apply(set)).applied, 5);
  assert.equal(writer.setsAsOne, 0);
  const [lettered] = await query<{ applied_offset: string }>(db.targetUrl, "SELECT applied_offset::text FROM pgtunnel.lettered_keys WHERE topic = $1 AND key = '{\"id\":12}'", [topic]);
  assert.equal(lettered!.applied_offset, String(set[1]!.offset), "the supersede guard moved to key 12's applied offset");

  await query(db.targetUrl, 'DELETE FROM pgtunnel.lettered_keys WHERE topic = $1', [topic]);
  assert.equal((await apply(records(rows(16, 5)))).applied, 5);
  assert.equal(writer.setsAsOne, 1, 'with nothing parked or lettered the set goes as one statement');
});

test('one statement: a value the target refuses fails the statement, and the general path makes that record a dead letter', { timeout: 120_000 }, async (t) => {
  const { db, writer, records } = await copyWriter(t, 'continue');
  const apply = (set: ReturnType<typeof records>) => writer.apply(set, writer.scan(set));
  await apply(records(rows(1, 5)));
  const set = rows(6, 10);
  set[3] = { ...set[3], price: '99999999999.99' };
  assert.deepEqual(await apply(records(set)), { applied: 9, deadLettered: 1, skipped: 0 });
  assert.equal(writer.setsAsOne, 0);
  const ids = (await query<{ id: number }>(db.targetUrl, 'SELECT id::int FROM things ORDER BY id')).map((r) => r.id);
  assert.deepEqual(ids, [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15]);
});

/** What the target should hold after the changes, in order: an upsert keeps the columns its row leaves out. */
function applyModel(model: Map<number, Record<string, unknown>>, list: ThingChange[]): void {
  for (const { op, row: r, omit = [] } of list) {
    const id = r.id as number;
    if (op === 'd') model.delete(id);
    else model.set(id, { ...(omit.length > 0 ? model.get(id) ?? { doc: null } : {}), ...Object.fromEntries(Object.entries(r).filter(([c]) => !omit.includes(c))) });
  }
}

const modelRows = (model: Map<number, Record<string, unknown>>) => expected([...model.values()].sort((a, b) => (a.id as number) - (b.id as number)));
const offsetRows = (url: string) => query<{ partition: number; next: string; applied: string }>(url, 'SELECT partition, next_offset::text AS next, applied::text FROM pgtunnel.consumer_offsets ORDER BY partition');

test('one statement: updates, deletes, a key change, a key twice and an omitted TOASTed column, with the offsets', { timeout: 120_000 }, async (t) => {
  const { db, writer, changes } = await copyWriter(t);
  const apply = (set: RawRecord[]) => writer.apply(set, writer.scan(set));
  const model = new Map<number, Record<string, unknown>>();
  const created = rows(1, 10).map((r): ThingChange => ({ op: 'c', row: r }));
  await apply(changes(created));
  applyModel(model, created);
  assert.equal(writer.setsAsOne, 0, 'a partition never applied has no offset row: the general path');

  const mixed: ThingChange[] = [
    { op: 'u', row: row(2, ' updated') },
    { op: 'd', row: row(3) },
    // a key-changing update: the old key's delete, then the new key's row
    { op: 'd', row: row(4) },
    { op: 'u', row: row(104, ' moved') },
    { op: 'u', row: row(5, ' once') },
    { op: 'u', row: row(5, ' twice') },
    { op: 'c', row: row(11) },
    { op: 'd', row: row(11) },
    { op: 'd', row: row(6) },
    { op: 'c', row: row(6, ' back') },
    // logical capture leaves out a TOASTed value the update did not change: the target keeps it
    { op: 'u', row: { ...row(7, ' toast'), doc: 'ignored' }, omit: ['doc'] },
    { op: 'd', row: row(99) },
  ];
  const set = changes(mixed);
  const tombstones = set.filter((r) => r.value === undefined).length;
  assert.equal(tombstones, 5);
  assert.deepEqual(await apply(set), { applied: mixed.length, deadLettered: 0, skipped: 0 });
  applyModel(model, mixed);
  assert.equal(writer.setsAsOne, 1, 'the mixed set went as one statement');
  const stored = await storedThings(db.targetUrl);
  assert.deepEqual(stored, modelRows(model));
  assert.equal(stored.find((r) => r.id === 7)!.doc, expected([row(7)])[0]!.doc, 'the omitted column kept its value');
  assert.deepEqual(await offsetRows(db.targetUrl), [{ partition: 0, next: String(created.length + set.length), applied: String(created.length + mixed.length) }]);

  // the same records again (a redelivery): the verdict refuses, the general path skips them, nothing changes
  assert.deepEqual(await apply(set), { applied: 0, deadLettered: 0, skipped: set.length });
  assert.equal(writer.setsAsOne, 1);
  assert.deepEqual(await storedThings(db.targetUrl), stored);
});

test('one statement: a parked or lettered key leaves a set of updates and deletes to the general path, which honours it', { timeout: 120_000 }, async (t) => {
  const { db, writer, changes, topic } = await copyWriter(t);
  const apply = (set: RawRecord[]) => writer.apply(set, writer.scan(set));
  await apply(changes(rows(1, 20).map((r): ThingChange => ({ op: 'c', row: r }))));
  await query(db.targetUrl, "INSERT INTO pgtunnel.parked_keys (topic, key, dead_letters) VALUES ($1, '{\"id\":7}', 1)", [topic]);
  const parked = await apply(changes([{ op: 'u', row: row(7, ' parked') }, { op: 'd', row: row(8) }, { op: 'u', row: row(9, ' updated') }]));
  assert.equal(writer.setsAsOne, 0);
  assert.deepEqual(parked, { applied: 2, deadLettered: 1, skipped: 0 }, 'the parked key 7 became a dead letter, the others applied');
  const named = async (ids: number[]) => (await query<{ id: number; name: string }>(db.targetUrl, 'SELECT id::int, name FROM things WHERE id = ANY($1) ORDER BY id', [ids]));
  assert.deepEqual(await named([7, 8, 9]), [{ id: 7, name: row(7).name }, { id: 9, name: row(9, ' updated').name }]);

  await query(db.targetUrl, 'DELETE FROM pgtunnel.parked_keys WHERE topic = $1', [topic]);
  await query(db.targetUrl, 'DELETE FROM pgtunnel.lettered_keys WHERE topic = $1', [topic]);
  await query(db.targetUrl, "INSERT INTO pgtunnel.lettered_keys (topic, key, partition, dead_letters) VALUES ($1, '{\"id\":12}', 0, 1)", [topic]);
  const set = changes([{ op: 'd', row: row(11) }, { op: 'u', row: row(12, ' lettered') }]);
  assert.equal((await apply(set)).applied, 2);
  assert.equal(writer.setsAsOne, 0);
  const [lettered] = await query<{ applied_offset: string }>(db.targetUrl, "SELECT applied_offset::text FROM pgtunnel.lettered_keys WHERE topic = $1 AND key = '{\"id\":12}'", [topic]);
  assert.equal(lettered!.applied_offset, String(set.at(-1)!.offset), "the supersede guard moved to key 12's applied offset");

  await query(db.targetUrl, 'DELETE FROM pgtunnel.lettered_keys WHERE topic = $1', [topic]);
  assert.equal((await apply(changes([{ op: 'u', row: row(13, ' free') }, { op: 'd', row: row(14) }]))).applied, 2);
  assert.equal(writer.setsAsOne, 1, 'with nothing parked or lettered the set goes as one statement');
  assert.deepEqual(await named([13, 14]), [{ id: 13, name: row(13, ' free').name }]);
});

test('one statement: a writer of the partition that commits while the statement awaits its lock: the delete still finds its row', { timeout: 120_000 }, async (t) => {
  const { db, writer, changes, topic } = await copyWriter(t);
  await writer.apply(changes(rows(1, 3).map((r): ThingChange => ({ op: 'c', row: r }))));
  // another writer (a consumer the partition was taken from) applies offset 3, key 50's insert, and holds its lock
  const other = await connect(db.targetUrl, 'target', 'pgtunnel other writer');
  onCleanup(t, () => other.end());
  await other.query('BEGIN');
  await other.query("INSERT INTO things (id, name) VALUES (50, 'the other writer')");
  await other.query('UPDATE pgtunnel.consumer_offsets SET next_offset = 4 WHERE topic = $1 AND partition = 0', [topic]);
  changes([{ op: 'c', row: row(50) }]);
  const set = changes([{ op: 'd', row: row(50) }]);
  assert.equal(set[0]!.offset, 4n);
  const applying = writer.apply(set, writer.scan(set));
  await waitFor('the apply to wait for the offset row', async () => (await query(db.targetUrl, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgtunnel copyPath test' AND wait_event_type = 'Lock'")).length > 0);
  await other.query('COMMIT');
  assert.deepEqual(await applying, { applied: 1, deadLettered: 0, skipped: 0 });
  assert.equal(writer.setsAsOne, 0, "the offset row changed after the statement's snapshot: the general path took the set");
  assert.deepEqual((await storedThings(db.targetUrl)).map((r) => r.id), [1, 2, 3], 'key 50 is deleted');
});

test('one statement: generated small sets leave the same target rows and offsets as the general path (property)', { timeout: 600_000 }, async (t) => {
  const one = await copyWriter(t);
  const general = await copyWriter(t, 'park', false);
  const key = fc.integer({ min: 1, max: 8 });
  const change = fc.record({ op: fc.constantFrom<'c' | 'u' | 'd'>('c', 'u', 'u', 'd'), id: key, suffix: fc.constantFrom('', ' a', ' b\tc'), toast: fc.boolean() });
  const sets = fc.array(fc.array(change, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 4 });
  // keys live in their partition (id % 2), as the producer keys them; both partitions get an offset row first
  const byPartition = (list: ThingChange[]) => [0, 1].flatMap((p) => list.filter((c) => (c.row.id as number) % 2 === p));
  const setOf = (w: typeof one, list: ThingChange[]) => [0, 1].flatMap((p) => w.changes(list.filter((c) => (c.row.id as number) % 2 === p), p));
  const seed: ThingChange[] = [{ op: 'c', row: row(1) }, { op: 'c', row: row(2) }];
  for (const w of [one, general]) await w.writer.apply(setOf(w, seed));
  let round = 0;
  await fc.assert(fc.asyncProperty(sets, async (generated) => {
    round++;
    // each run from empty tables, so a shrunk counterexample is the whole story
    for (const w of [one, general]) await query(w.db.targetUrl, 'TRUNCATE things; UPDATE pgtunnel.consumer_offsets SET applied = 0');
    for (const list of generated) {
      const changeList = byPartition(list.map(({ op, id, suffix, toast }): ThingChange => ({ op, row: row(id, `${suffix} ${round}`), omit: toast && op === 'u' ? ['doc'] : undefined })));
      const asOne = one.writer.setsAsOne;
      const oneSet = setOf(one, changeList);
      const generalSet = setOf(general, changeList);
      assert.deepEqual(await one.writer.apply(oneSet, one.writer.scan(oneSet)), await general.writer.apply(generalSet, general.writer.scan(generalSet)));
      assert.equal(one.writer.setsAsOne, asOne + 1, 'the set went as one statement');
      assert.equal(general.writer.setsAsOne, 0);
      assert.deepEqual(await storedThings(one.db.targetUrl), await storedThings(general.db.targetUrl));
      assert.deepEqual(await offsetRows(one.db.targetUrl), await offsetRows(general.db.targetUrl));
    }
  }), { numRuns: 40 });
});
