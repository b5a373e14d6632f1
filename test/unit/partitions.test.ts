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
