// node dist/bench/scanCpu.js [--rows 200000] [--set 8000] [--rounds 5] [--base <another build's dist>]
// The consumer's decode stage alone — CopyPath.scan (the byte scanner into COPY lines) over snapshot (op r) and
// insert (op c) envelopes of the bench's employees rows, and Avro snapshot records (their schemas at hand, as after
// the first set), in sets as the consumer takes them — as CPU µs per record,
// this build against another's dist in turns in one process. No services: the stage is pure CPU, so on a loaded
// machine its ratio holds where the whole tunnel's wall time does not.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { MemoryRegistry } from './memoryRegistry.js';

const { values } = parseArgs({ options: {
  rows: { type: 'string', default: '200000' }, set: { type: 'string', default: '8000' }, rounds: { type: 'string', default: '5' }, base: { type: 'string' },
} });
const rows = Number(values.rows);
const setRows = Number(values.set);
const here = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const builds = [{ name: 'this build', dist: here }, ...(values.base ? [{ name: 'base', dist: path.resolve(values.base) }] : [])];

type Records = { topic: string; partition: number; offset: bigint; key: string; value: string; valueBytes: Buffer }[];

async function load(dist: string) {
  const at = (f: string) => import(pathToFileURL(path.join(dist, 'src', f)).href);
  const [{ CopyPath }, { TableStatements }, envelope, { TableEncoder }, { RecordDecoder }] = await Promise.all([
    at('apply/copyPath.js'), at('apply/statements.js'), at('contracts/envelope.js'), at('contracts/codec.js'), at('contracts/recordDecoder.js'),
  ]);
  return { CopyPath, TableStatements, envelope, TableEncoder, RecordDecoder };
}

const types = { emp_id: 'integer', first_name: 'character varying(100)', last_name: 'character varying(100)', dob: 'date', city: 'character varying(100)', salary: 'integer' };
const table = { db: 'db1', schema: 'public', name: 'employees', key: ['emp_id'], topic: 'bench.public.employees', topicPrefix: 'bench' };

/** The sets of one op, built by the envelope code of the build under test (both write the same bytes). */
function records(envelope: Awaited<ReturnType<typeof load>>['envelope'], op: 'r' | 'c', encode?: (m: { key: string; value: string }) => { keyBytes: Buffer; value: Buffer }): Records[] {
  const sets: Records[] = [];
  for (let i = 0; i < rows; i += setRows) {
    const set: Records = [];
    for (let id = i + 1; id <= Math.min(rows, i + setRows); id++) {
      const row = `{"emp_id":${id},"first_name":"First${id % 977}","last_name":"Last${id % 1013}","dob":"19${String(id % 90 + 10)}-0${id % 9 + 1}-1${id % 9}","city":"City ${id % 101}","salary":${30000 + (id % 70000)}}`;
      const key = `{"emp_id":${id}}`;
      const m = op === 'r'
        ? envelope.snapshotRowToMessage(table, { row, key }, 1, 1_700_000_000_000)
        : envelope.changeToMessages(table, { changeId: id, action: 'INSERT', txid: String(1000 + id), capturedMs: 1_700_000_000_000, row, key, schemaVersion: 1 }, 'c', 1_700_000_000_000)[0];
      if (encode) {
        const wire = encode(m);
        set.push({ topic: table.topic, partition: 0, offset: BigInt(id), key: undefined, value: '', deferred: true, wire: { key: wire.keyBytes, value: wire.value, format: 'avro' } } as never);
        continue;
      }
      // as ApplyConsumer.record makes them from the fetched bytes: flat strings and the value's bytes
      const valueBytes = Buffer.from(m.value);
      set.push({ topic: table.topic, partition: 0, offset: BigInt(id), key: Buffer.from(m.key).toString('utf8'), value: valueBytes.toString('utf8'), valueBytes });
    }
    sets.push(set);
  }
  return sets;
}

const cases = [];
for (const b of builds) {
  const m = await load(b.dist);
  const statements = new m.TableStatements({ schema: 'public', name: 'employees', columns: Object.keys(types), key: ['emp_id'], types, generated: [], identityAlways: [] });
  const tables = new Map([[table.topic, { table: 'public.employees', statements, rules: [], onMissingKey: 'upsert', orderPolicy: 'park' }]]);
  const path = new m.CopyPath(undefined, tables);
  for (const op of ['r', 'c'] as const) cases.push({ name: `${b.name}, op ${op}`, path, sets: records(m.envelope, op) });
  // Avro: the record's schemas fetched once (the decoder's first decode), then every record deferred to the scanner
  const registry = new MemoryRegistry();
  const encoder = new m.TableEncoder('avro', table.topic, registry);
  const col = (name: string, kind: string, pgType: string, nullable = true) => ({ name, kind, nullable, dims: 0, pgType });
  const columns = [col('emp_id', 'int', 'integer', false), col('first_name', 'string', 'character varying(100)'), col('last_name', 'string', 'character varying(100)'), col('dob', 'date', 'date'), col('city', 'string', 'character varying(100)'), col('salary', 'int', 'integer')];
  await encoder.use(1, columns, [columns[0]]);
  const decoder = new m.RecordDecoder(registry, () => 'avro');
  const avroSets = records(m.envelope, 'r', (msg) => encoder.encode(msg));
  const first = (avroSets[0]![0] as unknown as { wire: { key: Buffer; value: Buffer } }).wire;
  await decoder.decode(table.topic, first.key, first.value);
  const avroPath = new m.CopyPath(undefined, tables, (r: { topic: string; wire: { key: Buffer; value: Buffer } }) => decoder.avroPair(r.topic, r.wire.key, r.wire.value));
  cases.push({ name: `${b.name}, Avro op r`, path: avroPath, sets: avroSets });
}

const cpu = new Map<string, number[]>();
for (let round = 0; round <= Number(values.rounds); round++) {
  // turns alternate; round 0 warms the JIT and is not counted
  for (const c of round % 2 === 0 ? cases : [...cases].reverse()) {
    const at = process.cpuUsage();
    for (const set of c.sets) if (!c.path.scan(set)) throw new Error(`${c.name}: the byte path declined a set`);
    const used = process.cpuUsage(at);
    if (round > 0) cpu.set(c.name, [...(cpu.get(c.name) ?? []), (used.user + used.system) / rows]);
  }
}
console.log(`\nCopyPath.scan, ${rows} records in sets of ${setRows}, ${values.rounds} rounds (µs CPU per record: median, min–max)`);
console.log('| build, op | median µs/record | min–max |\n|---|---|---|');
for (const [name, us] of cpu) {
  const sorted = [...us].sort((a, b) => a - b);
  console.log(`| ${name} | ${sorted[Math.floor(sorted.length / 2)]!.toFixed(3)} | ${sorted[0]!.toFixed(3)}–${sorted.at(-1)!.toFixed(3)} |`);
}
