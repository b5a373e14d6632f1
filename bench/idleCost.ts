import { readFileSync } from 'node:fs';
import { BenchContext, BenchTunnel, percentile, sql, threadCpuNs, waitUntil } from './context.js';

export interface IdleResult {
  seconds: number;
  /** % of one core */
  tunnelCpu: number;
  producerBackendCpu: number;
  /** % of one core per thread of the tunnel process, by thread name (the producer, consumer, main and V8's own threads) */
  threads: Record<string, number>;
  /** the first probe after the whole idle window, commit → target commit, ms */
  firstProbeMs: number;
  probes: { count: number; p50: number; p99: number; max: number };
}

const ticksPerSecond = 100;

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

/**
 * What an idle tunnel costs and how fast it wakes: CPU of the tunnel process and of its producer's source
 * backends (its connection; the walsender too in logical capture) over `seconds` of no writes (from
 * /proc/<pid>/stat), then single-row probes written one at a
 * time with idle gaps between them, each measured source commit → target commit (track_commit_timestamp).
 * `entry`: another build's bin/pgtunnel.js (bench/idle.ts's `--base`).
 */
export async function idleCost(ctx: BenchContext, seconds: number, probes: number, entry?: string): Promise<IdleResult> {
  const dbs = await ctx.databases('bench_idle', 'CREATE TABLE bench_latency (id bigint PRIMARY KEY, payload text)');
  const tunnel = new BenchTunnel(ctx.tunnelEnv(dbs, 'bench_latency'), ['run'], entry);
  try {
    await tunnel.ready(dbs.source, dbs.target, 'bench_latency', "INSERT INTO bench_latency VALUES (0, 'probe')");
    // every session of the producer, this database's only (inside `npm test` other files' tunnels have producer
    // backends on the same server): its connection and, in logical capture, the walsender reading the slot
    const backends = (await sql<{ pid: number }>(dbs.source, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'pgtunnel producer%'")).map((b) => b.pid);
    const backendCpu = () => backends.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    const before = { tunnel: cpuSeconds(tunnel.child.pid!), backends: backendCpu(), threads: threadCpuNs(tunnel.child.pid!) };
    const started = Date.now();
    await new Promise((r) => setTimeout(r, seconds * 1000)); // the measurement window itself, not a synchronisation
    const elapsed = (Date.now() - started) / 1000;
    const tunnelCpu = (100 * (cpuSeconds(tunnel.child.pid!) - before.tunnel)) / elapsed;
    const producerBackendCpu = backends.length > 0 ? (100 * (backendCpu() - before.backends)) / elapsed : NaN;
    const threads = Object.fromEntries([...threadCpuNs(tunnel.child.pid!)].map(([name, ns]) => [name, (100 * (ns - (before.threads.get(name) ?? 0))) / 1e9 / elapsed]));
    for (let id = 1; id <= probes; id++) {
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 200)); // idle gaps between probes, by design
      await sql(dbs.source, "INSERT INTO bench_latency VALUES ($1, 'probe')", [id]);
      await waitUntil(`probe ${id} in the target`, async () => (await sql(dbs.target, 'SELECT 1 FROM bench_latency WHERE id = $1', [id])).length > 0, 30_000, 2);
    }
    const commitMs = 'extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 * 1000';
    const source = new Map((await sql<{ id: string; ms: number }>(dbs.source, `SELECT id::text, ${commitMs} AS ms FROM bench_latency WHERE id > 0`)).map((r) => [r.id, r.ms]));
    let firstProbeMs = NaN;
    const latencies: number[] = [];
    for (const r of await sql<{ id: string; ms: number }>(dbs.target, `SELECT id::text, ${commitMs} AS ms FROM bench_latency WHERE id > 0`)) {
      // the first probe follows the whole idle window, when the source-side wait polls slowest (sql/source/000005)
      if (r.id === '1') firstProbeMs = r.ms - source.get(r.id)!;
      else latencies.push(r.ms - source.get(r.id)!);
    }
    latencies.sort((a, b) => a - b);
    return { seconds: elapsed, tunnelCpu, producerBackendCpu, threads, firstProbeMs, probes: { count: latencies.length, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1)! } };
  } finally {
    await tunnel.stop();
  }
}
