// node dist/bench/rowEncoding.js [--rows 5000] [--rounds 12]
// The producer's encoding of snapshot rows alone (no services), CPU µs per row of the bench's employees rows, turns
// alternated in one process: Avro by the general encoder (row objects: snapshotRowToMessage + TableEncoder.encode)
// and from the rows' bytes (avroRows.ts), JSON Schema by the general encoder, JSON's frames from the bytes.
import { parseArgs } from 'node:util';
import { AvroOut, writeSnapshotRows } from '../src/contracts/avroRows.js';
import { TableEncoder } from '../src/contracts/codec.js';
import type { ColumnType } from '../src/contracts/columnKinds.js';
import { snapshotRowToMessage } from '../src/contracts/envelope.js';
import { frameRows, snapshotFrame } from '../src/contracts/envelopeBytes.js';
import { MemoryRegistry } from './memoryRegistry.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '5000' }, rounds: { type: 'string', default: '12' } } });
const n = Number(values.rows);
const col = (name: string, kind: ColumnType['kind'], pgType: string, nullable = true): ColumnType => ({ name, kind, nullable, dims: 0, pgType });
const columns = [col('emp_id', 'int', 'integer', false), col('first_name', 'string', 'character varying(100)'), col('last_name', 'string', 'character varying(100)'), col('dob', 'date', 'date'), col('city', 'string', 'character varying(100)'), col('salary', 'int', 'integer')];
const table = { db: 'db1', schema: 'public', name: 'employees', key: ['emp_id'], topic: 'pgtunnel.public.employees', topicPrefix: 'pgtunnel' };
const registry = new MemoryRegistry();
const avro = new TableEncoder('avro', table.topic, registry);
await avro.use(1, columns, [columns[0]!]);
const jsonSchema = new TableEncoder('json-schema', table.topic, registry);
await jsonSchema.use(1, columns, [columns[0]!]);

// the rows as row_to_json writes them, and placed as binary COPY's spans are (the key's text, then the row's)
const rows: { row: string; key: string }[] = [];
const parts: Buffer[] = [];
const spans = new Int32Array(n * 4);
let at = 0;
for (let i = 1; i <= n; i++) {
  const dob = new Date(Date.UTC(1960, 0, 1) + (i % 20000) * 86_400_000).toISOString().slice(0, 10);
  const r = { row: `{"emp_id":${i},"first_name":"First${i % 977}","last_name":"Last${i % 1013}","dob":"${dob}","city":"City ${i % 101}","salary":${30000 + (i % 70000)}}`, key: `{"emp_id":${i}}` };
  rows.push(r);
  for (const [f, text] of [r.key, r.row].entries()) {
    const b = Buffer.from(text);
    parts.push(b);
    spans[(i - 1) * 4 + f * 2] = at;
    spans[(i - 1) * 4 + f * 2 + 1] = at += b.length;
  }
}
const data = Buffer.concat(parts);
const now = Date.now();
const out = new AvroOut();

const cases: [string, () => void][] = [
  ['Avro, row objects (general encoder)', () => rows.forEach((r) => avro.encode(snapshotRowToMessage(table, r, 1, now)))],
  ['Avro, from the rows\' bytes (avroRows.ts)', () => {
    const frame = avro.avroSnapshotFrame(snapshotRowToMessage(table, { row: '{}', key: '{}' }, 1, now).parts!)!;
    const written = writeSnapshotRows(data, spans, n, frame, frame, 1 << 30, out);
    if (written[0]! < 0) throw new Error('bench: the writer declined an employees row');
    Buffer.from(out.buf.subarray(0, out.length));
  }],
  ['JSON Schema, row objects (general encoder)', () => rows.forEach((r) => jsonSchema.encode(snapshotRowToMessage(table, r, 1, now)))],
  ['JSON, frames around the rows\' bytes', () => frameRows({ data, spans, stride: 4, offset: 2, count: n }, snapshotFrame(table, 1, now), false)],
];
const cpu = new Map<string, number[]>();
for (let round = 0; round < Number(values.rounds); round++) {
  // turns alternate; the first two rounds warm the JIT and are not counted
  for (const [name, run] of round % 2 ? [...cases].reverse() : cases) {
    const start = process.cpuUsage();
    run();
    const used = process.cpuUsage(start);
    if (round > 1) cpu.set(name, [...(cpu.get(name) ?? []), (used.user + used.system) / n]);
  }
}
console.log(`| encoding of ${n} employees rows | CPU µs per row, median | min–max |\n|---|---|---|`);
for (const [name, us] of cpu) {
  const sorted = [...us].sort((a, b) => a - b);
  console.log(`| ${name} | ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} | ${sorted[0]!.toFixed(2)}–${sorted.at(-1)!.toFixed(2)} |`);
}
