import assert from 'node:assert/strict';
import { test } from 'node:test';
import { partitionOf } from '../../src/transport/partitions.js';

test('partitions follow the Java client (murmur2 with the sign bit masked)', () => {
  // Values from org.apache.kafka.common.utils.Utils.murmur2 for these UTF-8 keys (Kafka's own test vectors).
  const javaMurmur2: Record<string, number> = { '21': -973932308, foobar: -790332482, 'a-little-bit-long-string': -985981536 };
  for (const [key, hash] of Object.entries(javaMurmur2)) assert.equal(partitionOf(key, 1 << 30), (hash & 0x7fffffff) % (1 << 30), key);
});

test('a key always maps to the same partition within range', () => {
  for (let id = 0; id < 1000; id++) {
    const p = partitionOf(JSON.stringify({ emp_id: id }), 3);
    assert.ok(p >= 0 && p < 3);
    assert.equal(p, partitionOf(JSON.stringify({ emp_id: id }), 3));
  }
});

test('the 32-bit murmur2 gives the Kafka client library\'s partition for every key length and for non-ASCII keys', async () => {
  const { murmur2 } = await import('@platformatic/kafka');
  const keys = ['', 'a', 'ab', 'abc', 'abcd', '{"emp_id":7}', '{"name":"Zoë ✓ 𝄞"}', 'x'.repeat(5000)];
  for (let id = -5; id < 3000; id += 7) keys.push(JSON.stringify({ emp_id: id, k: 'é'.repeat(id % 5 < 0 ? 0 : id % 5) }));
  for (const key of keys) {
    for (const n of [1, 3, 7, 1 << 30]) assert.equal(partitionOf(key, n), (murmur2(Buffer.from(key)) & 0x7fffffff) % n, `${key} over ${n}`);
    assert.equal(partitionOf(Buffer.from(key), 3), partitionOf(key, 3));
  }
});
