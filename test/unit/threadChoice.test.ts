import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { chooseThreads, describeThreads } from '../../src/pipeline/threadChoice.js';
import { formatStatus, type StatusReport } from '../../src/report/status.js';

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

test('pgtunnel status names where each running process has its sides', () => {
  const sides = describeThreads(chooseThreads('auto', 2), 2);
  const report: StatusReport = {
    phase: 'streaming', problems: [], tables: [], partitions: [], lag: 0, lastApplyLatencyMs: null, lastAppliedAt: null,
    counts: { captured: 0, snapshotRows: 0, applied: 0, deadLettered: 0, inFlight: 0, poison: 0 },
    processes: [{ pid: 4242, role: 'all', sides, startedAt: '2026-12-07T19:00:00.000Z', parts: {} }, { pid: 4243, role: 'consumer', startedAt: '2026-12-07T19:00:00.000Z', parts: {} }],
    errors: [],
  };
  const lines = formatStatus(report).split('\n');
  assert.ok(lines.includes(`pid 4242 role all: sides on ${sides}`), lines.join('\n'));
  assert.ok(!lines.some((l) => l.startsWith('pid 4243 role')), 'a process of an older version, which says nothing of its sides, gets no line');
});
