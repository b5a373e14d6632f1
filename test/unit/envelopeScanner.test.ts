import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeRecord, type RouteTable } from '../../src/apply/route.js';
import { copyableColumns, copyLine } from '../../src/apply/staging.js';
import { TableStatements } from '../../src/apply/statements.js';
import type { TableShape } from '../../src/capture/catalog.js';
import { CopyOut } from '../../src/contracts/byteScan.js';
import { snapshotRowToMessage, changeToMessages, type Op, type TableRef } from '../../src/contracts/envelope.js';
import { EnvelopeScanner } from '../../src/contracts/envelopeScanner.js';
import { fuzzRecords, fuzzTables } from '../helpers/fuzzRecords.js';

/**
 * Equivalence is the oracle: for any record, valid or crafted, the byte scanner accepts exactly what the
 * strict decoder (route.ts decodeRecord) accepts, with the same op, canonical key and source time, and the
 * COPY line it writes is the one today's staging path writes (staging.ts copyLine) for the same columns.
 * Reproduce a failure with PGTUNNEL_FUZZ_SEED=<the printed seed>.
 */
const seed = Number(process.env.PGTUNNEL_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

const shape = (name: string, types: Record<string, string>, key: string[], generated: string[] = []): TableShape =>
  ({ schema: 'public', name, columns: Object.keys(types), key, types, generated, identityAlways: [] });

const tables = fuzzTables('scan');
const shapes: Record<string, TableShape> = {
  [tables.employees.topic]: shape('employees', { emp_id: 'integer', first_name: 'character varying(100)', last_name: 'character varying(100)', dob: 'date', city: 'character varying(100)', salary: 'integer' }, ['emp_id']),
  [tables.items.topic]: shape('fuzz_items', { region: 'text', id: 'bigint', amount: 'numeric(12,2)', doc: 'jsonb', at: 'timestamp with time zone', tags: 'text[]', flag: 'boolean', doubled: 'numeric' }, ['region', 'id'], ['doubled']),
};

/** A table of every type family the COPY line must write as today's path does. */
const kinds: TableRef = { db: 'db1', schema: 'public', name: 'kinds', key: ['k', 'u'], topic: 'scan.public.kinds', topicPrefix: 'scan' };
shapes[kinds.topic] = shape('kinds', {
  k: 'bigint', u: 'text', n: 'numeric', f: 'double precision', r: 'real', b: 'boolean', j: 'json', jb: 'jsonb', by: 'bytea', ts: 'timestamp without time zone',
  tz: 'timestamp with time zone', d: 'date', t: 'time without time zone', iv: 'interval', ia: 'integer[]', e: 'mood', g: 'integer',
}, ['k', 'u'], ['g']);

const text = fc.oneof(fc.string({ maxLength: 10 }), fc.string({ unit: 'grapheme', maxLength: 6 }), fc.constantFrom('a\tb', 'back\\slash', 'new\nline', 'cr\r', 'q"uote', '\u0001', '\\N', ''));
const number = fc.oneof(fc.integer().map(String), fc.constantFrom('0', '-0', '1e5', '1.50', '-2.5E-3', '123456789012345678901234567890.123', '9223372036854775807'));
/** A column value's JSON text, sometimes spelled with escapes the decoder resolves. */
const jsonText = fc.oneof(
  text.map((s) => JSON.stringify(s)),
  text.map((s) => JSON.stringify(s).replace(/[a-z]/, (c) => `\\u00${c.charCodeAt(0).toString(16)}`)),
  number,
  fc.constantFrom('true', 'false', 'null', '"NaN"', '"Infinity"', '"\\\\x00ff"', '"2024-02-29T12:34:56.789"', '"2024-02-29T12:34:56+01:00"', '"12:00:00"', '"1 day 02:00:00"', '"1999-01-08 BC"'),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
  fc.array(fc.option(fc.integer()), { maxLength: 3 }).map((a) => JSON.stringify(a)),
);
const columnNames = Object.keys(shapes[kinds.topic]!.types);

/** A kinds row: every column or some, in order or not, sometimes an extra or escaped name; key values as the types write them. */
const kindsRow = fc.record({
  k: fc.oneof(fc.integer().map(String), fc.constantFrom('-9223372036854775808', '007', '1.0', '"7"', '-0', '0', '1e2')),
  u: fc.oneof(text.map((s) => JSON.stringify(s)), fc.constant('"\\u00e9"'), fc.constant('"é"')),
  values: fc.array(jsonText, { minLength: columnNames.length, maxLength: columnNames.length }),
  keep: fc.array(fc.boolean(), { minLength: columnNames.length, maxLength: columnNames.length }),
  extra: fc.option(fc.constantFrom('"zz":1', '"\\u006e":2', '"j":3')),
  shuffle: fc.boolean(),
}).map(({ k, u, values, keep, extra, shuffle }) => {
  const members = columnNames.map((c, i) => `"${c}":${c === 'k' ? k : c === 'u' ? u : values[i]}`).filter((_, i) => i < 2 || keep[i]);
  if (shuffle) members.reverse();
  if (extra) members.push(extra);
  return { row: `{${members.join(',')}}`, key: `{"k":${k},"u":${u}}` };
});

const kindsRecord = fc.tuple(kindsRow, fc.constantFrom<Op>('c', 'u', 'd', 'r', 't')).map(([{ row, key }, op]) => {
  const m = op === 'r' ? snapshotRowToMessage(kinds, { row, key }, 1, 5) : changeToMessages(kinds, { changeId: 9, action: '', txid: '8', capturedMs: 7, row, key, schemaVersion: 1 }, op, 5)[0]!;
  return { topic: kinds.topic, key: m.key, value: m.value! };
});

/** wireFuzz's byte mutations, on the JSON bytes: a flipped byte, a cut, inserted bytes (invalid UTF-8 too). */
const mutation = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }) }), weight: 1 },
);

type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(b: Buffer, m: Mutation): Buffer {
  if (!m) return b;
  const at = m.at % (b.length + 1);
  if (m.kind === 'cut') return b.subarray(0, at);
  if (m.kind === 'insert') return Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
  const out = Buffer.from(b);
  if (at < out.length) out[at] = m.byte;
  return out;
}

const statements = new Map(Object.entries(shapes).map(([topic, s]) => [topic, new TableStatements(s)]));
const scanners = new Map([...statements].map(([topic, s]) => [topic, new EnvelopeScanner(s.scanTable())]));

/** How many records reached each outcome: the properties must compare lines, not only refusals. */
const seen = { poison: 0, row: 0, line: 0, fallback: 0 };

/** The scanner against the decoder on one record's bytes. */
function agree(topic: string, keyBytes: Buffer | undefined, valueBytes: Buffer): void {
  const st = statements.get(topic)!;
  const scanner = scanners.get(topic)!;
  const verdict = scanner.scan(valueBytes, keyBytes);
  const table: RouteTable = { table: topic, key: st.key, types: st.types, rules: [], orderPolicy: 'park' };
  const d = decodeRecord({ topic, partition: 0, offset: 0n, key: keyBytes?.toString('utf8'), value: valueBytes.toString('utf8') }, table);
  const shown = `${keyBytes?.toString('utf8')} / ${valueBytes.toString('utf8').slice(0, 400)}`;
  if (verdict === 'fallback') {
    seen.fallback++;
    assert.ok(!isUtf8(valueBytes) || (keyBytes !== undefined && !isUtf8(keyBytes)), `fallback on UTF-8: ${shown}`);
    return;
  }
  if ('poison' in d) {
    assert.equal(verdict, 'poison', `scanner accepts what the decoder refuses (${d.poison.message}): ${shown}`);
    seen.poison++;
    return;
  }
  assert.equal(verdict, d.envelope.op === 't' ? 'truncate' : 'row', `scanner refuses what the decoder accepts: ${shown}`);
  if (verdict === 'truncate') return;
  seen.row++;
  assert.equal(scanner.op, d.envelope.op);
  assert.equal(scanner.keyText, d.key);
  assert.equal(scanner.tsMs, d.envelope.source.tsMs);
  if (d.envelope.op === 'd' || !d.envelope.after) return;
  const row = d.envelope.after;
  const columns = st.columnsOf(row);
  const line = copyableColumns(st.types, columns) ? copyLine(row, columns) : undefined;
  assert.equal(scanner.unknownColumns, st.unknownColumns(row).length > 0, shown);
  assert.equal(scanner.copyable, line !== undefined, `copyable differs: ${shown}`);
  assert.deepEqual(scanner.lineColumns(), columns);
  if (line === undefined) return;
  const out = new CopyOut(8);
  scanner.writeLine(out);
  assert.equal(out.view().toString('hex'), Buffer.from(line).toString('hex'), `COPY line differs: ${shown}`);
  seen.line++;
}

test(`the scanner agrees with the strict decoder on fuzzed envelopes (seed ${seed})`, () => {
  fc.assert(
    fc.property(fuzzRecords(tables, 3), mutation, (records, m) => {
      for (const r of records) {
        if (r.value === undefined) continue;
        agree(r.topic, r.key === undefined ? undefined : Buffer.from(r.key), mutate(Buffer.from(r.value), m));
      }
    }),
    { seed, numRuns: 3000 },
  );
});

test(`the scanner writes every type family's COPY text as today's path does (seed ${seed})`, () => {
  fc.assert(
    fc.property(kindsRecord, mutation, fc.boolean(), (r, m, mutateKey) => {
      const key = r.key === undefined ? undefined : Buffer.from(r.key);
      const value = Buffer.from(r.value);
      agree(r.topic, mutateKey && key ? mutate(key, m) : key, mutateKey ? value : mutate(value, m));
    }),
    { seed, numRuns: 5000 },
  );
});

test('limits and grammar the decoder enforces, on crafted bytes', () => {
  const ok = (row: string) => `{"before":null,"after":${row},"source":{"version":"1","connector":"pgtunnel","name":"p","ts_ms":1,"snapshot":"true","db":"d","schema":"public","table":"kinds","txId":null,"lsn":null},"op":"r","ts_ms":2}`;
  const key = Buffer.from('{"k":1,"u":"a"}');
  const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  for (const row of [
    '{"k":1,"u":"a"}', `{"k":1,"u":"a","ia":${deep(61)}}`, `{"k":1,"u":"a","ia":${deep(62)}}`, `{"k":1,"u":"a","ia":${deep(63)}}`,
    `{"k":1,"u":"a","ia":[${deep(61)}1]}`, '{"k":1,"u":"a","u":"a"}', '{"k":1,"u":"a","zz":1,"zz":2}', '{"k":1,"u":"\\u0061"}', '{"k":1.0,"u":"a"}',
    '{"k":1,"u":"a","n":01}', '{"k":1,"u":"a","n":1.}', '{"k":1,"u":"a","n":-}', '{"k":1,"u":"a","j":{"x":1,"x":2}}', '{"k":1,"u":"a"} ',
  ]) agree(kinds.topic, key, Buffer.from(ok(row)));
  agree(kinds.topic, key, Buffer.from(ok(`{"k":1,"u":"a","u2":"${'x'.repeat(8 * 1024 * 1024)}"}`)));
  // source.snapshot, read as bytes unless escaped: an escaped marker is still one, a near one never
  for (const marker of ['last', 'l\\u0061st', 'incremental', 'fals', 'falsee', 'tru\\u0065', 'True', '', 'l\\u0061sT']) {
    agree(kinds.topic, key, Buffer.from(ok('{"k":1,"u":"a"}').replace('"snapshot":"true"', `"snapshot":"${marker}"`)));
  }
  agree(kinds.topic, Buffer.from('{"k":1,"u":"a","k":1}'), Buffer.from(ok('{"k":1,"u":"a"}')));
  agree(kinds.topic, Buffer.from(`{"k":1,"u":"${'x'.repeat(2100)}"}`), Buffer.from(ok(`{"k":1,"u":"${'x'.repeat(2100)}"}`)));
});

test('every outcome was reached', () => {
  assert.ok(seen.poison > 1000 && seen.row > 1000 && seen.line > 200 && seen.fallback > 10, JSON.stringify(seen));
});
