import path from 'node:path';
import v8 from 'node:v8';
import type pg from 'pg';
import { describeTable } from '../src/capture/catalog.js';
import { installTarget } from '../src/capture/install.js';
import type { TableConfig } from '../src/config/load.js';
import { applySession } from '../src/apply/session.js';
import { TableStatements } from '../src/apply/statements.js';
import { TargetWriter, type DeferredRecords, type TableApply } from '../src/apply/targetWriter.js';
import { TableEncoder } from '../src/contracts/codec.js';
import { columnKinds } from '../src/contracts/columnKinds.js';
import { snapshotRowToMessage, type TableRef } from '../src/contracts/envelope.js';
import { RecordDecoder } from '../src/contracts/recordDecoder.js';
import { SchemaRegistry } from '../src/contracts/registry.js';
import { createLogger } from '../src/instruments/log.js';
import { connect } from '../src/pg.js';
import { employeesDdl } from '../src/stack/demo.js';
import { EnvelopeProducer } from '../src/transport/kafka.js';
import { DeadLetterWriter, type RawRecord } from '../src/validate/deadLetters.js';
import { startTestStack } from '../testkit/testStack.js';
import { root, sql } from './context.js';

/**
 * Decode + apply of snapshot rows (op r) of `rows` employees through `TargetWriter`, each case on the same
 * stack and table (emptied between): JSON one set, general path (strict decoder, staging COPY, INSERT) vs the
 * byte scanner's COPY; Avro one set, avsc's decoder (the general path) vs the Avro scanner's COPY; JSON in
 * sets of `setRows`, decode and write one after another vs the decode of set N+1 overlapped with the write of
 * set N (as the consumer runs them). CPU-seconds of this process, wall seconds, bytes allocated on the V8 heap.
 * Run: node --expose-gc dist/bench/scanApply.js [rows] [setRows]   (starts its own stack under .pgtunnel/bench-scan)
 */
const rows = Number(process.argv[2] ?? 200_000);
const setRows = Number(process.argv[3] ?? 10_000);
const ref = (topic: string): TableRef => ({ db: 'db1', schema: 'public', name: 'employees', key: ['emp_id'], topic, topicPrefix: 'bench' });

function messages(topic: string) {
  return Array.from({ length: rows }, (_, i) => {
    const id = i + 1;
    const row = `{"emp_id":${id},"first_name":"first${id}","last_name":"last${id}","dob":"1990-01-${String((id % 28) + 1).padStart(2, '0')}","city":"city${id % 100}","salary":${id % 100000}}`;
    return snapshotRowToMessage(ref(topic), { row, key: `{"emp_id":${id}}` }, 1, Date.now(), id === rows);
  });
}

function jsonRecords(topic: string): RawRecord[] {
  return messages(topic).map((m, i) => ({ topic, partition: 0, offset: BigInt(i), key: m.key, value: m.value, valueBytes: Buffer.from(m.value!) }));
}

/** Bytes allocated while `body` ran: heap growth between collections, summed over the GC profile. */
async function measure(body: () => Promise<unknown>): Promise<{ cpuSeconds: number; wallSeconds: number; allocatedMb: number }> {
  global.gc?.();
  const profiler = new v8.GCProfiler();
  const startUsed = v8.getHeapStatistics().used_heap_size;
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  profiler.start();
  await body();
  const profile = profiler.stop() as { statistics: { beforeGC: { heapStatistics: { usedHeapSize: number } }; afterGC: { heapStatistics: { usedHeapSize: number } } }[] } | undefined;
  const wallSeconds = Number(process.hrtime.bigint() - start) / 1e9;
  const used = process.cpuUsage(cpu);
  let allocated = 0;
  let after = startUsed;
  for (const gc of profile?.statistics ?? []) {
    allocated += gc.beforeGC.heapStatistics.usedHeapSize - after;
    after = gc.afterGC.heapStatistics.usedHeapSize;
  }
  allocated += v8.getHeapStatistics().used_heap_size - after;
  return { cpuSeconds: +((used.user + used.system) / 1e6).toFixed(2), wallSeconds: +wallSeconds.toFixed(2), allocatedMb: +(allocated / 1e6).toFixed(0) };
}

const { stack, env } = await startTestStack(path.join(root, '.pgtunnel'), 'bench-scan', { registry: true });
try {
  const server = env.PGTUNNEL_TEST_TARGET_SERVER!;
  await sql(`${server}/postgres`, 'DROP DATABASE IF EXISTS bench_scan').catch(() => {});
  await sql(`${server}/postgres`, 'CREATE DATABASE bench_scan');
  const url = `${server}/bench_scan`;
  await sql(url, employeesDdl);
  const target = await connect(url, 'target', 'pgtunnel bench scanApply');
  await installTarget(target);
  await applySession(target, createLogger('bench'));
  const producer = new EnvelopeProducer({ kafkaBrokers: [env.PGTUNNEL_TEST_BROKERS!] }, 'pgtunnel-bench-scan');
  const shape = await describeTable(target, { schema: 'public', name: 'employees', key: ['emp_id'] } as TableConfig, 'target');
  const registry = new SchemaRegistry({ url: env.PGTUNNEL_TEST_REGISTRY_URL! });
  const decoder = new RecordDecoder(registry, () => 'avro');
  const results: Record<string, unknown> = {};
  let run = 0;
  const writerOf = (topic: string, byCopy = true, deferred?: DeferredRecords) => {
    const table: TableApply = { table: 'public.employees', statements: new TableStatements(shape), rules: [], onMissingKey: 'upsert', orderPolicy: 'park', format: 'avro' };
    return new TargetWriter(target, new Map([[topic, table]]), async () => 1, new DeadLetterWriter(producer), () => {}, byCopy, deferred);
  };
  const check = async (name: string) => {
    const n = Number((await sql<{ n: string }>(url, 'SELECT count(*) AS n FROM employees'))[0]!.n);
    if (n !== rows) throw new Error(`bench: ${name} left ${n} rows, not ${rows}`);
  };
  const bench = async (name: string, prepare: (topic: string) => Promise<(topic: string) => Promise<unknown>>) => {
    await sql(url, 'TRUNCATE employees');
    const topic = `bench.public.employees.r${run++}`;
    const body = await prepare(topic);
    results[name] = await measure(() => body(topic));
    await check(name);
  };

  await bench('json, one set: general path (decode, staging, INSERT)', async (topic) => {
    const set = jsonRecords(topic);
    return async () => writerOf(topic, false).apply(set);
  });
  await bench('json, one set: byte scanner, COPY into the table', async (topic) => {
    const set = jsonRecords(topic);
    return async () => writerOf(topic).apply(set);
  });
  const avroSet = async (topic: string) => {
    const encoder = new TableEncoder('avro', topic, registry);
    await encoder.use(1, await columnKinds(target as pg.Client, 'public.employees', shape.columns), await columnKinds(target as pg.Client, 'public.employees', ['emp_id']));
    const wire = messages(topic).map((m) => encoder.encode(m));
    await decoder.decode(topic, wire[0]!.keyBytes, wire[0]!.value as Buffer); // the schemas fetched before the measure
    return wire.map((w, i) => ({ topic, partition: 0, offset: BigInt(i), key: w.keyBytes!, value: w.value as Buffer }));
  };
  await bench('avro, one set: avsc decoder, general path', async (topic) => {
    const set = await avroSet(topic);
    return async () => {
      const records = await Promise.all(set.map(async (m): Promise<RawRecord> => {
        const d = await decoder.decode(topic, m.key, m.value);
        if ('poison' in d) throw new Error(`bench: ${d.poison}`);
        return { ...m, key: d.key, value: d.value, decoded: d.decoded, wire: { key: m.key, value: m.value, format: 'avro' } };
      }));
      return writerOf(topic).apply(records);
    };
  });
  await bench('avro, one set: Avro scanner, COPY into the table', async (topic) => {
    const set = await avroSet(topic);
    const deferred: DeferredRecords = { avroPair: (r) => decoder.avroPair(r.topic, r.wire?.key, r.wire?.value), decode: () => Promise.reject(new Error('bench: the scanner declined a record')) };
    return async () => {
      const records: RawRecord[] = set.map((m) => ({ topic, partition: m.partition, offset: m.offset, key: undefined, value: '', deferred: true, wire: { key: m.key, value: m.value, format: 'avro' } }));
      const writer = writerOf(topic, true, deferred);
      const scanned = writer.scan(records);
      if (!scanned) throw new Error('bench: the Avro set did not take the byte path');
      return writer.apply(records, scanned);
    };
  });
  const sets = (topic: string) => {
    const all = jsonRecords(topic);
    return Array.from({ length: Math.ceil(rows / setRows) }, (_, i) => all.slice(i * setRows, (i + 1) * setRows));
  };
  await bench(`json, sets of ${setRows}: decode, then write, one set at a time`, async (topic) => {
    const all = sets(topic);
    const writer = writerOf(topic);
    return async () => {
      for (const set of all) await writer.apply(set, writer.scan(set));
    };
  });
  await bench(`json, sets of ${setRows}: decode of set N+1 overlapped with the write of set N`, async (topic) => {
    const all = sets(topic);
    const writer = writerOf(topic);
    return async () => {
      let writing: Promise<unknown> = Promise.resolve();
      for (const set of all) {
        const scanned = writer.scan(set);
        await writing;
        writing = writer.apply(set, scanned);
      }
      await writing;
    };
  });
  console.log(JSON.stringify({ rows, setRows, results }, null, 2));
  await producer.close();
  await target.end();
} finally {
  await stack.down();
}
