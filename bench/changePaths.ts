// The change pages' two producer paths in one invocation, on the same change table, brokers and machine:
// `objects` (rows of the page query as row objects, envelopes built as text per change) and `bytes` (the
// same query as binary COPY, envelopes framed around the rows' bytes). A batch of inserts, updates and
// deletes is captured once; each round reads the whole batch in pages (the next page in flight while the
// current one is published, as StreamSource does) through the real ChangeReader, BatchPublisher and
// EnvelopeProducer to Kafka (acks=all), without checkpoints, so every round reads the same rows; each round
// in its own child process. The figures: this process's CPU µs per change, and the source backend's
// (/proc/<pid>/schedstat), which CPU time, not wall, measures on a loaded machine.
//   node dist/bench/changePaths.js [changes=100000] [--rounds 2] [--page 5000]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ChangeReader, type Page } from '../src/capture/changeReader.js';
import { advance, type Position } from '../src/capture/position.js';
import { TableEncoder } from '../src/contracts/codec.js';
import { createLogger } from '../src/instruments/log.js';
import { loadConfig } from '../src/config/load.js';
import { BatchPublisher, emptyTally } from '../src/pipeline/batchPublisher.js';
import { recordsOf } from '../src/pipeline/changePages.js';
import { atLeastOnce } from '../src/pipeline/publisher.js';
import { prepare } from '../src/setup/prepare.js';
import { EnvelopeProducer, ensureTopics, endOffsets } from '../src/transport/kafka.js';
import { cpuNs, root, withEmployeesStack } from './context.js';

const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const changes = Number(args.find((a) => /^\d+$/.test(a)) ?? 100_000);
const pageSize = Number(option('--page') ?? 5000);
const marker = 'change-paths-bench';
type Way = 'objects' | 'bytes';
type Figures = { way: Way; changes: number; ms: number; cpuUs: number; backendUs: number; written: number };


function configOf(sourceUrl: string, brokers: string) {
  return loadConfig({ env: { PGTUNNEL_SOURCE_URL: sourceUrl, PGTUNNEL_TARGET_URL: sourceUrl, PGTUNNEL_KAFKA_BROKERS: brokers, PGTUNNEL_TOPIC_PREFIX: 'bench-changes' }, cwd: root });
}

async function round(way: Way, sourceUrl: string, brokers: string, prev: string, topic: string): Promise<void> {
  const config = configOf(sourceUrl, brokers);
  const table = { ...config.tables[0]!, topic };
  const kafka = { kafkaBrokers: [brokers] };
  const producer = new EnvelopeProducer(kafka, `bench-${way}`);
  const ref = { db: 'bench', schema: 'public', name: 'employees', key: ['emp_id'], topic, topicPrefix: 'bench' };
  const batches = new BatchPublisher('public.employees', table, ref, new TableEncoder('json', topic, undefined), createLogger('bench'));
  const reader = new ChangeReader(table, new Set(), '', false, way === 'bytes');
  const client = new pg.Client({ connectionString: sourceUrl });
  await client.connect();
  await reader.refresh(client, ['emp_id']);
  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const before = (await endOffsets(kafka, [topic])).get(topic)!.reduce((a, b) => a + b, 0n);
  const cpu = process.cpuUsage();
  const backend = cpuNs(pid);
  const started = process.hrtime.bigint();
  const publication = await atLeastOnce(producer).begin();
  const tally = emptyTally();
  let position: Position = { prev, cur: null, lastChangeId: 0 };
  let next: Promise<Page> | undefined = reader.readPage(client, position, pageSize);
  while (next) {
    const page: Page = await next;
    position = advance(position, page.cur, page.count, page.lastChangeId, pageSize);
    next = position.cur === null ? undefined : reader.readPage(client, position, pageSize);
    if (page.count > 0) await batches.publishBatch(publication, recordsOf(page), tally);
  }
  await batches.flush();
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const used = process.cpuUsage(cpu);
  const backendUs = (cpuNs(pid) - backend) / 1000;
  const after = (await endOffsets(kafka, [topic])).get(topic)!.reduce((a, b) => a + b, 0n);
  await client.end();
  await producer.close();
  console.log(`${marker} ${JSON.stringify({ way, changes: tally.changes, ms, cpuUs: used.user + used.system, backendUs, written: Number(after - before) })}`);
}

function child(way: Way, sourceUrl: string, brokers: string, prev: string, topic: string, records: number): Figures {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), String(changes), '--page', String(pageSize), '--round', way, '--source', sourceUrl, '--brokers', brokers, '--prev', prev, '--topic', topic], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: process.env });
  if (r.status !== 0) throw new Error(`bench: ${way} round failed: ${r.stderr}`);
  const line = r.stdout.split('\n').find((l) => l.startsWith(`${marker} {`));
  const figures = JSON.parse(line!.slice(marker.length + 1)) as Figures;
  if (figures.changes !== changes || figures.written !== records) throw new Error(`bench: ${way} published ${figures.changes} changes and wrote ${figures.written} records, not ${changes} and ${records}`);
  return figures;
}

async function main(): Promise<void> {
  if (option('--round')) return round(option('--round') as Way, option('--source')!, option('--brokers')!, option('--prev')!, option('--topic')!);
  await withEmployeesStack('bench-change-paths', async ({ sourceUrl, brokers, client }) => {
    await prepare(configOf(sourceUrl, brokers), createLogger('bench'), { installOnly: true });
    const prev = (await client.query<{ s: string }>('SELECT pg_current_snapshot()::text AS s')).rows[0]!.s;
    // 60% inserts, 30% updates, 10% deletes (a delete is two records: its envelope and a tombstone)
    const inserts = Math.round(changes * 0.6);
    const updates = Math.round(changes * 0.3);
    const deletes = changes - inserts - updates;
    await client.query(`INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary)
      SELECT g, 'first ' || g, 'last "' || g || '"', date '1970-01-01' + g % 20000, 'city ' || g % 97, g FROM generate_series(1, $1::int) g`, [inserts]);
    await client.query('UPDATE employees SET salary = salary + 1 WHERE emp_id <= $1', [updates]);
    await client.query('DELETE FROM employees WHERE emp_id > $1', [inserts - deletes]);
    await client.query('VACUUM ANALYZE emp_cdc');
    const topic = `bench-change-paths-${Date.now()}`;
    await ensureTopics({ kafkaBrokers: [brokers] }, [topic], 3);
    const results: Figures[] = [];
    for (let r = 0; r < Number(option('--rounds') ?? 2); r++) for (const way of ['objects', 'bytes'] as const) results.push(child(way, sourceUrl, brokers, prev, topic, changes + deletes));
    console.log('way      changes/s  CPU µs/change  backend CPU µs/change');
    for (const r of results) {
      console.log(`${r.way.padEnd(8)} ${Math.round(r.changes / (r.ms / 1000)).toString().padStart(9)}  ${(r.cpuUs / r.changes).toFixed(2).padStart(13)}  ${(r.backendUs / r.changes).toFixed(2).padStart(21)}`);
    }
    const best = (way: Way, of: (f: Figures) => number) => Math.min(...results.filter((r) => r.way === way).map(of));
    const perChange = (f: Figures) => f.cpuUs / f.changes;
    const backendPerChange = (f: Figures) => f.backendUs / f.changes;
    console.log(`bytes/objects (best rounds): CPU per change ${(best('bytes', perChange) / best('objects', perChange)).toFixed(2)}, backend CPU per change ${(best('bytes', backendPerChange) / best('objects', backendPerChange)).toFixed(2)}`);
  });
}

await main();
