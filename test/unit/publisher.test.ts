import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CaptureState } from '../../src/capture/stateStore.js';
import { adoptable, type PositionRecord } from '../../src/pipeline/publisher.js';

const state = (prev: string, rows = 0, extra: Partial<CaptureState> = {}): CaptureState => ({
  phase: 'streaming',
  position: { prev, cur: null, lastChangeId: 0 },
  snapshotLastKey: null,
  snapshotRowsDone: rows,
  snapshotRowsTotal: null,
  changesPublished: 0,
  deadLettered: 0,
  updatedAt: '2026-11-26T01:00:00.000Z',
  ...extra,
});

const record = (before: CaptureState, after: CaptureState): PositionRecord => ({
  table: 'public.employees',
  before: { phase: before.phase, snapshotRowsDone: before.snapshotRowsDone, updatedAt: before.updatedAt, prev: before.position.prev, cur: before.position.cur, lastChangeId: before.position.lastChangeId },
  after: { ...after, updatedAt: undefined },
});

test('Kafka committed a batch the source never checkpointed: its state is adopted', () => {
  const stored = state('10:12:10');
  const after = state('10:20:', 0, { changesPublished: 7 });
  assert.deepEqual(adoptable(record(stored, after), stored), { ...after, updatedAt: undefined });
});

test('the source already holds the batch\'s checkpoint, or nothing was committed: nothing to adopt', () => {
  const stored = state('10:12:10');
  const after = state('10:20:');
  assert.equal(adoptable(record(stored, after), after), undefined);
  assert.equal(adoptable(undefined, stored), undefined);
});

test('a source moved on by other means (a snapshot restart, an older record) keeps its own state', () => {
  const older = record(state('1:1:'), state('10:12:10'));
  assert.equal(adoptable(older, state('10:20:')), undefined);
  const restarted = { ...state('10:12:10'), phase: 'snapshot' as const };
  assert.equal(adoptable(record(state('10:12:10', 500, { phase: 'snapshot' }), state('10:20:', 1000)), restarted), undefined);
});

test('a reinstalled capture starts where the first install did, but its record is not adopted', () => {
  const first = state('10:12:10', 0, { phase: 'snapshot' });
  const reinstalled = { ...first, updatedAt: '2026-11-26T02:00:00.000Z' };
  assert.equal(adoptable(record(first, state('10:20:', 500)), reinstalled), undefined);
});

test('a page in the middle of a batch is part of the mark: a record of another page is not adopted', () => {
  const stored = state('10:12:10', 0, { position: { prev: '10:12:10', cur: '10:20:', lastChangeId: 577 } });
  const after = state('10:12:10', 0, { position: { prev: '10:12:10', cur: '10:20:', lastChangeId: 1577 } });
  assert.deepEqual(adoptable(record(stored, after), stored)?.position, after.position);
  assert.equal(adoptable(record(stored, after), { ...stored, position: { ...stored.position, lastChangeId: 99 } }), undefined);
});
