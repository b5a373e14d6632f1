// node dist/bench/memory.js [--rows 1000000] [--bulk 20] [--backlog 0] [--flood 0] [--latency 0] [--turns 1]
//   [--limits shipped,128/160/8,base:shipped] [--base DIR]: what makes the peak RSS of `pgtunnel run` (issue 21 item 5),
// one stack of its own. The runs of `npm run bench` that the peak is taken over: a snapshot of --rows rows (0: none), a
// bulk writer (100-row transactions) for --bulk seconds, with --backlog N N changes captured while no tunnel ran, with
// --flood S 2,500 one-row transactions/s for S seconds, with --latency S 1,000/s for S seconds (and their latency). Each run is made by
// every variant in turn (alternated, --turns times), so the variants' figures are same-run ratios. A variant is the
// side threads' heap caps (producer old / consumer old / young MB; `shipped` = sideThread.ts's); `base:` runs it
// with the build in --base (another checkout with bench/limitedTunnel.ts compiled); ending `@one` runs both sides on
// the main thread (threads: false), `@two` in worker threads (threads: true), neither `auto`; `+flag` adds a node argument
// to that variant's process (V8 flags NODE_OPTIONS refuses too). Every 0.5 s it samples /metrics: heap used, heap committed and external
// memory per thread; the peak RSS is the process's VmHWM. Not part of `npm run bench`.
import { createServer } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startTestStack } from '../testkit/testStack.js';
import { employeesDdl } from '../src/stack/demo.js';
import { BenchContext, BenchTunnel, root, sql, waitUntil } from './context.js';
import { fill } from './snapshot.js';
import { fixedRateLoad, latencies, sourceDdl, targetDdl } from './latency.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' }, bulk: { type: 'string', default: '20' }, backlog: { type: 'string', default: '0' }, flood: { type: 'string', default: '0' }, latency: { type: 'string', default: '0' }, turns: { type: 'string', default: '1' }, limits: { type: 'string', default: 'shipped' }, base: { type: 'string', default: '' }, flags: { type: 'string', default: '' } } });
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = await startTestStack(home, 'bench-memory-stack');
const ctx = new BenchContext(own.stack, own.env, home);
const entryOf = (variant: string) => path.join(variant.startsWith('base:') ? path.resolve(values.base!) : root, 'dist/bench/limitedTunnel.js');

const freePort = () => new Promise<number>((resolve) => {
  const server = createServer().listen(0, '127.0.0.1', () => {
    const port = (server.address() as { port: number }).port;
    server.close(() => resolve(port));
  });
});

/** Peaks (MB) of the per-thread series in /metrics, keyed `thread series`. */
class Peaks {
  readonly mb = new Map<string, number>();
  private static readonly series = { heap_size_used_bytes: 'used', heap_size_total_bytes: 'committed', external_memory_bytes: 'external' } as Record<string, string>;

  async sample(port: number): Promise<void> {
    const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).catch(() => '');
    // without worker threads the series carry no thread label: the main thread's
    for (const m of text.matchAll(/^pgtunnel_nodejs_(heap_size_used_bytes|heap_size_total_bytes|external_memory_bytes)(?:\{thread="(\w+)"\})? (\d+)/gm)) {
      const key = `${m[2] ?? 'main'} ${Peaks.series[m[1]!]}`;
      this.mb.set(key, Math.max(this.mb.get(key) ?? 0, Number(m[3]) / 2 ** 20));
    }
  }

  toString(): string {
    return ['main', 'producer', 'consumer'].filter((t) => this.mb.has(`${t} used`)).map((t) => `${t} ${['used', 'committed', 'external'].map((s) => (this.mb.get(`${t} ${s}`) ?? 0).toFixed(0)).join('/')}`).join(', ');
  }
}

const count = async (target: string) => Number((await sql<{ n: string }>(target, 'SELECT count(*) AS n FROM employees'))[0]!.n);

/** A tunnel with these caps, sampled until `done`; its seconds from start, peak RSS and per-thread peaks. */
async function measured(dbs: { source: string; target: string }, variant: string, body: (tunnel: BenchTunnel, peaks: () => Promise<void>) => Promise<void>, table = 'employees'): Promise<{ seconds: number; rss: number; peaks: Peaks }> {
  const port = await freePort();
  // --flags: V8 flags of the whole process (the main thread's; the workers' caps come from resourceLimits)
  // `@one`: both sides on the main thread (config `threads: false`), one isolate instead of three
  // `+flag`: node arguments of this variant's process, beside --flags (e.g. `shipped@one+--max-semi-space-size=32`)
  const [spec, ...own] = variant.split('+');
  const limits = spec!.replace(/^base:/, '').replace(/@(one|two)$/, '');
  const one: Record<string, string> = spec!.endsWith('@one') ? { PGTUNNEL_THREADS: 'false' } : spec!.endsWith('@two') ? { PGTUNNEL_THREADS: 'true' } : {};
  const env = ctx.tunnelEnv(dbs, table, { PGTUNNEL_HTTP_PORT: String(port), ...one, ...(limits === 'shipped' ? {} : { PGTUNNEL_BENCH_HEAP_LIMITS: limits }), ...(values.flags ? { NODE_OPTIONS: values.flags } : {}) });
  const start = Date.now();
  // node's arguments, not NODE_OPTIONS: it refuses most V8 flags there (--optimize-for-size, --heap-growing-percent)
  const tunnel = new BenchTunnel(env, ['run'], entryOf(variant), own);
  const peaks = new Peaks();
  try {
    await body(tunnel, () => peaks.sample(port));
    return { seconds: (Date.now() - start) / 1000, rss: tunnel.peakRssMb(), peaks };
  } finally {
    await tunnel.stop();
  }
}

async function snapshotRun(limits: string, rows: number): Promise<string> {
  const dbs = await ctx.databases('bench_memory_snapshot', employeesDdl);
  await sql(dbs.source, fill(rows));
  await sql(dbs.source, 'VACUUM ANALYZE employees');
  const r = await measured(dbs, limits, (_t, sample) => waitUntil('the snapshot in the target', async () => (await sample(), (await count(dbs.target)) >= rows), 900_000, 500));
  return `snapshot ${rows}: ${r.seconds.toFixed(1)} s (${(rows / r.seconds / 1000).toFixed(1)}k rows/s), peak RSS ${r.rss.toFixed(0)} MB; used/committed/external MB ${r.peaks}`;
}

async function bulkRun(limits: string, seconds: number): Promise<string> {
  const dbs = await ctx.databases('bench_memory_bulk', employeesDdl);
  let line = '';
  const r = await measured(dbs, limits, async (tunnel, sample) => {
    await tunnel.ready(dbs.source, dbs.target);
    const client = new pg.Client({ connectionString: dbs.source });
    await client.connect();
    const start = Date.now();
    let changes = 0;
    let sampled = 0;
    try {
      while (Date.now() - start < seconds * 1000) {
        await client.query(`INSERT INTO employees (first_name, last_name, dob, city, salary) SELECT 'f', 'l', DATE '2000-01-01', 'c', g FROM generate_series(1, 100) g`);
        changes += 100;
        if (Date.now() - sampled > 500) [sampled] = [Date.now(), await sample()];
      }
    } finally {
      await client.end();
    }
    const writerPerSec = changes / ((Date.now() - start) / 1000);
    await waitUntil('the bulk in the target', async () => (await sample(), (await count(dbs.target)) >= changes + 1), 600_000, 200);
    const tunnelPerSec = changes / ((Date.now() - start) / 1000);
    line = `bulk ${changes}: writer ${writerPerSec.toFixed(0)}/s, tunnel ${tunnelPerSec.toFixed(0)}/s (${(tunnelPerSec / writerPerSec).toFixed(2)})`;
  });
  return `${line}, peak RSS ${r.rss.toFixed(0)} MB; used/committed/external MB ${r.peaks}`;
}

async function backlogRun(limits: string, changes: number): Promise<string> {
  const dbs = await ctx.databases('bench_memory_backlog', employeesDdl);
  await measured(dbs, limits, (tunnel) => tunnel.ready(dbs.source, dbs.target));
  for (let done = 0; done < changes; done += 100_000) await sql(dbs.source, fill(Math.min(100_000, changes - done)));
  const r = await measured(dbs, limits, (_t, sample) => waitUntil('the backlog in the target', async () => (await sample(), (await count(dbs.target)) >= changes + 1), 900_000, 500));
  return `backlog ${changes}: ${r.seconds.toFixed(1)} s, peak RSS ${r.rss.toFixed(0)} MB; used/committed/external MB ${r.peaks}`;
}

/** One-row transactions at `rate`/s for `seconds` from 4 writers, as bench/latency.ts's load, sampled all along. */
async function rateRun(limits: string, name: string, rate: number, seconds: number): Promise<string> {
  const dbs = await ctx.databases('bench_memory_rate', sourceDdl, targetDdl);
  let latency = '';
  const r = await measured(dbs, limits, async (tunnel, sample) => {
    await tunnel.ready(dbs.source, dbs.target, 'bench_latency', "INSERT INTO bench_latency VALUES (0, 'probe')");
    let loading = true;
    const sampler = (async () => {
      while (loading) await Promise.all([sample(), new Promise((r) => setTimeout(r, 500))]);
    })();
    try {
      const count = await fixedRateLoad(dbs.source, rate, seconds);
      await waitUntil(`the ${name} in the target`, async () => Number((await sql<{ n: string }>(dbs.target, 'SELECT count(*) AS n FROM bench_latency'))[0]!.n) >= count + 1, 120_000, 100);
    } finally {
      loading = false;
      await sampler;
    }
    const l = await latencies(dbs.source, dbs.target, 'id > 0');
    latency = ` p50 ${l.p50.toFixed(1)} / p99 ${l.p99.toFixed(1)} / max ${l.max.toFixed(1)} ms,`;
  }, 'bench_latency');
  return `${name} ${rate}/s ${seconds} s:${latency} peak RSS ${r.rss.toFixed(0)} MB; used/committed/external MB ${r.peaks}`;
}

const runs: [string, (limits: string) => Promise<string>][] = [
  ['snapshot', (l) => snapshotRun(l, Number(values.rows))],
  ['bulk', (l) => bulkRun(l, Number(values.bulk))],
  ['backlog', (l) => backlogRun(l, Number(values.backlog))],
  ['flood', (l) => rateRun(l, 'flood', 2500, Number(values.flood))],
  ['latency', (l) => rateRun(l, 'latency', 1000, Number(values.latency))],
];
const sizes: Record<string, string> = { snapshot: values.rows!, bulk: values.bulk!, backlog: values.backlog!, flood: values.flood!, latency: values.latency! };

try {
  for (const [, run] of runs.filter(([name]) => Number(sizes[name]) > 0)) {
    for (let turn = 0; turn < Number(values.turns); turn++) {
      for (const limits of values.limits!.split(',')) console.log(`memory [${limits}${values.flags ? ` ${values.flags}` : ''}] ${await run(limits)}`);
    }
  }
} finally {
  await own.stack.down();
}
