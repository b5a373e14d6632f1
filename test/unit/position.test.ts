import assert from 'node:assert/strict';
import { test } from 'node:test';
import { advance, isBatchComplete, nextPageSize } from '../../src/capture/position.js';

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

test('pages double while a batch continues, and a batch resumed after a restart never reads with a zero limit', () => {
  const fresh = { prev: '5:5:', cur: null, lastChangeId: 0 };
  const midBatch = { prev: '5:5:', cur: '9:9:', lastChangeId: 120 };
  assert.equal(nextPageSize(fresh, 16000, 2000), 2000);
  assert.equal(nextPageSize(midBatch, 2000, 2000), 4000);
  assert.equal(nextPageSize(midBatch, 8000, 2000), 16000);
  assert.equal(nextPageSize(midBatch, 16000, 2000), 16000);
  // a restarted producer remembers no previous page size
  assert.equal(nextPageSize(midBatch, 0, 2000), 4000);
  assert.throws(() => advance(midBatch, '9:9:', 0, undefined, 0), /page size must be positive/);
});
