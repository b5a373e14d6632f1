import path from 'node:path';
import v8 from 'node:v8';
import { describeTable } from '../src/capture/catalog.js';
import { installTarget } from '../src/capture/install.js';
import type { TableConfig } from '../src/config/load.js';
import { applySession } from '../src/apply/session.js';
import { TableStatements } from '../src/apply/statements.js';
import { TargetWriter, type TableApply } from '../src/apply/targetWriter.js';
import { snapshotRowToMessage, type TableRef } from '../src/contracts/envelope.js';
import { createLogger } from '../src/instruments/log.js';
import { connect } from '../src/pg.js';
import { employeesDdl } from '../src/stack/demo.js';
import { EnvelopeProducer } from '../src/transport/kafka.js';
import { DeadLetterWriter, type RawRecord } from '../src/validate/deadLetters.js';
import { startTestStack } from '../testkit/testStack.js';
import { root, sql } from './context.js';

/**
 * Decode + apply of one snapshot set (op r) of `rows` employees, through the general path (strict decoder,
 * staging COPY, plain INSERT) and through the byte scanner's COPY, one run each on the same stack and
 * table: CPU-seconds of this process, wall seconds, and bytes allocated on the V8 heap (from the GC profile).
 * Run: node dist/bench/scanApply.js [rows]   (starts its own stack under .pgtunnel/bench-scan)
 */
const rows = Number(process.argv[2] ?? 200_000);

function records(topic: string): RawRecord[] {
  const table: TableRef = { db: 'db1', schema: 'public', name: 'employees', key: ['emp_id'], topic, topicPrefix: 'bench' };
  return Array.from({ length: rows }, (_, i) => {
    const id = i + 1;
    const row = `{"emp_id":${id},"first_name":"first${id}","last_name":"last${id}","dob":"1990-01-${String((id % 28) + 1).padStart(2, '0')}","city":"city${id % 100}","salary":${id % 100000}}`;
    const m = snapshotRowToMessage(table, { row, key: `{"emp_id":${id}}` }, 1, Date.now(), id === rows);
    return { topic, partition: 0, offset: BigInt(i), key: m.key, value: m.value, valueBytes: Buffer.from(m.value!) };
  });
}

/** Bytes allocated while `body` ran: heap growth between collections, summed over the GC profile. */
async function measure(body: () => Promise<unknown>): Promise<{ cpuSeconds: number; wallSeconds: number; allocatedMb: number }> {
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
  return { cpuSeconds: (used.user + used.system) / 1e6, wallSeconds, allocatedMb: allocated / 1e6 };
}

const { stack, env } = await startTestStack(path.join(root, '.pgtunnel'), 'bench-scan');
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
  const results: Record<string, unknown> = {};
  for (const [name, byCopy] of [['general path (decode, staging, INSERT)', false], ['byte scanner, COPY into the table', true]] as const) {
    await sql(url, 'TRUNCATE employees');
    const topic = `bench.public.employees.${byCopy ? 'copy' : 'general'}`;
    const table: TableApply = { table: 'public.employees', statements: new TableStatements(shape), rules: [], onMissingKey: 'upsert', orderPolicy: 'park' };
    const writer = new TargetWriter(target, new Map([[topic, table]]), async () => 1, new DeadLetterWriter(producer), () => {}, byCopy);
    const set = records(topic);
    global.gc?.();
    const m = await measure(() => writer.apply(set));
    const n = Number((await sql<{ n: string }>(url, 'SELECT count(*) AS n FROM employees'))[0]!.n);
    if (n !== rows) throw new Error(`bench: ${name} left ${n} rows, not ${rows}`);
    results[name] = { ...m, cpuSeconds: +m.cpuSeconds.toFixed(2), wallSeconds: +m.wallSeconds.toFixed(2), allocatedMb: +m.allocatedMb.toFixed(0) };
  }
  console.log(JSON.stringify({ rows, results }, null, 2));
  await producer.close();
  await target.end();
} finally {
  await stack.down();
}
