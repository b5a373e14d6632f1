// Micro-benchmark of the Avro codec alone (no PostgreSQL, no Kafka): employees rows encoded and decoded in
// sets of 1000 as the pipeline does, ns per row, beside format json's texts. With `--baseline <dir>` (another build's dist/, e.g. of
// main) both builds run in this one process, set by set in turn, so machine load hits both alike.
//   node dist/bench/codec.js [rows] [--baseline ../main/dist]
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ColumnType } from '../src/contracts/columnKinds.js';
import { MemoryRegistry } from './memoryRegistry.js';

const col = (name: string, kind: ColumnType['kind'], pgType: string, nullable = true): ColumnType => ({ name, kind, nullable, dims: 0, pgType });
const columns = [col('emp_id', 'int', 'integer', false), col('first_name', 'string', 'character varying(100)'), col('last_name', 'string', 'character varying(100)'), col('dob', 'date', 'date'), col('city', 'string', 'character varying(100)'), col('salary', 'int', 'integer')];
const table = { db: 'db1', schema: 'public', name: 'employees', key: ['emp_id'], topic: 'pgtunnel.public.employees', topicPrefix: 'pgtunnel' };

/** Rows as the bench's fill writes them, in row_to_json's text. */
function rows(from: number, n: number): { row: string; key: string }[] {
  const out = [];
  for (let i = from + 1; i <= from + n; i++) {
    const d = new Date(Date.UTC(1960, 0, 1) + (i % 20000) * 86_400_000).toISOString().slice(0, 10);
    out.push({ row: `{"emp_id":${i},"first_name":"first${i}","last_name":"last${i}","dob":"${d}","city":"city${i % 100}","salary":${i % 100000}}`, key: `{"emp_id":${i}}` });
  }
  return out;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- each build's modules, loaded by path */
type Build = { label: string; encode: (r: { row: string; key: string }) => any; decode: (m: any) => Promise<any>; envelope: (d: any) => unknown; ns: { encode: number; decode: number; envelope: number } };

async function build(label: string, dist: string, format: 'avro' | 'json' = 'avro'): Promise<Build> {
  const load = (p: string) => import(pathToFileURL(path.resolve(dist, p)).href);
  const [{ TableEncoder }, { RecordDecoder }, { snapshotRowToMessage, decodeEnvelope, keyedEnvelope }] = await Promise.all([
    load('src/contracts/codec.js'), load('src/contracts/recordDecoder.js'), load('src/contracts/envelope.js'),
  ]);
  const registry = new MemoryRegistry();
  const encoder = new TableEncoder(format, table.topic, registry);
  await encoder.use(1, columns, [columns[0]!]);
  const decoder = new RecordDecoder(registry);
  const now = Date.now();
  return {
    label,
    // format json: the bytes Kafka takes and gives back are the texts' UTF-8
    encode: (r) => {
      const m = encoder.encode(snapshotRowToMessage(table, r, 1, now));
      return format === 'json' ? { keyBytes: Buffer.from(m.key), value: Buffer.from(m.value) } : m;
    },
    decode: async (m) => {
      const d = await decoder.decode(table.topic, m.keyBytes, m.value);
      if ('poison' in d) throw new Error(d.poison);
      return d;
    },
    envelope: (d) => (d.decoded ? keyedEnvelope(d.decoded, ['emp_id']) : decodeEnvelope(d.key, d.value, ['emp_id'])),
    ns: { encode: 0, decode: 0, envelope: 0 },
  };
}

const args = process.argv.slice(2);
const baseline = args.indexOf('--baseline');
const n = Number(args.find((a, i) => /^\d+$/.test(a) && i !== baseline + 1) ?? 200_000);
const here = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const builds = [await build('this build', here), await build('json', here, 'json')];
if (baseline >= 0) builds.unshift(await build('baseline', args[baseline + 1]!));

const since = (start: bigint) => Number(process.hrtime.bigint() - start);
for (let done = 0; done < n; done += 1000) {
  const input = rows(done, Math.min(1000, n - done));
  // each build first in every other set: garbage one leaves is collected in the other's time alike
  for (const b of done % 2000 === 0 ? builds : [...builds].reverse()) {
    let start = process.hrtime.bigint();
    const wire = input.map(b.encode);
    b.ns.encode += since(start);
    start = process.hrtime.bigint();
    const decoded = [];
    for (const m of wire) decoded.push(await b.decode(m));
    b.ns.decode += since(start);
    start = process.hrtime.bigint();
    for (const d of decoded) b.envelope(d);
    b.ns.envelope += since(start);
  }
}
for (const b of builds) {
  const per = (ns: number) => Math.round(ns / n);
  console.log(`${b.label.padEnd(10)} encode ${per(b.ns.encode)} ns/row, decode ${per(b.ns.decode + b.ns.envelope)} ns/row (record decoder ${per(b.ns.decode)} + envelope ${per(b.ns.envelope)})`);
}
const ratio = (a: Build, b: Build) => `encode ${(a.ns.encode / b.ns.encode).toFixed(2)}, decode ${((a.ns.decode + a.ns.envelope) / (b.ns.decode + b.ns.envelope)).toFixed(2)}`;
const [mine, json] = builds.slice(-2) as [Build, Build];
console.log(`ratio Avro/JSON of this build: ${ratio(mine, json)}`);
if (builds.length === 3) console.log(`ratio this/baseline (Avro): ${ratio(mine, builds[0]!)}`);
