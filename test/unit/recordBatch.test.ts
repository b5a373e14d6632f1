import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Reader, createRecordsBatch, jsCRC32C, readRecordsBatch } from '@platformatic/kafka';
import { RecordBatchEncoder, batchHeaderBytes, varintBytes, type BatchWriter, type Bytes, type RecordBytes } from '../../src/transport/recordBatch.js';

const writer: BatchWriter = { producerId: 4242n, producerEpoch: 3, baseSequence: 17, transactional: false, compression: 'none', timestamp: 1_765_000_000_123 };
const asBuffer = (b: Bytes | undefined) => (b === undefined ? null : Buffer.from(b as never));

// Texts around the varint boundaries (zigzag: 63|64, 8191|8192 bytes) and multi-byte UTF-8, bytes as Buffers.
const text = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 80 }), fc.constantFrom(63, 64, 8191, 8192).map((n) => 'x'.repeat(n)));
const bytes = fc.oneof(text, fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), fc.constant(undefined));
const record = fc.record({ key: bytes, value: bytes, headers: fc.option(fc.array(fc.tuple(fc.string(), fc.string()), { maxLength: 3 }).map((h) => new Map(h)), { nil: undefined }) });
const records = fc.array(record, { minLength: 1, maxLength: 40 });

function assertDecodes(batch: Buffer, input: RecordBytes[], w: BatchWriter): void {
  const decoded = readRecordsBatch(Reader.from(batch));
  assert.equal(decoded.magic, 2);
  assert.equal(batch.readInt32BE(8), batch.length - 12);
  assert.equal(decoded.crc, jsCRC32C(batch.subarray(21)), 'CRC32C over attributes to the end');
  assert.equal(decoded.producerId, w.producerId);
  assert.equal(decoded.producerEpoch, w.producerEpoch);
  assert.equal(decoded.firstSequence, w.baseSequence);
  assert.equal(decoded.lastOffsetDelta, input.length - 1);
  assert.equal(decoded.firstTimestamp, BigInt(w.timestamp));
  assert.equal((decoded.attributes & 0b111) === 3, w.compression === 'lz4');
  assert.equal((decoded.attributes & 0x10) !== 0, w.transactional);
  assert.equal(decoded.records.length, input.length);
  decoded.records.forEach((r, i) => {
    const want = input[i]!;
    assert.equal(r.offsetDelta, i);
    assert.equal(r.timestampDelta, 0n);
    assert.deepEqual(r.key, asBuffer(want.key));
    assert.deepEqual(r.value, asBuffer(want.value));
    assert.deepEqual(r.headers.map(([k, v]) => [String(k), String(v)]), [...(want.headers ?? [])]);
  });
}

test('uncompressed batches are byte for byte what @platformatic/kafka builds, but for the leader epoch the broker sets', () => {
  const encoder = new RecordBatchEncoder();
  fc.assert(
    fc.property(records, fc.boolean(), (input, transactional) => {
      const w = { ...writer, transactional };
      const ours = encoder.encode(input, w);
      const messages = input.map((r) => ({
        topic: 't',
        partition: 0,
        key: asBuffer(r.key),
        value: asBuffer(r.value),
        headers: new Map([...(r.headers ?? [])].map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
        timestamp: BigInt(w.timestamp),
      }));
      const sequences = { getWithDefault: () => w.baseSequence };
      const theirs = createRecordsBatch(messages as never, { producerId: w.producerId, producerEpoch: w.producerEpoch, sequences, transactionalId: transactional ? 'tx' : undefined } as never).buffer;
      assert.deepEqual(ours.subarray(16), theirs.subarray(16));
      assert.deepEqual(ours.subarray(0, 12), theirs.subarray(0, 12));
    }),
    { numRuns: 300 },
  );
});

test('lz4 batches round-trip through the client\'s decoder, CRC checked by an independent CRC32C', () => {
  const encoder = new RecordBatchEncoder();
  fc.assert(
    fc.property(records, fc.boolean(), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (input, transactional, baseSequence) => {
      const w: BatchWriter = { ...writer, transactional, baseSequence, compression: 'lz4' };
      assertDecodes(encoder.encode(input, w), input, w);
      // the scratch buffer is reused: a smaller batch after a larger one must not carry its tail
      const one = input.slice(0, 1);
      assertDecodes(encoder.encode(one, w), one, w);
    }),
    { numRuns: 300 },
  );
});

test('varint sizes at their boundaries, negative lengths (null) included', () => {
  const cases: [number, number][] = [[0, 1], [-1, 1], [63, 1], [64, 2], [-64, 1], [-65, 2], [8191, 2], [8192, 3], [1_048_575, 3], [1_048_576, 4], [2 ** 31 - 1, 5], [-(2 ** 31), 5]];
  for (const [n, size] of cases) assert.equal(varintBytes(n), size, String(n));
});

test('a record of 16 MiB and a batch of one empty record both encode', () => {
  const encoder = new RecordBatchEncoder();
  const big = [{ key: '{"id":1}', value: Buffer.alloc(16 * 1024 * 1024, 7) }];
  assertDecodes(encoder.encode(big, { ...writer, compression: 'lz4' }), big, { ...writer, compression: 'lz4' });
  const empty = [{ key: undefined, value: undefined }];
  const batch = encoder.encode(empty, writer);
  assert.equal(batch.length, batchHeaderBytes + 1 + 6);
  assertDecodes(batch, empty, writer);
  assert.throws(() => encoder.encode([], writer), RangeError);
});
