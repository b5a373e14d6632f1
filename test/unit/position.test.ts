import assert from 'node:assert/strict';
import { test } from 'node:test';
import { advance, isBatchComplete } from '../../src/capture/position.js';

test('a full page keeps the batch snapshot and the last change id, so the next page continues the same batch', () => {
  const next = advance({ prev: '10:12:10', cur: null, lastChangeId: 0 }, '10:20:', 100, 577, 100);
  assert.deepEqual(next, { prev: '10:12:10', cur: '10:20:', lastChangeId: 577 });
  assert.equal(isBatchComplete(next), false);
});

test('a short page completes the batch: its snapshot becomes the checkpoint', () => {
  const next = advance({ prev: '10:12:10', cur: '10:20:', lastChangeId: 577 }, '10:20:', 3, 580, 100);
  assert.deepEqual(next, { prev: '10:20:', cur: null, lastChangeId: 0 });
  assert.equal(isBatchComplete(next), true);
});

test('an empty page moves the checkpoint to the snapshot it read', () => {
  assert.deepEqual(advance({ prev: '5:5:', cur: null, lastChangeId: 0 }, '9:9:', 0, undefined, 100), { prev: '9:9:', cur: null, lastChangeId: 0 });
});
