import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PagesInFlight } from '../../src/pipeline/pagesInFlight.js';

function ack() {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const acked = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  acked.catch(() => {});
  return { acked, resolve, reject };
}

/** Two pages in flight, numbered 1 and 2, with the handles that settle their acks. */
function twoPages() {
  const pages = new PagesInFlight<number>(2);
  const [first, second] = [ack(), ack()];
  pages.add(first.acked, 1);
  pages.add(second.acked, 2);
  return { pages, first, second };
}

test('pages in flight: a later page acknowledged first is released only after the earlier one, in page order', async () => {
  const { pages, first, second } = twoPages();
  assert.equal(pages.full, true);
  const released: number[] = [];
  second.resolve();
  await second.acked;
  await pages.release((n) => released.push(n));
  assert.equal(released.length, 0, 'the second page acknowledged, the first not: nothing may be checkpointed');
  first.resolve();
  await pages.oldest();
  await pages.release((n) => released.push(n));
  assert.deepEqual(released, [1, 2]);
  assert.equal(pages.empty, true);
});

test('pages in flight: a failed page fails the release, and no page after it is released', async () => {
  const { pages, first, second } = twoPages();
  second.resolve();
  first.reject(new Error('broker refused'));
  const released: number[] = [];
  await assert.rejects(pages.drain((n) => released.push(n)), /broker refused/);
  assert.equal(released.length, 0);
});

test('pages in flight: outstanding says, while a page is released, whether a later one still waits for its ack', async () => {
  const { pages, first, second } = twoPages();
  first.resolve();
  await pages.oldest();
  const seen: boolean[] = [];
  await pages.release(() => seen.push(pages.outstanding));
  assert.deepEqual(seen, [true]);
  second.resolve();
  await pages.drain(() => seen.push(pages.outstanding));
  assert.deepEqual(seen, [true, false]);
});
