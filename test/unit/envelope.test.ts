import assert from 'node:assert/strict';
import { test } from 'node:test';
import { changeToMessages, decodeEnvelope, keyOf, PoisonError, snapshotRowToMessage } from '../../src/transport/envelope.js';

const table = { db: 'db1', schema: 'public', name: 'employees', key: ['emp_id'], topic: 'pgtunnel.public.employees' };
const row = { emp_id: 7, first_name: 'Ada', last_name: 'Lovelace', dob: '1990-12-10', city: 'London', salary: 20000 };

test('an insert becomes one keyed envelope with the row in "after"', () => {
  const [m, ...rest] = changeToMessages(table, { changeId: 88, action: 'INSERT', txid: '1234', capturedMs: 1700000000000.4, row }, 'c', 1);
  assert.equal(rest.length, 0);
  assert.equal(m!.key, '{"emp_id":7}');
  const e = JSON.parse(m!.value!);
  assert.equal(e.op, 'c');
  assert.deepEqual(e.after, row);
  assert.equal(e.before, null);
  assert.deepEqual(e.source, { db: 'db1', schema: 'public', table: 'employees', txid: '1234', changeId: '88', snapshot: false, tsMs: 1700000000000 });
});

test('a delete carries the row in "before" and is followed by a tombstone', () => {
  const messages = changeToMessages(table, { changeId: 9, action: 'DELETE', txid: '5', capturedMs: 0, row }, 'd', 1);
  assert.equal(messages.length, 2);
  assert.equal(JSON.parse(messages[0]!.value!).before.emp_id, 7);
  assert.equal(messages[1]!.value, undefined);
  assert.equal(messages[1]!.key, messages[0]!.key);
});

test('keys keep the key columns in key order', () => {
  assert.equal(keyOf({ b: 2, a: 1, c: 3 }, ['b', 'a']), '{"b":2,"a":1}');
});

test('decode accepts our envelopes and rejects poison with a reason', () => {
  const m = snapshotRowToMessage(table, row, 5);
  assert.equal(decodeEnvelope(m.key, m.value!).op, 'r');
  assert.throws(() => decodeEnvelope(m.key, 'not json'), PoisonError);
  assert.throws(() => decodeEnvelope(m.key, '{"op":"x","after":{}}'), /unknown op/);
  assert.throws(() => decodeEnvelope(m.key, '{"op":"c","after":null}'), /needs a row/);
  assert.throws(() => decodeEnvelope('{"emp_id":8}', m.value!), /does not match/);
  assert.throws(() => decodeEnvelope(undefined, m.value!), /no key/);
});
