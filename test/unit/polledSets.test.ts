import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { maxSetBytes, PolledSets } from '../../src/pipeline/applyConsumer.js';
import { maxFetchBytes } from '../../src/transport/fetchReader.js';

test('idle waits leave no abort listener behind (the consumer waits thousands of times a minute)', async () => {
  const stream = new PassThrough({ objectMode: true });
  const sets = new PolledSets<number>(stream, 100);
  const controller = new AbortController();
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  try {
    for (let i = 0; i < 2000; i++) {
      // take() waits on an empty buffer; the write arrives while it waits
      const taken = sets.take(controller.signal);
      stream.write(i);
      const set = await taken;
      assert.deepEqual(set?.messages, [i]);
    }
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
    const waiting = sets.take(controller.signal);
    controller.abort();
    assert.equal(await waiting, undefined);
    assert.deepEqual(warnings.filter((w) => w === 'MaxListenersExceededWarning'), []);
  } finally {
    process.off('warning', onWarning);
  }
});

test('a set is bounded in bytes as well as in messages; one record larger than the bound still forms a set', async () => {
  const stream = new PassThrough({ objectMode: true });
  const sets = new PolledSets<string>(stream, 1000, (m) => m.length, 100);
  const signal = new AbortController().signal;
  for (const m of ['a'.repeat(40), 'b'.repeat(40), 'c'.repeat(40), 'd'.repeat(500), 'e']) stream.write(m);
  assert.ok(stream.isPaused(), 'the stream pauses once the buffer holds the byte bound');
  assert.deepEqual((await sets.take(signal))?.messages.map((m) => m[0]), ['a', 'b']);
  assert.deepEqual((await sets.take(signal))?.messages.map((m) => m[0]), ['c']);
  assert.deepEqual((await sets.take(signal))?.messages.map((m) => m[0]), ['d']);
  assert.deepEqual((await sets.take(signal))?.messages.map((m) => m[0]), ['e']);
});

test('memory bounds of the consumer (issue 21 item 5): fetches of at most 2 MB, a set of at most 4 MB taken whole from the buffered bytes', async () => {
  assert.ok(maxFetchBytes <= 2 * 1024 * 1024, 'one fetch response is decoded whole: it stays small');
  assert.ok(maxSetBytes <= 4 * 1024 * 1024, 'one set writing, one decoding and the buffer stay a few MB');
  // with the default bounds, 40 records of 1 MB: the stream pauses at the byte bound, and a set never exceeds it
  const stream = new PassThrough({ objectMode: true, highWaterMark: 1 });
  const sets = new PolledSets<Buffer>(stream, 1000, (m) => m.length);
  const mb = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < 40; i++) stream.write(mb);
  assert.ok(stream.isPaused(), 'the stream pauses at the set byte bound');
  const set = await sets.take(new AbortController().signal);
  assert.equal(set!.messages.length * mb.length, maxSetBytes);
});
