// `npm run bench -- --peers`: Debezium 3.6 (PostgreSQL connector with pgoutput + JDBC sink, on a Kafka Connect
// standalone worker against the same broker) beside pgtunnel on the same source, load and target: snapshot
// time and commit → target latency (pgtunnel with trigger capture, and with logical capture: pgoutput as Debezium), once per
// `--format` (json,avro,json-schema). The peer is tuned for latency as its users would (poll.interval.ms=5).
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { employeesDdl } from '../src/stack/demo.js';
import { apicurioAvroConverter, ConnectWorker } from '../testkit/connect.js';
import { BenchContext, root, sql, waitUntil } from './context.js';
import { fixedRateLoad, measure, sourceDdl, targetDdl, tunnelLatency, type LatencyResult } from './latency.js';
import { fill, snapshot } from './snapshot.js';

const count = async (url: string, table: string) => Number((await sql<{ n: string }>(url, `SELECT count(*) AS n FROM ${table}`))[0]!.n);

/** Debezium's PostgreSQL source connector on `db`, one table, tuned for latency. */
export function debeziumSource(db: string, table: string, name: string): Record<string, string | number> {
  const url = new URL(db);
  return {
    'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'database.hostname': url.hostname,
    'database.port': url.port,
    'database.user': decodeURIComponent(url.username),
    // the stack's URLs carry no password: its clients take it from PGPASSWORD, as libpq's do (testkit/testStack.ts)
    'database.password': decodeURIComponent(url.password) || (process.env.PGPASSWORD ?? ''),
    'database.dbname': url.pathname.slice(1),
    'topic.prefix': name,
    'plugin.name': 'pgoutput',
    'slot.name': name,
    'slot.drop.on.stop': 'true',
    'publication.name': name,
    'publication.autocreate.mode': 'filtered',
    'table.include.list': `public.${table}`,
    'snapshot.mode': 'initial',
    // the default 500 ms poll is the whole latency gap between the peers; 5 ms as pgtunnel's poll
    'poll.interval.ms': 5,
    'max.batch.size': 8192,
    'max.queue.size': 32768,
    // the broker does not auto-create topics
    'topic.creation.default.replication.factor': 1,
    'topic.creation.default.partitions': 1,
  };
}

/** Debezium's JDBC sink writing `topic` into `table` of `db`, as its documentation configures it for Debezium sources. */
export function debeziumSink(db: string, topic: string, table: string): Record<string, string | number> {
  const url = new URL(db);
  return {
    'connector.class': 'io.debezium.connector.jdbc.JdbcSinkConnector',
    'connection.url': `jdbc:postgresql://${url.host}${url.pathname}`,
    'connection.username': decodeURIComponent(url.username),
    'connection.password': decodeURIComponent(url.password) || (process.env.PGPASSWORD ?? ''),
    topics: topic,
    'insert.mode': 'upsert',
    'delete.enabled': 'true',
    'primary.key.mode': 'record_key',
    'schema.evolution': 'none',
    'collection.name.format': table,
    // 'reWriteBatchedInserts' fails upserts of one key twice in a batch; unnest fails on DATE columns
    'batch.size': 2000,
    'consumer.override.fetch.max.wait.ms': 200,
    'consumer.override.auto.offset.reset': 'earliest',
  };
}

/** One Debezium pipeline (source + sink connectors) on a database pair; removed, slot included, by `stop`. */
class DebeziumPipeline {
  private constructor(private readonly connect: ConnectWorker, private readonly name: string) {}

  /** With pgtunnel on `--format avro`, Debezium uses Avro through the same registry too; else its default, JSON with schemas. */
  static async start(ctx: BenchContext, connect: ConnectWorker, dbs: { source: string; target: string }, table: string, name: string): Promise<DebeziumPipeline> {
    const pipeline = new DebeziumPipeline(connect, name);
    const registry = ctx.env.PGTUNNEL_TEST_REGISTRY_URL;
    const avro = (register: boolean) => (ctx.format === 'avro' && registry ? { ...apicurioAvroConverter('key', registry, register), ...apicurioAvroConverter('value', registry, register) } : {});
    // a task starts in seconds on a quiet host, minutes on a loaded one (the sink's Hibernate boot): not what is measured
    const startMs = 300_000;
    await connect.addConnector(`${name}-source`, { ...debeziumSource(dbs.source, table, name), ...avro(true) }, startMs);
    await connect.addConnector(`${name}-sink`, { ...debeziumSink(dbs.target, `${name}.public.${table}`, table), ...avro(false) }, startMs);
    return pipeline;
  }

  async check(): Promise<void> {
    for (const c of [`${this.name}-source`, `${this.name}-sink`]) {
      const trace = await this.connect.failure(c);
      if (trace) throw new Error(`bench: Debezium connector ${c} failed: ${trace}`);
    }
  }

  async stop(): Promise<void> {
    for (const c of [`${this.name}-sink`, `${this.name}-source`]) await this.connect.removeConnector(c).catch(() => {});
  }
}

export async function debeziumSnapshot(ctx: BenchContext, connect: ConnectWorker, rows: number): Promise<{ seconds: number }> {
  await ctx.dropSlots('bench_peer_snapshot');
  const dbs = await ctx.databases('bench_peer_snapshot', employeesDdl);
  await sql(dbs.source, fill(rows));
  await sql(dbs.source, 'VACUUM ANALYZE employees');
  const start = Date.now();
  const pipeline = await DebeziumPipeline.start(ctx, connect, dbs, 'employees', `peer_snapshot_${Date.now()}`);
  try {
    await waitUntil('the Debezium snapshot in the target', async () => {
      await pipeline.check();
      return (await count(dbs.target, 'employees')) >= rows;
    }, 1_800_000, 200);
    return { seconds: (Date.now() - start) / 1000 };
  } finally {
    await pipeline.stop();
    await ctx.dropSlots('bench_peer_snapshot');
  }
}

export async function debeziumLatency(ctx: BenchContext, connect: ConnectWorker, rate: number, seconds: number): Promise<LatencyResult> {
  await ctx.dropSlots('bench_peer_latency');
  const dbs = await ctx.databases('bench_peer_latency', sourceDdl, targetDdl);
  const pipeline = await DebeziumPipeline.start(ctx, connect, dbs, 'bench_latency', `peer_latency_${Date.now()}`);
  try {
    // streaming, and the sink has its partition: a probe row made it through
    await sql(dbs.source, "INSERT INTO bench_latency VALUES (0, 'probe')");
    await waitUntil('the probe row through Debezium', async () => {
      await pipeline.check();
      return (await count(dbs.target, 'bench_latency')) > 0;
    }, 120_000, 20);
    const n = await fixedRateLoad(dbs.source, rate, seconds);
    const result = await measure(dbs.source, dbs.target, n + 1);
    await pipeline.check();
    return result;
  } finally {
    await pipeline.stop();
    await ctx.dropSlots('bench_peer_latency');
  }
}

type Peer = { snapshot: { seconds: number }; latency: LatencyResult; rssMb: number };
type Ours = { snap: Awaited<ReturnType<typeof snapshot>>; tunnel: LatencyResult & { peakRssMb: number }; logical: LatencyResult & { peakRssMb: number } };

/** pgtunnel's three measures in `ctx.format`: the snapshot, then latency with trigger and with logical capture. */
async function ours(ctx: BenchContext, plan: { rows: number; rate: number; seconds: number }, log: (text: string) => void): Promise<Ours> {
  log(`${ctx.format}: snapshot of ${plan.rows} rows: COPY pipe and pgtunnel`);
  const snap = await snapshot(ctx, plan.rows);
  log(`${ctx.format}: latency at ${plan.rate}/s for ${plan.seconds} s: pgtunnel`);
  const tunnel = await tunnelLatency(ctx, plan.rate, plan.seconds);
  // pgtunnel's logical capture reads the same pgoutput stream as Debezium's connector: the like-for-like pair
  log(`${ctx.format}: latency at ${plan.rate}/s for ${plan.seconds} s: pgtunnel, capture: logical`);
  process.env.PGTUNNEL_CAPTURE = 'logical'; // the bench tunnels inherit the environment
  try {
    return { snap, tunnel, logical: await tunnelLatency(ctx, plan.rate, plan.seconds) };
  } finally {
    delete process.env.PGTUNNEL_CAPTURE;
  }
}

/** Debezium's snapshot and latency on one Connect worker, in its encoding for `ctx.format` (Avro for avro, else JSON with schemas). */
async function theirs(ctx: BenchContext, plan: { rows: number; rate: number; seconds: number }, log: (text: string) => void): Promise<Peer> {
  // Connect's own default heap (2 GB), as its users run it
  const connect = await ConnectWorker.start(ctx.home, path.join(ctx.home, 'bench-connect'), ctx.brokers, { heap: '2g' });
  try {
    log(`${peerEncoding(ctx.format)}: snapshot of ${plan.rows} rows: Debezium`);
    const dSnap = await debeziumSnapshot(ctx, connect, plan.rows);
    log(`${peerEncoding(ctx.format)}: latency at ${plan.rate}/s for ${plan.seconds} s: Debezium`);
    const dLat = await debeziumLatency(ctx, connect, plan.rate, plan.seconds);
    return { snapshot: dSnap, latency: dLat, rssMb: connect.peakRssMb() };
  } finally {
    await connect.stop();
  }
}

const peerEncoding = (format: BenchContext['format']) => (format === 'avro' ? 'Avro' : 'JSON with schemas');
const ourEncoding = (format: BenchContext['format']) => (format === 'avro' ? 'Avro' : format === 'json' ? 'JSON' : 'JSON Schema');

/** One table per format: pgtunnel in that format beside Debezium in its nearest encoding. */
function peersTable(format: BenchContext['format'], plan: { rows: number; rate: number; seconds: number }, us: Ours, peer: Peer): string {
  const f = (n: number, digits = 1) => n.toFixed(digits);
  const ms = (n: number) => `${f(n)} ms`;
  const { snap, tunnel, logical } = us;
  const rows = [
    [`snapshot ${plan.rows} rows (COPY pipe ${f(snap.copySeconds, 2)} s)`, `${f(snap.tunnelSeconds)} s`, `${f(peer.snapshot.seconds)} s`, f(peer.snapshot.seconds / snap.tunnelSeconds, 2)],
    [`latency p50 (${plan.rate}/s, ${plan.seconds} s, commit → target)`, ms(tunnel.p50), ms(peer.latency.p50), f(peer.latency.p50 / tunnel.p50, 2)],
    ['latency p99', ms(tunnel.p99), ms(peer.latency.p99), f(peer.latency.p99 / tunnel.p99, 2)],
    ['latency max', ms(tunnel.max), ms(peer.latency.max), f(peer.latency.max / tunnel.max, 2)],
    [`latency p50 / p99 / max, pgtunnel with capture: logical (pgoutput, as Debezium)`, `${f(logical.p50)} / ${f(logical.p99)} / ${f(logical.max)} ms`, `${f(peer.latency.p50)} / ${f(peer.latency.p99)} / ${f(peer.latency.max)} ms`, `${f(peer.latency.p50 / logical.p50, 2)} / ${f(peer.latency.p99 / logical.p99, 2)} / ${f(peer.latency.max / logical.max, 2)}`],
    ['peak RSS (pgtunnel process / Connect worker)', `${f(Math.max(snap.peakRssMb, tunnel.peakRssMb, logical.peakRssMb), 0)} MB`, `${f(peer.rssMb, 0)} MB`, '-'],
  ];
  return [`| measure | pgtunnel (${ourEncoding(format)}) | Debezium 3.6, tuned (${peerEncoding(format)}) | Debezium / pgtunnel |`, '|---|---|---|---|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/**
 * Both peers on the same plan, one after the other on the same stack, once per format: pgtunnel in each, Debezium
 * once per encoding it has (JSON with schemas beside json and json-schema, Avro beside avro). Prints (and records) a table per format.
 */
export async function peersBench(ctx: BenchContext, formats: BenchContext['format'][], quick: boolean, record: boolean): Promise<void> {
  const plan = quick ? { rows: 50_000, rate: 200, seconds: 20 } : { rows: 1_000_000, rate: 1000, seconds: 60 };
  const log = (text: string) => console.log(`bench: ${text}`);
  log(`peers plan ${JSON.stringify({ ...plan, formats })}`);
  const peers = new Map<string, Peer>();
  const tables: string[] = [];
  for (const format of formats) {
    ctx.format = format;
    const us = await ours(ctx, plan, log);
    let peer = peers.get(peerEncoding(format));
    if (!peer) peers.set(peerEncoding(format), (peer = await theirs(ctx, plan, log)));
    const table = peersTable(format, plan, us, peer);
    console.log(`\n${table}\n`);
    tables.push(table);
  }
  if (record) {
    const date = new Date().toISOString().slice(0, 10);
    appendFileSync(path.join(root, 'bench', 'RESULTS.md'), `\n## Peers ${date} (npm run bench -- --peers --format ${formats.join(',')}, 2 cores)\nDebezium 3.6 PostgreSQL connector (pgoutput, poll.interval.ms=5) + JDBC sink (upsert, batch.size=2000) on Kafka Connect 4.1.1 standalone, same broker, source, load and target as pgtunnel; one after the other. Debezium runs once per encoding: its JSON-with-schemas figures stand beside both pgtunnel's JSON and JSON Schema.\n\n${tables.join('\n\n')}\n`);
    log('recorded in bench/RESULTS.md');
  }
}
