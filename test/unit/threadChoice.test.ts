import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { chooseThreads, describeThreads } from '../../src/pipeline/threadChoice.js';

test('threads: auto runs the sides on the main thread up to 2 cores and in two worker threads from 3', () => {
  for (const cores of [1, 2]) assert.equal(chooseThreads('auto', cores).threads, false, `${cores} cores`);
  for (const cores of [3, 4, 64]) assert.equal(chooseThreads('auto', cores).threads, true, `${cores} cores`);
  assert.equal(describeThreads(chooseThreads('auto', 2), 2), 'the main thread (threads: auto on 2 cores; worker threads from 3 cores)');
  assert.equal(describeThreads(chooseThreads('auto', 8), 2), 'two worker threads (threads: auto on 8 cores)');
  assert.equal(describeThreads(chooseThreads('auto', 8), 1), 'one worker thread (threads: auto on 8 cores)', 'a --role runs one side');
});

test('threads: true or false forces the choice on any host', () => {
  for (const cores of [1, 2, 16]) {
    assert.deepEqual(chooseThreads(true, cores), { threads: true, reason: 'threads: true' });
    assert.deepEqual(chooseThreads(false, cores), { threads: false, reason: 'threads: false' });
  }
});

test('auto without a core count reads this host', () => {
  assert.equal(chooseThreads('auto').threads, availableParallelism() >= 3);
});
