import assert from 'node:assert/strict';
import { test } from 'node:test';
import { changeToMessages, checkKeyForm, decodeEnvelope, keyOfImage, pgtunnelVersion, PoisonError, snapshotRowToMessage } from '../../src/contracts/envelope.js';
import { JsonNumber } from '../../src/contracts/json.js';

const table = { db: 'db1', schema: 'public', name: 'employees', key: ['emp_id'], topic: 'pgtunnel.public.employees', topicPrefix: 'pgtunnel' };
const row = '{"emp_id":7,"first_name":"Ada","last_name":"Lovelace","dob":"1990-12-10","city":"London","salary":20000}';
const change = (action: string, changeId: number) => ({ changeId, action, txid: '1234', capturedMs: 1700000000000.4, row, key: '{"emp_id":7}', schemaVersion: 2 });

test('an insert becomes one keyed envelope with the row text in "after", unchanged', () => {
  const [m, ...rest] = changeToMessages(table, change('INSERT', 88), 'c', 1);
  assert.equal(rest.length, 0);
  assert.equal(m!.key, '{"emp_id":7}');
  assert.ok(m!.value!.includes(`"after":${row}`));
  const e = JSON.parse(m!.value!);
  assert.equal(e.op, 'c');
  assert.equal(e.before, null);
  assert.equal(e.ts_ms, 1);
  assert.deepEqual(e.source, { version: pgtunnelVersion, connector: 'pgtunnel', name: 'pgtunnel', ts_ms: 1700000000000, snapshot: 'false', db: 'db1', schema: 'public', table: 'employees', txId: 1234, lsn: 88, schema_version: 2 });
  assert.deepEqual(Object.keys(e), ['before', 'after', 'source', 'op', 'ts_ms'], "Debezium's field order");
  const decoded = decodeEnvelope(m!.key, m!.value!, ['emp_id']);
  assert.deepEqual(decoded.source, { version: pgtunnelVersion, connector: 'pgtunnel', name: 'pgtunnel', db: 'db1', schema: 'public', table: 'employees', txId: '1234', lsn: '88', snapshot: 'false', tsMs: 1700000000000, schemaVersion: 2 });
});

test('a delete carries the row in "before" and is followed by a tombstone', () => {
  const messages = changeToMessages(table, change('DELETE', 9), 'd', 1);
  assert.equal(messages.length, 2);
  assert.equal(JSON.parse(messages[0]!.value!).before.emp_id, 7);
  assert.equal(messages[1]!.value, undefined);
  assert.equal(messages[1]!.key, messages[0]!.key);
});

test('values beyond 2^53 and beyond float precision survive the round trip exactly', () => {
  const big = '{"id":9223372036854775807,"n":1.23456789012345678901234567890,"f":-0,"j":{"b":1, "2":0}}';
  const m = snapshotRowToMessage({ ...table, key: ['id'] }, { row: big, key: '{"id":9223372036854775807}' }, 1, 5);
  const e = decodeEnvelope(m.key, m.value!, ['id']);
  assert.equal(e.after!.text, big);
  assert.equal((e.after!.values.get('id') as JsonNumber).text, '9223372036854775807');
  assert.equal(keyOfImage(e.after!, ['id']), '{"id":9223372036854775807}');
});

test('decode accepts our envelopes and rejects poison with a reason', () => {
  const m = snapshotRowToMessage(table, { row, key: '{"emp_id":7}' }, 1, 5);
  assert.equal(decodeEnvelope(m.key, m.value!, ['emp_id']).op, 'r');
  assert.equal(JSON.parse(snapshotRowToMessage(table, { row, key: '{"emp_id":7}' }, 1, 5, true).value!).source.snapshot, 'last');
  // a signalled (incremental) snapshot's rows say so, as Debezium's do, the last one included
  for (const last of [false, true]) {
    const incremental = snapshotRowToMessage(table, { row, key: '{"emp_id":7}' }, 1, 5, last, true);
    assert.equal(decodeEnvelope(incremental.key, incremental.value!, ['emp_id']).source.snapshot, 'incremental');
  }
  const source = '"source":{"version":"1","connector":"pgtunnel","name":"p","ts_ms":1,"snapshot":"true","db":"d","schema":"public","table":"employees","txId":null,"lsn":null}';
  assert.throws(() => decodeEnvelope(m.key, 'not json'), PoisonError);
  assert.throws(() => decodeEnvelope(m.key, `{"op":"x","after":{},${source},"ts_ms":1}`), /unknown op/);
  assert.throws(() => decodeEnvelope(m.key, `{"op":"c","after":null,${source},"ts_ms":1}`), /needs a row/);
  assert.throws(() => decodeEnvelope(m.key, m.value!.replace('"snapshot":"true"', '"snapshot":true')), /snapshot/);
  assert.throws(() => decodeEnvelope(m.key, m.value!.replace('"txId":null', '"txId":"12"')), /txId/);
  assert.throws(() => decodeEnvelope('{"emp_id":1}', '{"op":"d","before":{"emp_id":1}}'), /source/);
  assert.throws(() => decodeEnvelope('{"emp_id":8}', m.value!), /does not match/);
  assert.throws(() => decodeEnvelope('{"emp_id":"7"}', m.value!), /does not match/);
  assert.throws(() => decodeEnvelope('{"emp_id":7,"x":1}', m.value!, ['emp_id']), /exactly the key/);
  assert.throws(() => decodeEnvelope(undefined, m.value!), /no key/);
  assert.throws(() => decodeEnvelope(m.key, `${'['.repeat(4000)}${']'.repeat(4000)}`), PoisonError);
  const deep = `{"op":"c","after":{"emp_id":7,"j":${'['.repeat(4000)}${']'.repeat(4000)}},${source},"ts_ms":1}`;
  assert.throws(() => decodeEnvelope(m.key, deep), /deeper/);
  assert.throws(() => decodeEnvelope(m.key, m.value!, ['emp_id'], { maxBytes: 10, maxDepth: 64 }), /larger than/);
  assert.throws(() => decodeEnvelope(m.key, m.value!.replace('"op":"r"', '"op":"r","op":"t"')), /duplicate/);
});

test('a key spelled with escapes or spaces has one canonical form', () => {
  const r = '{"name":"A\\u0062","n":1}';
  const m = snapshotRowToMessage({ ...table, key: ['name'] }, { row: r, key: '{ "name" : "Ab" }' }, 1, 5);
  const e = decodeEnvelope(m.key, m.value!, ['name']);
  assert.equal(keyOfImage(e.after!, ['name']), '{"name":"Ab"}');
});

test('a key value must have the form row_to_json writes for its column type, so one row has one canonical key', () => {
  const types = { emp_id: 'integer', code: 'character varying(10)', ok: 'boolean', n: 'numeric' };
  const decode = (key: string, row: string, columns: string[]) => {
    const e = decodeEnvelope(key, `{"op":"c","before":null,"after":${row},"source":{"version":"1","connector":"pgtunnel","name":"p","ts_ms":1,"snapshot":"false","db":"d","schema":"s","table":"t","txId":1,"lsn":2},"ts_ms":1}`, columns);
    checkKeyForm(e.after!, columns, types);
    return keyOfImage(e.after!, columns);
  };
  assert.equal(decode('{"emp_id":7}', '{"emp_id":7}', ['emp_id']), '{"emp_id":7}');
  for (const spelled of ['"7"', '7.0', '7e0', '1E+1', '-0', 'true']) {
    assert.throws(() => decode(`{"emp_id":${spelled}}`, `{"emp_id":${spelled}}`, ['emp_id']), PoisonError, spelled);
  }
  // a string escaped another way is the same string: one canonical key
  assert.equal(decode('{"code":"\\u0037"}', '{"code":"7"}', ['code']), '{"code":"7"}');
  assert.throws(() => decode('{"code":7}', '{"code":7}', ['code']), PoisonError);
  assert.throws(() => decode('{"ok":"t"}', '{"ok":"t"}', ['ok']), PoisonError);
  assert.equal(decode('{"n":7.0}', '{"n":7.0}', ['n']), '{"n":7.0}', 'numeric keys are not checked');
});
