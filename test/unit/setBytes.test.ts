import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SetBuffers } from '../../src/transport/setBytes.js';
import { RecordSpans } from '../../src/transport/recordWalk.js';
import { jsonRecord } from '../../src/pipeline/applyConsumer.js';

/** Three records as the reader walks them: spans of one fetch response (-1: a null key or value). */
function fetched() {
  const response = Buffer.from('xx{"id":1}{"op":"c"}{"id":2}{"op":"d"}yy');
  const spans = new RecordSpans();
  spans.addSource(response, 't', 0);
  spans.add(2, 8, 10, 10, 7);
  spans.addSource(response, 't', 1);
  spans.add(20, 8, 0, -1, 9);
  spans.add(0, -1, 0, 0, 10);
  return { response, spans };
}

/** Records of partition 0 as spans of one response each: `k<i>` keys, the values given. */
function spansOf(...values: (string | undefined)[]): RecordSpans {
  const spans = new RecordSpans();
  values.forEach((v, i) => {
    const key = `k${i}`;
    spans.addSource(Buffer.from(key + (v ?? '')), 't', 0);
    spans.add(0, key.length, key.length, v === undefined ? -1 : Buffer.byteLength(v), i);
  });
  return spans;
}

test('a set is copied out of its fetch response into one buffer of its bytes, records as views of it', () => {
  const { response, spans } = fetched();
  const set = spans.take(3, Buffer.allocUnsafeSlow(spans.bytes));
  const own = set[0]!.key!.buffer;
  assert.notEqual(own, response.buffer, 'no record keeps the fetch response alive');
  for (const m of set) for (const b of [m.key, m.value]) if (b) assert.equal(b.buffer, own);
  assert.equal(own.byteLength, 8 + 10 + 8, 'exactly the keys and values, nothing of the response around them');
  response.fill(0); // the response's memory reused: the set keeps its own bytes
  assert.deepEqual(set.map((m) => [m.topic, m.partition, m.offset, m.key?.toString(), m.value?.toString()]), [
    ['t', 0, 7n, '{"id":1}', '{"op":"c"}'],
    ['t', 1, 9n, '{"id":2}', undefined],
    ['t', 1, 10n, undefined, ''],
  ]);
});

test('a JSON record makes its value text only when asked, and a spread copy carries it', () => {
  const { spans } = fetched();
  const [first] = spans.take(1, Buffer.alloc(spans.bytes));
  const record = jsonRecord(first!);
  assert.equal(record.key, '{"id":1}');
  assert.ok(Object.getOwnPropertyDescriptor(record, 'value')?.get, 'the text is made on reading, not on arrival');
  assert.equal(record.valueBytes!.toString(), '{"op":"c"}');
  assert.equal(record.keyBytes!.toString(), '{"id":1}');
  const copy = { ...record, key: 'k' };
  assert.equal(copy.value, '{"op":"c"}');
  assert.equal(record.value, '{"op":"c"}');
  assert.equal(jsonRecord({ topic: 't', partition: 0, offset: 1n, key: undefined, value: undefined }).value, undefined);
});

test('set buffers: one per set in use, given back ones reused, and a later set shows none of an earlier set\'s bytes', () => {
  const buffers = new SetBuffers(64);
  const first = spansOf('a long value of the first set', 'another one');
  const firstBytes = buffers.take(first.bytes);
  const written = first.take(2, firstBytes);
  // the next set decoded while the first is written: its own buffer, the first's records intact
  const second = spansOf('two');
  const secondBytes = buffers.take(second.bytes);
  assert.notEqual(secondBytes, firstBytes);
  second.take(1, secondBytes);
  assert.deepEqual(written.map((m) => m.value?.toString()), ['a long value of the first set', 'another one']);

  buffers.give(firstBytes);
  buffers.give(firstBytes); // given back twice: still one place, never handed to two sets
  const third = spansOf('3', undefined, '');
  const reused = buffers.take(third.bytes);
  assert.equal(reused, firstBytes, 'the first set\'s buffer serves a later set');
  assert.notEqual(buffers.take(8), firstBytes, 'a buffer given back twice is handed out once');
  const records = third.take(3, reused);
  assert.deepEqual(records.map((m) => [m.key?.toString(), m.value?.toString()]), [['k0', '3'], ['k1', undefined], ['k2', '']], 'exactly this set\'s bytes, nothing of the first set\'s');

  const big = buffers.take(65);
  assert.equal(big.length, 65, 'a set larger than the buffers (one big record) gets its own');
  buffers.give(big);
  assert.notEqual(buffers.take(10), big, 'and it is not kept');
});

test('a set taken from the spans leaves the rest in order for the next, within the record and byte bounds', () => {
  const spans = spansOf('aaaa', 'bb', 'cccccc', 'd');
  assert.deepEqual(spans.fitting(10, 10), { count: 2, bytes: 10 }, 'records until the next would pass the byte bound');
  assert.deepEqual(spans.fitting(1, 100), { count: 1, bytes: 6 }, 'and the record bound');
  assert.deepEqual(spans.fitting(10, 1), { count: 1, bytes: 6 }, 'one larger record goes alone');
  const first = spans.take(2, Buffer.alloc(10));
  assert.deepEqual(first.map((r) => [r.offset, r.value?.toString()]), [[0n, 'aaaa'], [1n, 'bb']]);
  assert.equal(spans.count, 2);
  assert.equal(spans.bytes, 8 + 3);
  const rest = spans.take(2, Buffer.alloc(spans.bytes));
  assert.deepEqual(rest.map((r) => [r.offset, r.key?.toString(), r.value?.toString()]), [[2n, 'k2', 'cccccc'], [3n, 'k3', 'd']]);
  assert.equal(spans.bytes, 0);
});
