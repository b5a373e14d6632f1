import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StoredLetter } from '../../src/dlq/dlqReader.js';
import { isSuperseded } from '../../src/validate/letteredKeys.js';
import { planReplay } from '../../src/dlq/replayOrder.js';

function letter(dlqOffset: number, key: number, originalOffset: number, more: Partial<StoredLetter> = {}): StoredLetter {
  return {
    dlqTopic: 'p.public.employees.dlq',
    partition: 0,
    offset: String(dlqOffset),
    key: JSON.stringify({ emp_id: key }),
    value: '{}',
    errorClass: 'rule',
    message: '',
    original: { topic: 'p.public.employees', partition: 0, offset: String(originalOffset) },
    time: '',
    attempt: 1,
    headers: {},
    ...more,
  };
}

const order = (q: { letter: StoredLetter }[]) => q.map((e) => `${e.letter.original.offset}@${e.letter.offset}`);

test('a key\'s letters replay in original order, however late a failed replay re-queued one', () => {
  // DLQ order: 10 (rule), 20 (parked), then 10 re-queued at DLQ offset 5 with attempt 2.
  const plan = planReplay([letter(1, 7, 10), letter(2, 7, 20, { errorClass: 'parked' }), letter(5, 7, 10, { attempt: 2 })], () => true);
  assert.deepEqual(plan.queues.map(order), [['10@5', '20@2']]);
  assert.deepEqual(plan.copies.map((c) => c.offset), ['1'], 'the older attempt is a copy the new one stands for');
});

test('offsets compare as numbers, keys and tables are separate queues, and a header cannot move a letter', () => {
  const other = letter(3, 7, 9, { dlqTopic: 'p.public.other.dlq', original: { topic: 'p.public.employees', partition: 0, offset: '9' } });
  const plan = planReplay([letter(1, 7, 100), letter(2, 7, 99), letter(4, 8, 5), other], (l) => l.key !== '{"emp_id":8}');
  assert.deepEqual(plan.queues.map(order), [['99@2', '100@1'], ['5@4'], ['9@3']]);
  assert.deepEqual(plan.queues.map((q) => q.map((e) => e.selected)), [[true, true], [false], [true]]);
});

test('poison and the producer\'s bad-action letters order nothing: each is its own queue', () => {
  const plan = planReplay([
    letter(1, 7, 10, { errorClass: 'poison' }),
    letter(2, 7, 3, { errorClass: 'bad-action', original: { topic: 'public.emp_cdc', partition: -1, offset: '3' } }),
    letter(3, 7, 11),
  ], () => true);
  assert.equal(plan.queues.length, 3);
});

test('a letter is superseded only by a newer applied offset in the same partition', () => {
  assert.equal(isSuperseded({ partition: 0, appliedOffset: '20' }, { partition: 0, offset: '10' }), true);
  assert.equal(isSuperseded({ partition: 0, appliedOffset: '5' }, { partition: 0, offset: '10' }), false);
  assert.equal(isSuperseded({ partition: 0, appliedOffset: '10' }, { partition: 0, offset: '10' }), false);
  assert.equal(isSuperseded({ partition: 1, appliedOffset: '20' }, { partition: 0, offset: '10' }), false);
  assert.equal(isSuperseded({ partition: 0, appliedOffset: null }, { partition: 0, offset: '10' }), false);
  assert.equal(isSuperseded(undefined, { partition: 0, offset: '10' }), false);
});
