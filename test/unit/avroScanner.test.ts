import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import fc from 'fast-check';
import { decodeRecord, type RouteTable } from '../../src/apply/route.js';
import { copyableColumns, copyLine } from '../../src/apply/staging.js';
import { TableStatements } from '../../src/apply/statements.js';
import { CopyOut } from '../../src/contracts/byteScan.js';
import { TableEncoder } from '../../src/contracts/codec.js';
import type { ColumnType } from '../../src/contracts/columnKinds.js';
import { AvroScanner } from '../../src/contracts/avroScanner.js';
import { changeToMessages, snapshotRowToMessage, type Op, type TableRef } from '../../src/contracts/envelope.js';
import { RecordDecoder } from '../../src/contracts/recordDecoder.js';
import { SchemaRegistry } from '../../src/contracts/registry.js';
import { frame } from '../../src/contracts/wireFormat.js';
import { registryAnswers, testRegistryUrl, varint } from '../helpers/wireBytes.js';

// scripts/test.mjs starts the suite's registry beside the first files: wait until it answers
before(registryAnswers);

/**
 * The Avro scanner against the consumer's decoder (a real registry's schemas, avsc, fromAvro, the strict
 * envelope decoder) and staging.ts copyLine: on generated rows of every column kind and on mutated bytes,
 * what it calls a row the decoder accepts with the same op, key and time, and its COPY line is the decoder
 * path's; what it calls poison the decoder refuses. `fallback` (the decoder decides) must stay rare.
 * Reproduce a failure with PGTUNNEL_FUZZ_SEED=<the printed seed>.
 */
const seed = Number(process.env.PGTUNNEL_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

const col = (name: string, kind: ColumnType['kind'], pgType: string, extra: Partial<ColumnType> = {}): ColumnType => ({ name, kind, nullable: true, dims: 0, pgType, ...extra });
const columns = [
  col('k', 'long', 'bigint', { nullable: false }), col('u', 'string', 'text', { nullable: false }), col('i', 'int', 'integer'), col('f', 'float', 'real'),
  col('dd', 'double', 'double precision'), col('dec', 'decimal', 'numeric(12,2)', { precision: 12, scale: 2 }), col('n', 'numeric', 'numeric'),
  col('b', 'boolean', 'boolean'), col('s', 'string', 'text'), col('dt', 'date', 'date'), col('ts', 'timestamp', 'timestamp without time zone'),
  col('tz', 'timestamptz', 'timestamp with time zone'), col('tm', 'time', 'time without time zone'), col('uu', 'uuid', 'uuid'), col('j', 'json', 'jsonb'),
  col('by', 'bytes', 'bytea'), col('e', 'enum', 'text', { allowed: ['a', 'b'] }), col('my col', 'string', 'text'),
];
const key = [columns[0]!, columns[1]!];
const types: Record<string, string> = Object.fromEntries([...columns.map((c) => [c.name, c.pgType]), ['g', 'integer']]);
const statements = new TableStatements({ schema: 'public', name: 'kinds', columns: [...columns.map((c) => c.name), 'g'], key: ['k', 'u'], types, generated: ['g'], identityAlways: [] });
const routeTable: RouteTable = { table: 'public.kinds', key: ['k', 'u'], types, rules: [], orderPolicy: 'park' };

const prefix = `avroscan${process.pid}x${Date.now()}`;
const table: TableRef = { db: 'db1', schema: 'public', name: 'kinds', key: ['k', 'u'], topic: `${prefix}.public.kinds`, topicPrefix: prefix };

const text = fc.oneof(fc.string({ maxLength: 8 }), fc.string({ unit: 'grapheme', maxLength: 4 }), fc.constantFrom('a\tb', 'back\\slash', 'new\nline', 'cr\r', 'q"uote', '\\N', ''));
const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const date = fc.tuple(fc.integer({ min: 1, max: 9999 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 28 }), fc.boolean()).map(([y, m, d, bc]) => `${pad(y, 4)}-${pad(m)}-${pad(d)}${bc ? ' BC' : ''}`);
const time = fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 59 }), fc.option(fc.integer({ min: 0, max: 999_999 }))).map(([h, m, s, us]) => `${pad(h)}:${pad(m)}:${pad(s)}${us === null ? '' : `.${String(us).padStart(6, '0').replace(/0+$/, '') || '0'}`}`.replace(/\.0$/, ''));
/** Each column's value as row_to_json writes it (JSON text), null sometimes. */
const values: Record<string, fc.Arbitrary<string>> = {
  i: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map(String),
  f: fc.oneof(fc.float({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? '-0' : String(x))), fc.constantFrom('"NaN"', '"Infinity"', '1e-7')),
  dd: fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? '-0' : String(x))), fc.constantFrom('"-Infinity"', '123456789012345680000')),
  dec: fc.tuple(fc.bigInt({ min: -(10n ** 10n), max: 10n ** 10n }), fc.nat(99)).map(([w, f]) => `${w}.${pad(f)}`),
  n: fc.oneof(fc.bigInt().map(String), fc.constantFrom('"NaN"', '1.500', '-0.000001', '1e5')),
  b: fc.boolean().map(String),
  s: text.map((s) => JSON.stringify(s)),
  dt: fc.oneof(date, fc.constantFrom('infinity', '-infinity')).map((s) => JSON.stringify(s)),
  ts: fc.oneof(fc.tuple(date, time).map(([d, t]) => (d.endsWith(' BC') ? `${d.slice(0, -3)}T${t} BC` : `${d}T${t}`)), fc.constantFrom('infinity')).map((s) => JSON.stringify(s)),
  tz: fc.constantFrom('"2024-02-29T12:34:56.789+01:00"', '"infinity"'),
  tm: time.map((s) => JSON.stringify(s)),
  uu: fc.uuid().map((s) => JSON.stringify(s)),
  j: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(JSON.stringify(v))),
  by: fc.uint8Array({ maxLength: 6 }).map((a) => JSON.stringify(`\\x${Buffer.from(a).toString('hex')}`)),
  e: fc.constantFrom('"a"', '"b"'),
  'my col': text.map((s) => JSON.stringify(s)),
};
const row = fc.record({
  k: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String),
  u: text.map((s) => JSON.stringify(s)),
  ...Object.fromEntries(Object.entries(values).map(([c, a]) => [c, fc.option(a, { freq: 4 })])),
}).map((r) => ({ row: `{${Object.entries(r).map(([c, v]) => `${JSON.stringify(c)}:${v ?? 'null'}`).join(',')}}`, key: `{"k":${r.k},"u":${r.u}}` }));

const mutation = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 5 },
  { arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('count' as const), at: fc.nat(), n: fc.constantFrom(-1n, 3n, 2n ** 40n, -(2n ** 62n), 2n ** 63n) }), weight: 1 },
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

/** A mutation of the payload (the 5-byte frame kept: which schema id is used is the decoder's check, not the scan's). */
function mutate(bytes: Buffer, m: Mutation): Buffer {
  if (!m) return bytes;
  const at = 5 + (m.at % Math.max(1, bytes.length - 4));
  if (m.kind === 'cut') return bytes.subarray(0, Math.min(at, bytes.length));
  if (m.kind === 'insert') return Buffer.concat([bytes.subarray(0, at), Buffer.from(m.bytes), bytes.subarray(at)]);
  if (m.kind === 'count') return Buffer.concat([bytes.subarray(0, at), Buffer.from(varint(m.n)), bytes.subarray(at + 1)]);
  const out = Buffer.from(bytes);
  if (at < out.length) out[at] = m.byte;
  return out;
}

const seen = { row: 0, line: 0, poison: 0, truncate: 0, fallback: 0 };

async function setup() {
  const registry = new SchemaRegistry({ url: testRegistryUrl() });
  const encoder = new TableEncoder('avro', table.topic, registry);
  await encoder.use(1, columns, key);
  const decoder = new RecordDecoder(registry, () => 'avro');
  const scanners = new Map<string, AvroScanner>();
  /** The scanner against the decoder on one record's bytes. */
  const agree = async (keyBytes: Buffer, valueBytes: Buffer, mutated = true): Promise<void> => {
    const d = await decoder.decode(table.topic, keyBytes, valueBytes);
    const pair = decoder.avroPair(table.topic, keyBytes, valueBytes);
    assert.ok(pair, 'both schemas are at hand after a decode');
    let scanner = scanners.get(pair.ids);
    if (!scanner) scanners.set(pair.ids, (scanner = new AvroScanner(statements.scanTable(), pair.value.type, pair.value.schema, pair.key.type, pair.key.schema)));
    assert.ok(scanner.supported, 'the scanner reads the encoder\'s schemas');
    const verdict = scanner.scan(pair.value.payload, pair.key.payload);
    const decoded = 'poison' in d ? undefined : decodeRecord({ topic: table.topic, partition: 0, offset: 0n, key: d.key, value: d.value, decoded: d.decoded }, routeTable);
    const shown = `${keyBytes.toString('hex')} / ${valueBytes.toString('hex').slice(0, 600)}`;
    seen[verdict]++;
    assert.ok(mutated || verdict !== 'fallback', `a record as the encoder wrote it is left to the decoder: ${shown}`);
    if (verdict === 'fallback') return;
    if (decoded === undefined || 'poison' in decoded) {
      assert.equal(verdict, 'poison', `the scanner accepts what the decoder refuses (${'poison' in d ? d.poison : decoded && 'poison' in decoded ? decoded.poison.message : ''}): ${shown}`);
      return;
    }
    assert.equal(verdict, decoded.envelope.op === 't' ? 'truncate' : 'row', `the scanner refuses what the decoder accepts: ${shown}`);
    if (verdict === 'truncate') return;
    assert.equal(scanner.op, decoded.envelope.op);
    assert.equal(scanner.keyText, decoded.key);
    assert.equal(scanner.tsMs, decoded.envelope.source.tsMs);
    const after = decoded.envelope.after;
    if (decoded.envelope.op === 'd' || !after) return;
    const cols = statements.columnsOf(after);
    assert.deepEqual(scanner.lineColumns(), cols);
    assert.equal(scanner.unknownColumns, false);
    const line = copyableColumns(types, cols) ? copyLine(after, cols) : undefined;
    assert.equal(scanner.copyable, line !== undefined, `copyable differs: ${shown}`);
    if (line === undefined) return;
    const out = new CopyOut(8);
    if (!scanner.writeLine(out)) return assert.ok(mutated, `a string as the encoder wrote it is not UTF-8: ${shown}`);
    assert.equal(out.view().toString('hex'), Buffer.from(line).toString('hex'), `COPY line differs: ${line} / ${shown}`);
    seen.line++;
  };
  const encode = (r: { row: string; key: string }, op: Op) => {
    const m = op === 'r' ? snapshotRowToMessage(table, r, 1, 5) : changeToMessages(table, { changeId: 9, action: '', txid: '8', capturedMs: 7, row: r.row, key: r.key, schemaVersion: 1 }, op, 5)[0]!;
    const wire = encoder.encode(m);
    return { key: wire.keyBytes!, value: wire.value as Buffer };
  };
  // the schemas fetched once (a mutated key's decode stops before the value's schema is asked for)
  const first = encode({ row: '{"k":1,"u":"a"}', key: '{"k":1,"u":"a"}' }, 'r');
  assert.ok(!('poison' in (await decoder.decode(table.topic, first.key, first.value))));
  return { agree, encode, decoder, registry };
}

test(`the Avro scanner agrees with the decoder and copyLine on every column kind, mutated or not (seed ${seed})`, { timeout: 120_000 }, async () => {
  const { agree, encode } = await setup();
  await fc.assert(
    fc.asyncProperty(row, fc.constantFrom<Op>('c', 'r', 'r', 'u', 'd'), mutation, fc.boolean(), async (r, op, m, onKey) => {
      const { key, value } = encode(r, op);
      await agree(onKey ? mutate(key, m) : key, onKey ? value : mutate(value, m), m !== undefined);
    }),
    { seed, numRuns: 3000 },
  );
  assert.ok(seen.row > 500 && seen.line > 300 && seen.poison > 100, JSON.stringify(seen));
});

test('crafted Avro bytes are refused as the decoder refuses them', { timeout: 60_000 }, async () => {
  const { agree, encode, registry } = await setup();
  const { key, value } = encode({ row: '{"k":1,"u":"a","n":"NaN"}', key: '{"k":1,"u":"a"}' }, 'r');
  const valueId = value.readUInt32BE(1);
  const before = seen.poison;
  const cases: Buffer[] = [
    Buffer.concat([value, Buffer.from([0])]), // trailing data
    value.subarray(0, value.length - 1), // truncated
    frame(valueId, Buffer.from([4])), // a union branch that does not exist
    frame(valueId, Buffer.from([2, 2, ...varint(-3n)])), // a negative length
    frame(valueId, Buffer.from([0, 2, 2, ...varint(2n ** 40n)])), // a long string length
  ];
  for (const v of cases) await agree(key, v);
  // a key that does not match the row; a key of three fields' bytes
  await agree(encode({ row: '{"k":2,"u":"a"}', key: '{"k":2,"u":"a"}' }, 'r').key, value);
  await agree(Buffer.concat([key, Buffer.from([0])]), value);
  // a numeric that is not one, an op that is not one: fromAvro and the envelope refuse them
  await agree(key, encode({ row: '{"k":1,"u":"a","n":1e5}', key: '{"k":1,"u":"a"}' }, 'r').value);
  assert.ok(seen.poison - before >= cases.length + 3, `every crafted record is poison: ${JSON.stringify(seen)}`);
  assert.ok(registry);
});
