// node dist/bench/idle.js [--seconds 30] [--probes 40]: what an idle tunnel costs and how fast it wakes.
// CPU of the tunnel process and of its producer's source backend over --seconds of no writes (from
// /proc/<pid>/stat), then single-row probes written one at a time with idle gaps between them, each
// measured source commit → target commit (both from track_commit_timestamp). PGTUNNEL_* variables in the
// environment (e.g. PGTUNNEL_EXACTLY_ONCE=true) reach the tunnel.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { currentTestStack, startTestStack } from '../test/helpers/testStack.js';
import { BenchContext, BenchTunnel, percentile, root, sql, waitUntil } from './context.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '30' }, probes: { type: 'string', default: '40' } } });
const seconds = Number(values.seconds);
const probes = Number(values.probes);
const ticksPerSecond = 100;

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

const f = (n: number) => n.toFixed(1);
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = process.env.PGTUNNEL_TEST_SOURCE_SERVER ? undefined : await startTestStack(home, 'idle-stack');
const ctx = new BenchContext(own?.stack ?? currentTestStack(), own?.env ?? { ...(process.env as Record<string, string>) }, home);
try {
  const dbs = await ctx.databases('bench_idle', 'CREATE TABLE bench_latency (id bigint PRIMARY KEY, payload text)');
  const tunnel = new BenchTunnel(ctx.tunnelEnv(dbs, 'bench_latency'));
  try {
    await tunnel.ready(dbs.source, dbs.target, 'bench_latency', "INSERT INTO bench_latency VALUES (0, 'probe')");
    const backends = await sql<{ pid: number }>(dbs.source, "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgtunnel producer%'");
    const pids = { tunnel: tunnel.child.pid!, producerBackend: backends[0]?.pid };
    const before = { tunnel: cpuSeconds(pids.tunnel), backend: pids.producerBackend ? cpuSeconds(pids.producerBackend) : 0 };
    const started = Date.now();
    await new Promise((r) => setTimeout(r, seconds * 1000)); // the measurement window itself, not a synchronisation
    const elapsed = (Date.now() - started) / 1000;
    const tunnelCpu = (100 * (cpuSeconds(pids.tunnel) - before.tunnel)) / elapsed;
    const backendCpu = pids.producerBackend ? (100 * (cpuSeconds(pids.producerBackend) - before.backend)) / elapsed : NaN;
    console.log(`idle: over ${f(elapsed)} s the tunnel process used ${f(tunnelCpu)}% of a core, its producer's source backend ${f(backendCpu)}%`);
    const latencies: number[] = [];
    for (let id = 1; id <= probes; id++) {
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 200)); // idle gaps between probes, by design
      await sql(dbs.source, "INSERT INTO bench_latency VALUES ($1, 'probe')", [id]);
      await waitUntil(`probe ${id} in the target`, async () => (await sql(dbs.target, 'SELECT 1 FROM bench_latency WHERE id = $1', [id])).length > 0, 30_000, 2);
    }
    const commitMs = 'extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 * 1000';
    const source = new Map((await sql<{ id: string; ms: number }>(dbs.source, `SELECT id::text, ${commitMs} AS ms FROM bench_latency WHERE id > 0`)).map((r) => [r.id, r.ms]));
    let first = NaN;
    for (const r of await sql<{ id: string; ms: number }>(dbs.target, `SELECT id::text, ${commitMs} AS ms FROM bench_latency WHERE id > 0`)) {
      if (r.id === '1') first = r.ms - source.get(r.id)!;
      else latencies.push(r.ms - source.get(r.id)!);
    }
    latencies.sort((a, b) => a - b);
    // the first probe follows the whole idle window, when the source-side wait polls slowest (sql/source/000005)
    console.log(`idle: first probe after ${f(elapsed)} s idle ${f(first)} ms; ${latencies.length} more single-change probes after 50–250 ms gaps, commit → target commit p50 ${f(percentile(latencies, 50))}  p99 ${f(percentile(latencies, 99))}  max ${f(latencies.at(-1)!)} ms`);
  } finally {
    await tunnel.stop();
  }
} finally {
  await own?.stack.down();
}
process.exit(0);
