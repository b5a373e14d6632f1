// node dist/bench/threads.js [--rows 200000] [--rate 500] [--seconds 20]: the two-thread change's own figures, one run on
// a stack of its own: peak RSS of `pgtunnel run` over a snapshot, the heap each thread peaked at and the
// cost of a /metrics scrape (sampled while it runs), then latency at a fixed rate. Not part of `npm run bench`.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startTestStack } from '../testkit/testStack.js';
import { employeesDdl } from '../src/stack/demo.js';
import { BenchContext, BenchTunnel, root, sql, waitUntil } from './context.js';
import { fill } from './snapshot.js';
import { tunnelLatency } from './latency.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '200000' }, rate: { type: 'string', default: '500' }, seconds: { type: 'string', default: '20' }, port: { type: 'string', default: '18431' } } });
const rows = Number(values.rows);
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = await startTestStack(home, 'bench-threads-stack');
const ctx = new BenchContext(own.stack, own.env, home);

/** Heap used per thread (label `thread`, or the process's one series before threads) and the scrape's wall time. */
async function scrape(port: string, heaps: Map<string, number>, scrapeMs: number[]): Promise<void> {
  const start = performance.now();
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).catch(() => '');
  if (!text) return;
  scrapeMs.push(performance.now() - start);
  for (const m of text.matchAll(/^pgtunnel_nodejs_heap_size_used_bytes(?:\{thread="(\w+)"\})? (\d+)/gm)) {
    const thread = m[1] ?? 'process';
    heaps.set(thread, Math.max(heaps.get(thread) ?? 0, Number(m[2]) / 2 ** 20));
  }
  for (const m of text.matchAll(/^pgtunnel_nodejs_heap_space_size_used_bytes\{space="new"(?:,thread="(\w+)")?\} (\d+)/gm)) {
    const key = `${m[1] ?? 'process'} new space`;
    heaps.set(key, Math.max(heaps.get(key) ?? 0, Number(m[2]) / 2 ** 20));
  }
}

try {
  const dbs = await ctx.databases('bench_threads_snapshot', employeesDdl);
  await sql(dbs.source, fill(rows));
  await sql(dbs.source, 'VACUUM ANALYZE employees');
  const heaps = new Map<string, number>();
  const scrapeMs: number[] = [];
  const start = Date.now();
  const tunnel = new BenchTunnel(ctx.tunnelEnv(dbs, 'employees', { PGTUNNEL_HTTP_PORT: values.port! }));
  try {
    await waitUntil('the snapshot in the target', async () => {
      await scrape(values.port!, heaps, scrapeMs);
      return Number((await sql<{ n: string }>(dbs.target, 'SELECT count(*) AS n FROM employees'))[0]!.n) >= rows;
    }, 900_000, 500);
    const seconds = (Date.now() - start) / 1000;
    scrapeMs.sort((a, b) => a - b);
    console.log(`snapshot of ${rows} rows: ${seconds.toFixed(1)} s, peak RSS ${tunnel.peakRssMb().toFixed(0)} MB`);
    console.log(`peak heap used per thread (MB): ${[...heaps].map(([t, mb]) => `${t} ${mb.toFixed(0)}`).join(', ')}`);
    console.log(`/metrics scrape, ${scrapeMs.length} samples: median ${scrapeMs[scrapeMs.length >> 1]?.toFixed(1)} ms, max ${scrapeMs.at(-1)?.toFixed(1)} ms`);
  } finally {
    await tunnel.stop();
  }
  const lat = await tunnelLatency(ctx, Number(values.rate), Number(values.seconds));
  console.log(`latency at ${values.rate}/s for ${values.seconds} s: p50 ${lat.p50.toFixed(1)} p99 ${lat.p99.toFixed(1)} max ${lat.max.toFixed(1)} ms, peak RSS ${lat.peakRssMb.toFixed(0)} MB`);
} finally {
  await own.stack.down();
}
