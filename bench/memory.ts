// node dist/bench/memory.js [--rows 1000000] [--bulk 20] [--backlog 0] [--limits shipped,128/160/8,base:shipped] [--base DIR]: what makes the peak
// RSS of `pgtunnel run` (issue 21 item 5), one stack of its own. Per variant of the side threads' heap caps
// (producer old / consumer old / young MB; `shipped` = sideThread.ts's), run one after the other in one
// invocation: a snapshot of --rows rows, a bulk writer (100-row transactions) for --bulk seconds and, with
// --backlog N, N changes captured while no tunnel ran. `base:` runs that variant with the build in --base (another
// checkout with bench/limitedTunnel.ts compiled), for a same-run before/after; a variant ending `@one` runs both sides on
// the main thread (threads: false); `+flag` adds V8 flags to that variant's process (NODE_OPTIONS). Every 0.5 s it samples /metrics: heap used, heap
// committed and external memory per thread; the peak RSS is the process's VmHWM. Not part of `npm run bench`.
import { createServer } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startTestStack } from '../testkit/testStack.js';
import { employeesDdl } from '../src/stack/demo.js';
import { BenchContext, BenchTunnel, root, sql, waitUntil } from './context.js';
import { fill } from './snapshot.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' }, bulk: { type: 'string', default: '20' }, backlog: { type: 'string', default: '0' }, limits: { type: 'string', default: 'shipped' }, base: { type: 'string', default: '' }, flags: { type: 'string', default: '' } } });
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
async function measured(dbs: { source: string; target: string }, variant: string, body: (tunnel: BenchTunnel, peaks: () => Promise<void>) => Promise<void>): Promise<{ seconds: number; rss: number; peaks: Peaks }> {
  const port = await freePort();
  // --flags: V8 flags of the whole process (the main thread's; the workers' caps come from resourceLimits)
  // `@one`: both sides on the main thread (config `threads: false`), one isolate instead of three
  // `+flag`: V8 flags of this variant's process, after --flags (e.g. `shipped@one+--max-semi-space-size=32`)
  const [spec, ...own] = variant.split('+');
  const limits = spec!.replace(/^base:/, '').replace(/@one$/, '');
  const one: Record<string, string> = spec!.endsWith('@one') ? { PGTUNNEL_THREADS: 'false' } : {};
  const flags = [values.flags, ...own].filter(Boolean).join(' ');
  const env = ctx.tunnelEnv(dbs, 'employees', { PGTUNNEL_HTTP_PORT: String(port), ...one, ...(limits === 'shipped' ? {} : { PGTUNNEL_BENCH_HEAP_LIMITS: limits }), ...(flags ? { NODE_OPTIONS: flags } : {}) });
  const start = Date.now();
  const tunnel = new BenchTunnel(env, ['run'], entryOf(variant));
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

try {
  for (const limits of values.limits!.split(',')) {
    console.log(`memory [${limits}${values.flags ? ` ${values.flags}` : ''}] ${await snapshotRun(limits, Number(values.rows))}`);
    if (Number(values.bulk) > 0) console.log(`memory [${limits}] ${await bulkRun(limits, Number(values.bulk))}`);
    if (Number(values.backlog) > 0) console.log(`memory [${limits}] ${await backlogRun(limits, Number(values.backlog))}`);
  }
} finally {
  await own.stack.down();
}
