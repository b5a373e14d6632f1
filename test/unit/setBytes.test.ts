import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compactSet } from '../../src/transport/setBytes.js';
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
