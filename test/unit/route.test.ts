import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeRecord, missingKeyCandidates, missingKeyDecisions, route, type Decoded, type RouteTable, type Step } from '../../src/apply/route.js';
import { copyLine } from '../../src/apply/staging.js';
import { readObject } from '../../src/contracts/json.js';
import { compileRules } from '../../src/validate/rules.js';
import type { RawRecord } from '../../src/validate/deadLetters.js';

const types = { emp_id: 'integer', salary: 'integer' };
const table: RouteTable = { table: 'public.employees', key: ['emp_id'], types, rules: [], orderPolicy: 'park' };

function envelope(op: string, id: number, salary = 1): string {
  const row = `{"emp_id":${id},"salary":${salary}}`;
  const source = '{"version":"0","connector":"pgtunnel","name":"p","db":"db1","schema":"public","table":"employees","txId":1,"lsn":2,"snapshot":"false","ts_ms":1000,"schema_version":1}';
  return `{"before":${op === 'd' ? row : 'null'},"after":${op === 'd' || op === 't' ? 'null' : row},"source":${source},"op":"${op}","ts_ms":1}`;
}

let offset = 0;
function raw(op: string, id: number, salary = 1, topic = 'a'): RawRecord {
  return { topic, partition: 0, offset: BigInt(offset++), key: op === 't' ? undefined : `{"emp_id":${id}}`, value: envelope(op, id, salary) };
}

function routed(records: RawRecord[], t: RouteTable = table, parked = new Set<string>(), unrecorded = new Set<RawRecord>()): Step[] {
  const decoded = new Map<RawRecord, Decoded>(records.filter((r) => r.value !== undefined).map((r) => [r, decodeRecord(r, t)]));
  const steps: Step[] = [];
  for (const step of route(records, decoded, () => t, parked, unrecorded)) {
    steps.push(step);
    // the caller parks a key as it records its letter; later records of the key see it
    if (step.kind === 'dead' && step.park) parked.add(`${step.record.topic}\u0000${step.record.key}`);
  }
  return steps;
}

const summary = (steps: Step[]) => steps.map((s) => (s.kind === 'write' ? `write ${s.records.map((r) => r.key).join(' ')}` : s.kind === 'dead' ? `dead ${s.letter.errorClass} ${s.record.key ?? ''}`.trim() : 'truncate'));

test('runs of records between truncates become one write each, in order', () => {
  const steps = routed([raw('c', 1), raw('u', 2), raw('t', 0), raw('c', 3)]);
  assert.deepEqual(summary(steps), ['write {"emp_id":1} {"emp_id":2}', 'truncate', 'write {"emp_id":3}']);
});

test('poison is a dead letter that parks nothing; a tombstone is skipped', () => {
  const poison: RawRecord = { topic: 'a', partition: 0, offset: 99n, key: '{"emp_id":5}', value: '{"op":' };
  const tombstone: RawRecord = { topic: 'a', partition: 0, offset: 100n, key: '{"emp_id":5}', value: undefined };
  const steps = routed([poison, tombstone, raw('c', 5)]);
  assert.deepEqual(summary(steps), ['dead poison {"emp_id":5}', 'write {"emp_id":5}']);
  assert.equal((steps[0] as { park: boolean }).park, false);
});

test('a key parked before the set, or by a letter earlier in it, is parked again; other keys pass', () => {
  const rules = compileRules([{ name: 'positive', column: 'salary', op: '>', value: 0 }], types, 'a');
  const t = { ...table, rules };
  const steps = routed([raw('c', 1), raw('u', 2, -1), raw('u', 2, 5), raw('u', 3)], t, new Set(['a\u0000{"emp_id":1}']));
  assert.deepEqual(summary(steps), ['dead parked {"emp_id":1}', 'dead rule {"emp_id":2}', 'dead parked {"emp_id":2}', 'write {"emp_id":3}']);
});

test('with orderPolicy continue a rule failure parks nothing', () => {
  const rules = compileRules([{ name: 'positive', column: 'salary', op: '>', value: 0 }], types, 'a');
  const steps = routed([raw('u', 2, -1), raw('u', 2, 5)], { ...table, rules, orderPolicy: 'continue' });
  assert.deepEqual(summary(steps), ['dead rule {"emp_id":2}', 'write {"emp_id":2}']);
});

test('a truncate the source did not record is a poison letter and splits nothing', () => {
  const t = raw('t', 0);
  const steps = routed([raw('c', 1), t, raw('c', 2)], table, new Set(), new Set([t]));
  assert.deepEqual(summary(steps), ['dead poison', 'write {"emp_id":1} {"emp_id":2}']);
});

test('a copy line keeps every string exact and has no text form for nested values', () => {
  const row = readObject('{"a":"tab\\there\\\\ and \\n, \\r","b":12.50,"c":null,"d":true,"e":"\\\\x00ff"}', 2);
  assert.equal(copyLine(row, ['a', 'b', 'c', 'd', 'e']), 'tab\\there\\\\ and \\n, \\r\t12.50\t\\N\ttrue\t\\\\x00ff\n');
  assert.equal(copyLine(readObject('{"a":[1,2]}', 2), ['a']), undefined);
  assert.equal(copyLine(readObject('{"a":{"x":1}}', 2), ['a']), undefined);
});

test('missing keys: only updates of keys not created earlier in the step are candidates, and only under dead-letter', () => {
  const strict: RouteTable = { ...table, onMissingKey: 'dead-letter' };
  const step = routed([raw('c', 1), raw('u', 1), raw('u', 2), raw('d', 3), raw('u', 4)], strict)[0]!;
  assert.equal(step.kind, 'write');
  if (step.kind !== 'write') return;
  assert.deepEqual([...missingKeyCandidates(step.records, strict)], ['{"emp_id":2}', '{"emp_id":4}']);
  assert.equal(missingKeyCandidates(step.records, { ...table, onMissingKey: 'upsert' }).size, 0);
  // the target has key 4, not key 2: key 2's update is a parked missing-key letter, the rest is written
  const { kept, dead } = missingKeyDecisions(step.records, new Set(['{"emp_id":2}']), strict);
  assert.deepEqual(kept.map((r) => r.key), ['{"emp_id":1}', '{"emp_id":1}', '{"emp_id":3}', '{"emp_id":4}']);
  assert.deepEqual(summary(dead), ['dead missing-key {"emp_id":2}']);
  assert.equal(dead[0]!.park, true);
  assert.equal(missingKeyDecisions(step.records, new Set(['{"emp_id":2}']), { ...strict, orderPolicy: 'continue' }).dead[0]!.park, false);
});

test('a truncate splits only its own partition: a key of another partition fetched in two runs around it is written once', () => {
  // a set is what several fetches returned: partition 0, partition 1 (with its copy of a truncate), partition 0 again
  const at = (partition: number, r: RawRecord): RawRecord => ({ ...r, partition });
  const steps = routed([at(0, raw('u', 1, 10)), at(1, raw('u', 2)), at(1, raw('t', 0)), at(1, raw('c', 2, 7)), at(0, raw('u', 1, 11))]);
  assert.deepEqual(summary(steps), ['write {"emp_id":1} {"emp_id":1} {"emp_id":2}', 'truncate', 'write {"emp_id":2}']);
  const first = steps[0]!;
  assert.ok(first.kind === 'write' && first.records.map((r) => r.partition).join() === '0,0,1', 'each partition\'s records keep their order');
});
