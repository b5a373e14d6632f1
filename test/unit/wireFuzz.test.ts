import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import fc from 'fast-check';
import { decodeRecord, type RouteTable } from '../../src/apply/route.js';
import { avroType, TableEncoder } from '../../src/contracts/codec.js';
import { checkAvroBounds, AvroBoundsError } from '../../src/contracts/avroBounds.js';
import type { ColumnType } from '../../src/contracts/columnKinds.js';
import { RecordDecoder } from '../../src/contracts/recordDecoder.js';
import { SchemaRegistry } from '../../src/contracts/registry.js';
import { frame } from '../../src/contracts/wireFormat.js';
import { changeToMessages, snapshotRowToMessage, type OutMessage, type TableRef } from '../../src/contracts/envelope.js';
import type { RawRecord } from '../../src/validate/deadLetters.js';
import { registryAnswers, testRegistryUrl, varint } from '../helpers/wireBytes.js';

// scripts/test.mjs starts the suite's registry beside the first files: wait until it answers
before(registryAnswers);

/**
 * The wire format's decoding as the consumer runs it (schema ids checked against the topic's subjects in a
 * real registry, Avro block counts checked, then the strict envelope decoder), fed mutated payloads: each
 * one decodes or is classified poison, nothing else escapes, nothing hangs. Reproduce with PGTUNNEL_FUZZ_SEED.
 */
const seed = Number(process.env.PGTUNNEL_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const runsPerFormat = 5000;


const col = (name: string, kind: ColumnType['kind'], extra: Partial<ColumnType> = {}): ColumnType => ({ name, kind, nullable: true, dims: 0, pgType: kind, ...extra });
// the array first: its union branch and block count are then the payload's first bytes after "before"
const columns = [col('ai', 'int', { dims: 1 }), col('id', 'long', { nullable: false }), col('name', 'string'), col('tags', 'string', { dims: 1 })];
const types = { ai: 'integer[]', id: 'bigint', name: 'text', tags: 'text[]' };

function tableRef(format: string): TableRef {
  const prefix = `wirefuzz${process.pid}x${Date.now()}`;
  return { db: 'db1', schema: 'public', name: format.replace('-', '_'), key: ['id'], topic: `${prefix}.public.${format.replace('-', '_')}`, topicPrefix: prefix };
}

const rowArb = fc.record({
  ai: fc.option(fc.array(fc.option(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })), { maxLength: 6 })),
  id: fc.integer({ min: -1_000_000, max: 1_000_000 }),
  name: fc.option(fc.string({ maxLength: 12 })),
  tags: fc.option(fc.array(fc.option(fc.string({ maxLength: 5 })), { maxLength: 4 })),
});

type Row = typeof rowArb extends fc.Arbitrary<infer R> ? R : never;

/** A valid message of the table: a streamed change (and its tombstone) or a snapshot row. */
function messagesOf(table: TableRef, row: Row, op: 'c' | 'u' | 'd' | 'r'): OutMessage[] {
  const text = JSON.stringify(row);
  const key = `{"id":${row.id}}`;
  if (op === 'r') return [snapshotRowToMessage(table, { row: text, key }, 1, 1)];
  return changeToMessages(table, { changeId: 1, action: op === 'd' ? 'DELETE' : 'UPDATE', txid: '42', capturedMs: 1, row: text, key, schemaVersion: 1 }, op, 1);
}


const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  // a huge count or length where a varint was: what avsc trusted
  fc.record({ kind: fc.constant('count' as const), at: fc.nat(), n: fc.constantFrom(100_000_000n, 2n ** 50n, -(2n ** 50n), 2n ** 62n, 1n << 31n) }),
  // ids of this subject, of the key's, of another topic, of no schema: few, so the registry is asked little
  fc.record({ kind: fc.constant('id' as const), id: fc.constantFrom(0, 1, 2, 3, 999_999, 2 ** 31) }),
);

type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

/** Mutations keep the schema id (bytes 1-4) but for the `id` one; a cut may still leave fewer than 5 bytes. */
function mutate(bytes: Buffer, m: Mutation): Buffer {
  const at = 'at' in m ? m.at % (bytes.length + 1) : 0;
  const inPayload = 5 + ('at' in m ? m.at % Math.max(1, bytes.length - 4) : 0);
  switch (m.kind) {
    case 'flip': {
      const out = Buffer.from(bytes);
      if (inPayload < out.length) out[inPayload] = m.byte;
      return out;
    }
    case 'cut': return bytes.subarray(0, at);
    case 'insert': return Buffer.concat([bytes.subarray(0, inPayload), Buffer.from(m.bytes), bytes.subarray(inPayload)]);
    case 'count': return Buffer.concat([bytes.subarray(0, inPayload), Buffer.from(varint(m.n)), bytes.subarray(inPayload + 1)]);
    case 'id': {
      const out = Buffer.from(bytes);
      if (out.length >= 5) out.writeUInt32BE(m.id, 1);
      return out;
    }
  }
}

/** The consumer's steps for one record: wire decoding, then the strict envelope decoder; each ends decoded or poison. */
async function consume(decoder: RecordDecoder, routeTable: RouteTable, topic: string, key: Buffer | undefined, value: Buffer | undefined): Promise<'decoded' | 'poison' | 'tombstone'> {
  const d = await decoder.decode(topic, key, value);
  if ('poison' in d) return 'poison';
  if (d.value === undefined) return 'tombstone';
  const raw: RawRecord = { topic, partition: 0, offset: 0n, key: d.key, value: d.value, decoded: d.decoded };
  return 'poison' in decodeRecord(raw, routeTable) ? 'poison' : 'decoded';
}

for (const format of ['avro', 'json-schema'] as const) {
  test(`${format}: ${runsPerFormat} mutated payloads each decode or become classified poison, none throws or hangs (seed ${seed})`, { timeout: 300_000 }, async (t) => {
    const registry = new SchemaRegistry({ url: testRegistryUrl() });
    const table = tableRef(format);
    const encoder = new TableEncoder(format, table.topic, registry);
    await encoder.use(1, columns, [columns[1]!]);
    const decoder = new RecordDecoder(registry, () => format);
    const routeTable: RouteTable = { table: table.name, key: ['id'], types, rules: [], orderPolicy: 'park' };
    const tally = { decoded: 0, poison: 0, tombstone: 0, total: 0 };
    let slowest = 0;
    await fc.assert(
      fc.asyncProperty(rowArb, fc.constantFrom('c' as const, 'u' as const, 'd' as const, 'r' as const), mutation, fc.boolean(), async (row, op, m, onKey) => {
        const wire = encoder.encode(messagesOf(table, row, op)[0]!);
        const key = wire.keyBytes ?? (wire.key === undefined ? undefined : Buffer.from(wire.key));
        const value = Buffer.isBuffer(wire.value) ? wire.value : Buffer.from(wire.value!);
        // the unmutated record decodes: the mutations are what is refused, not the encoding
        assert.equal(await consume(decoder, routeTable, table.topic, key, value), 'decoded');
        const started = performance.now();
        const outcome = await consume(decoder, routeTable, table.topic, onKey && key ? mutate(key, m) : key, onKey ? value : mutate(value, m));
        slowest = Math.max(slowest, performance.now() - started);
        tally[outcome]++;
        tally.total++;
      }),
      { seed, numRuns: runsPerFormat },
    );
    assert.equal(tally.total, runsPerFormat);
    assert.equal(tally.decoded + tally.poison + tally.tombstone, tally.total, JSON.stringify(tally));
    assert.ok(tally.poison > runsPerFormat / 10 && tally.decoded > 0, `both outcomes occur: ${JSON.stringify(tally)}`);
    // generous (it includes the registry's answers on a busy machine): a forged count once took hours
    assert.ok(slowest < 5000, `slowest payload took ${slowest.toFixed(0)} ms`);
    t.diagnostic(`${JSON.stringify(tally)}, slowest ${slowest.toFixed(1)} ms`);
  });
}

test('Avro block counts the bytes cannot hold are poison at once: 1e8 and 2^50 items in six bytes', { timeout: 60_000 }, async () => {
  const registry = new SchemaRegistry({ url: testRegistryUrl() });
  const table = tableRef('avro');
  const encoder = new TableEncoder('avro', table.topic, registry);
  await encoder.use(1, columns, [columns[1]!]);
  const decoder = new RecordDecoder(registry, () => 'avro');
  const valueId = (await registry.latest(`${table.topic}-value`))!.id;
  const key = encoder.encode(messagesOf(table, { ai: null, id: 1, name: null, tags: null }, 'c')[0]!).keyBytes!;
  // before: branch 1 (the row); ai: branch 1 (the array); then the block count
  for (const count of [100_000_000n, 2n ** 50n, -(2n ** 50n)]) {
    const value = frame(valueId, Buffer.from([2, 2, ...varint(count), ...(count < 0n ? [2] : []), 2, 0]));
    const started = performance.now();
    const d = await decoder.decode(table.topic, key, value);
    assert.ok('poison' in d && /a block of \d+ (items|bytes)/.test(d.poison), JSON.stringify(d));
    assert.ok(performance.now() - started < 1000, `count ${count} took ${(performance.now() - started).toFixed(0)} ms`);
  }
  // the same walk on its own: arrays of items that take no bytes are capped in number
  const nulls = avroType({ type: 'array', items: 'null' });
  assert.throws(() => checkAvroBounds(nulls, Buffer.from([...varint(2n ** 50n), 0])), AvroBoundsError);
  checkAvroBounds(nulls, Buffer.from([...varint(1000n), 0]));
  assert.deepEqual(nulls.fromBuffer(Buffer.from([...varint(3n), 0])), [null, null, null]);
});
