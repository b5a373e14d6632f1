import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compactSet, SetBuffers, setBytesOf } from '../../src/transport/setBytes.js';
import { jsonRecord } from '../../src/pipeline/applyConsumer.js';

/** Two records as the client hands them: views of one fetch response. */
function fetched() {
  const response = Buffer.from('xx{"id":1}{"op":"c"}{"id":2}{"op":"d"}yy');
  const at = (from: number, to: number) => response.subarray(from, to);
  return { response, messages: [
    { topic: 't', partition: 0, offset: 7n, key: at(2, 10), value: at(10, 20) },
    { topic: 't', partition: 1, offset: 9n, key: at(20, 28), value: undefined },
    { topic: 't', partition: 1, offset: 10n, key: undefined, value: Buffer.alloc(0) },
  ] };
}

test('a set is copied out of its fetch response into one buffer of its bytes, records as views of it', () => {
  const { response, messages } = fetched();
  const set = compactSet(messages);
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
  const [first] = compactSet(fetched().messages);
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
  const set = (...values: (string | undefined)[]) => values.map((v, i) => ({ topic: 't', partition: 0, offset: BigInt(i), key: Buffer.from(`k${i}`), value: v === undefined ? undefined : Buffer.from(v) }));
  const first = set('a long value of the first set', 'another one');
  const firstBytes = buffers.take(setBytesOf(first));
  const written = compactSet(first, firstBytes);
  // the next set decoded while the first is written: its own buffer, the first's records intact
  const second = set('two');
  const secondBytes = buffers.take(setBytesOf(second));
  assert.notEqual(secondBytes, firstBytes);
  compactSet(second, secondBytes);
  assert.deepEqual(written.map((m) => m.value?.toString()), ['a long value of the first set', 'another one']);

  buffers.give(firstBytes);
  buffers.give(firstBytes); // given back twice: still one place, never handed to two sets
  const third = set('3', undefined, '');
  const reused = buffers.take(setBytesOf(third));
  assert.equal(reused, firstBytes, 'the first set\'s buffer serves a later set');
  assert.notEqual(buffers.take(8), firstBytes, 'a buffer given back twice is handed out once');
  const records = compactSet(third, reused);
  assert.deepEqual(records.map((m) => [m.key?.toString(), m.value?.toString()]), [['k0', '3'], ['k1', undefined], ['k2', '']], 'exactly this set\'s bytes, nothing of the first set\'s');

  const big = buffers.take(65);
  assert.equal(big.length, 65, 'a set larger than the buffers (one big record) gets its own');
  buffers.give(big);
  assert.notEqual(buffers.take(10), big, 'and it is not kept');
});
