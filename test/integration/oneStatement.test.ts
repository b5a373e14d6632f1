import assert from 'node:assert/strict';
import { test } from 'node:test';
import { query } from '../helpers/services.js';
import { copyWriter, expected, row, storedThings } from '../helpers/byteWriter.js';

/**
 * A small scanned set of new rows as one statement (src/apply/oneStatement.ts) against the real target:
 * values exact, offsets stored with the rows; a stale set, a parked or lettered key, a partition never
 * applied and a refused value each leave the set to the general path, which keeps its guarantees.
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
