// The snapshot's two producer paths in one invocation, on the same table, brokers and machine: `objects`
// (rows read as row_to_json strings, envelopes built as text per row) and `bytes` (binary COPY, envelopes
// framed around the rows' bytes). Each round reads the whole table in pieces of 5,000 rows inside one
// REPEATABLE READ transaction, the next piece in flight while the current one is published (as
// SnapshotSource does), through the real BatchPublisher and EnvelopeProducer to Kafka (acks=all), each
// round in its own child process so heaps do not mix. CPU µs per row and the ratio are the figures to
// compare on a loaded machine; peak heap and RSS are sampled every 5 ms.
//   node dist/bench/snapshotPaths.js [rows=100000] [--rounds 2]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { SnapshotReader } from '../src/capture/snapshotReader.js';
import { fieldText } from '../src/capture/copyRows.js';
import { TableEncoder } from '../src/contracts/codec.js';
import { createLogger } from '../src/instruments/log.js';
import { BatchPublisher, emptyTally, type Records } from '../src/pipeline/batchPublisher.js';
import { atLeastOnce } from '../src/pipeline/publisher.js';
import type { TableConfig } from '../src/config/load.js';
import { EnvelopeProducer, ensureTopics, endOffsets } from '../src/transport/kafka.js';
import { seedEmployees } from '../src/stack/demo.js';
import { withEmployeesStack } from './context.js';

const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const rows = Number(args.find((a) => /^\d+$/.test(a)) ?? 100_000);
const pieceRows = 5000;
const marker = 'snapshot-paths-bench';
type Way = 'objects' | 'bytes';
type Piece = { records: Records; count: number; last: string | null };
type Figures = { way: Way; rows: number; ms: number; cpuUs: number; peakHeap: number; peakRss: number; written: number };

async function round(way: Way, sourceUrl: string, brokers: string, topic: string): Promise<void> {
  const kafka = { kafkaBrokers: [brokers] };
  const producer = new EnvelopeProducer(kafka, `bench-${way}`);
  const table = { schema: 'public', name: 'employees', changeTable: 'emp_cdc', topic } as TableConfig;
  const ref = { db: 'bench', schema: 'public', name: 'employees', key: ['emp_id'], topic, topicPrefix: 'bench' };
  const batches = new BatchPublisher('public.employees', table, ref, new TableEncoder('json', topic, undefined), createLogger('bench'));
  const reader = new SnapshotReader('public', 'employees');
  reader.use({ columns: ['emp_id', 'first_name', 'last_name', 'dob', 'city', 'salary'], key: ['emp_id'], schemaVersion: 1, json: new Set() });
  const client = new pg.Client({ connectionString: sourceUrl });
  await client.connect();
  const read = async (last: string | null): Promise<Piece> => {
    if (way === 'bytes') {
      const r = await reader.readChunkBytes(client, last, pieceRows);
      return { records: { rowBytes: r, schemaVersion: 1, final: r.count < pieceRows }, count: r.count, last: r.count > 0 ? fieldText(r, r.count - 1, 0) : null };
    }
    const r = await reader.readChunk(client, last, pieceRows);
    return { records: { rows: r, schemaVersion: 1, final: r.length < pieceRows ? r.at(-1) : undefined }, count: r.length, last: r.at(-1)?.key ?? null };
  };
  const before = (await endOffsets(kafka, [topic])).get(topic)!.reduce((a, b) => a + b, 0n);
  let peakHeap = 0;
  let peakRss = 0;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakHeap = Math.max(peakHeap, m.heapUsed);
    peakRss = Math.max(peakRss, m.rss);
  }, 5);
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  const publication = await atLeastOnce(producer).begin();
  const tally = emptyTally();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  let next: Promise<Piece> | undefined = read(null);
  while (next) {
    const piece: Piece = await next;
    next = piece.count === pieceRows ? read(piece.last) : undefined;
    await batches.publishBatch(publication, piece.records, tally);
  }
  await batches.flush();
  await client.query('COMMIT');
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const used = process.cpuUsage(cpu);
  clearInterval(sampler);
  const after = (await endOffsets(kafka, [topic])).get(topic)!.reduce((a, b) => a + b, 0n);
  await client.end();
  await producer.close();
  console.log(`${marker} ${JSON.stringify({ way, rows: tally.rows, ms, cpuUs: used.user + used.system, peakHeap, peakRss, written: Number(after - before) })}`);
}

function child(way: Way, sourceUrl: string, brokers: string, topic: string): Figures {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), String(rows), '--round', way, '--source', sourceUrl, '--brokers', brokers, '--topic', topic], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: process.env });
  if (r.status !== 0) throw new Error(`bench: ${way} round failed: ${r.stderr}`);
  const line = r.stdout.split('\n').find((l) => l.startsWith(`${marker} {`));
  const figures = JSON.parse(line!.slice(marker.length + 1)) as Figures;
  if (figures.written !== rows || figures.rows !== rows) throw new Error(`bench: ${way} published ${figures.rows} rows and wrote ${figures.written} records, not ${rows}`);
  return figures;
}

async function main(): Promise<void> {
  if (option('--round')) return round(option('--round') as Way, option('--source')!, option('--brokers')!, option('--topic')!);
  await withEmployeesStack('bench-snapshot-paths', async ({ sourceUrl, brokers, client }) => {
    await seedEmployees(client, rows);
    await client.query('VACUUM ANALYZE employees');
    const topic = `bench-snapshot-paths-${Date.now()}`;
    await ensureTopics({ kafkaBrokers: [brokers] }, [topic], 3);
    const results: Figures[] = [];
    for (let r = 0; r < Number(option('--rounds') ?? 2); r++) for (const way of ['objects', 'bytes'] as const) results.push(child(way, sourceUrl, brokers, topic));
    console.log('way      rows/s     CPU µs/row  peak heap MB  peak RSS MB');
    for (const r of results) {
      console.log(`${r.way.padEnd(8)} ${Math.round(r.rows / (r.ms / 1000)).toString().padStart(8)}  ${(r.cpuUs / r.rows).toFixed(2).padStart(11)}  ${(r.peakHeap / 2 ** 20).toFixed(1).padStart(12)}  ${(r.peakRss / 2 ** 20).toFixed(1).padStart(11)}`);
    }
    const best = (way: Way) => Math.min(...results.filter((r) => r.way === way).map((r) => r.cpuUs / r.rows));
    const fastest = (way: Way) => Math.min(...results.filter((r) => r.way === way).map((r) => r.ms));
    console.log(`bytes/objects: CPU per row ${(best('bytes') / best('objects')).toFixed(2)}, wall ${(fastest('bytes') / fastest('objects')).toFixed(2)} (best rounds)`);
  });
}

await main();
