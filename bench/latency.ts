import pg from 'pg';
import { BenchContext, BenchTunnel, percentile, sql, waitUntil } from './context.js';

// The target stamps each row when it is written; the source's commit time comes from track_commit_timestamp.
export const sourceDdl = 'CREATE TABLE bench_latency (id bigint PRIMARY KEY, payload text)';
export const targetDdl = `CREATE TABLE bench_latency (id bigint PRIMARY KEY, payload text, applied_at timestamptz);
  CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.applied_at := clock_timestamp(); RETURN NEW; END $$;
  CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON bench_latency FOR EACH ROW EXECUTE FUNCTION stamp();
  ALTER TABLE bench_latency ENABLE ALWAYS TRIGGER stamp;`;

export interface LatencyResult {
  count: number;
  p50: number;
  p99: number;
  max: number;
  /** sorted latencies in ms, for the plot */
  samples: number[];
  /** each change's source commit (Unix ms) and latency, in commit order: what a slow change overlapped */
  changes: { committedMs: number; ms: number }[];
}

/** One load transaction: the change numbered `id` (from 1). */
export type LoadStatement = (client: pg.Client, id: number) => Promise<unknown>;

const insertRow: LoadStatement = (client, id) => client.query("INSERT INTO bench_latency VALUES ($1, 'x')", [id]);

/** Single-statement transactions at a fixed rate from 4 connections: single-row inserts unless `statement` says otherwise. */
export async function fixedRateLoad(url: string, rate: number, seconds: number, statement: LoadStatement = insertRow): Promise<number> {
  const total = rate * seconds;
  let next = 0;
  const start = Date.now();
  const worker = async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      while (next < total) {
        const due = Math.floor(((Date.now() - start) / 1000) * rate);
        if (next >= due) {
          await new Promise((r) => setTimeout(r, 1));
          continue;
        }
        await statement(client, ++next);
      }
    } finally {
      await client.end();
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return total;
}

export async function measure(source: string, target: string, count: number): Promise<LatencyResult> {
  await waitUntil('every row in the target', async () => Number((await sql<{ n: string }>(target, 'SELECT count(*) AS n FROM bench_latency'))[0]!.n) >= count, 120_000, 100);
  return latencies(source, target);
}

/** Each row's source commit to its last write in the target (`where`: the rows that count), once every change arrived. */
export async function latencies(source: string, target: string, where = 'true'): Promise<LatencyResult> {
  const committed = await sql<{ id: string; ms: number }>(source, `SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 * 1000 AS ms FROM bench_latency WHERE ${where}`);
  const applied = new Map((await sql<{ id: string; ms: number }>(target, `SELECT id, extract(epoch FROM applied_at)::float8 * 1000 AS ms FROM bench_latency WHERE ${where}`)).map((r) => [r.id, r.ms]));
  const changes = committed.map((r) => ({ committedMs: r.ms, ms: applied.get(r.id)! - r.ms })).sort((a, b) => a.committedMs - b.committedMs);
  const samples = changes.map((c) => c.ms).sort((a, b) => a - b);
  return { count: samples.length, p50: percentile(samples, 50), p99: percentile(samples, 99), max: samples.at(-1)!, samples, changes };
}

/** PostgreSQL's own logical replication db1 → db2: the floor any tunnel is measured against. */
export async function nativeLatency(ctx: BenchContext, rate: number, seconds: number): Promise<LatencyResult> {
  const dbs = await ctx.databases('bench_native', sourceDdl, targetDdl);
  await sql(dbs.source, 'CREATE PUBLICATION bench_pub FOR TABLE bench_latency');
  const server = new URL(ctx.sourceServer);
  // the embedded stack asks for a password; the subscription's libpq connection carries it (conninfo quoting,
  // then the server's own literal quoting: CREATE SUBSCRIPTION takes no parameters)
  const password = decodeURIComponent(server.password) || process.env.PGPASSWORD || '';
  const conninfo = `host=127.0.0.1 port=${server.port} dbname=bench_native user=postgres password='${password.replace(/[\\']/g, (c) => `\\${c}`)}'`;
  const [literal] = await sql<{ q: string }>(dbs.target, 'SELECT quote_literal($1::text) AS q', [conninfo]);
  await sql(dbs.target, `CREATE SUBSCRIPTION bench_sub CONNECTION ${literal!.q} PUBLICATION bench_pub WITH (copy_data = false)`);
  try {
    await waitUntil('the subscription to stream', async () => (await sql(dbs.source, "SELECT 1 FROM pg_stat_replication WHERE application_name = 'bench_sub' AND state = 'streaming'")).length > 0, 30_000, 100);
    const count = await fixedRateLoad(dbs.source, rate, seconds);
    return await measure(dbs.source, dbs.target, count);
  } finally {
    await sql(dbs.target, 'DROP SUBSCRIPTION bench_sub');
  }
}

export async function tunnelLatency(ctx: BenchContext, rate: number, seconds: number): Promise<LatencyResult & { peakRssMb: number }> {
  const dbs = await ctx.databases('bench_tunnel_latency', sourceDdl, targetDdl);
  const tunnel = new BenchTunnel(ctx.tunnelEnv(dbs, 'bench_latency'));
  try {
    await tunnel.ready(dbs.source, dbs.target, 'bench_latency', "INSERT INTO bench_latency VALUES (0, 'probe')");
    const count = await fixedRateLoad(dbs.source, rate, seconds);
    const result = await measure(dbs.source, dbs.target, count + 1);
    return { ...result, peakRssMb: tunnel.peakRssMb() };
  } finally {
    await tunnel.stop();
  }
}
