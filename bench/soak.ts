// node dist/bench/soak.js [--minutes 10] [--rate 5] [--every 10] [--warmup 2]: the soak. The tunnel streams an
// idle table plus a trickle of changes (insert, update, delete in turn) for --minutes, on loopback only, while
// /metrics is scraped as Prometheus would; its RSS (VmRSS) is sampled every --every seconds. After --warmup
// minutes RSS must stay within ±10 MB of its first sample. Stops by itself; raw samples in .pgtunnel/soak-*.json.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { employeesDdl } from '../src/stack/demo.js';
import { currentTestStack, startTestStack } from '../testkit/testStack.js';
import { BenchContext, BenchTunnel, root, sql, waitUntil } from './context.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string', default: '5' },
    every: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
  },
});
const minutes = Number(values.minutes);
const rate = Number(values.rate);
const everyMs = Number(values.every) * 1000;
const warmupMs = Number(values.warmup) * 60_000;
const toleranceMb = 10;
if (!(minutes > 0 && minutes <= 24 * 60 && rate > 0 && rate <= 1000 && everyMs >= 1000)) throw new Error('soak: --minutes in (0, 1440], --rate in (0, 1000], --every ≥ 1');

type Sample = { s: number; rssMb: number; heapUsedMb: number | null; externalMb: number | null; changes: number };

function vmRssMb(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/)![1]) / 1024;
}

/** One Prometheus scrape of the tunnel: heap and external memory as the tunnel itself reports them. */
async function scrape(url: string): Promise<{ heapUsedMb: number | null; externalMb: number | null }> {
  const text = await (await fetch(`${url}metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const gauge = (name: string) => {
    const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+]+)$`, 'm'));
    return m ? Number(m[1]) / 1024 / 1024 : null;
  };
  return { heapUsedMb: gauge('pgtunnel_nodejs_heap_size_used_bytes'), externalMb: gauge('pgtunnel_nodejs_external_memory_bytes') };
}

/** Least-squares slope of y over x. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = process.env.PGTUNNEL_TEST_SOURCE_SERVER ? undefined : await startTestStack(home, 'soak-stack');
const ctx = new BenchContext(own?.stack ?? currentTestStack(), own?.env ?? { ...(process.env as Record<string, string>) }, home);
const f = (n: number, digits = 1) => n.toFixed(digits);
let tunnel: BenchTunnel | undefined;
let writer: pg.Client | undefined;
try {
  const dbs = await ctx.databases('bench_soak', employeesDdl);
  await sql(dbs.source, "INSERT INTO employees (first_name, salary) SELECT 'seed', g FROM generate_series(1, 1000) g");
  const extra: Record<string, string> = { PGTUNNEL_HTTP_PORT: '0', PGTUNNEL_HTTP_HOST: '127.0.0.1' };
  tunnel = new BenchTunnel(ctx.tunnelEnv(dbs, 'employees', extra));
  await tunnel.ready(dbs.source, dbs.target);
  const metricsUrl = tunnel.output.match(/dashboard at (http:\/\/127\.0\.0\.1:\d+\/)/)?.[1];
  if (!metricsUrl) throw new Error(`soak: the tunnel did not say where it serves metrics: ${tunnel.output.slice(-2000)}`);
  const pid = tunnel.child.pid!;
  console.log(`soak: tunnel pid ${pid} streaming; ${rate} changes/s for ${minutes} min, RSS every ${everyMs / 1000} s, metrics ${metricsUrl}`);

  writer = new pg.Client({ connectionString: dbs.source });
  await writer.connect();
  const started = Date.now();
  const end = started + minutes * 60_000;
  const samples: Sample[] = [];
  let changes = 0;
  let nextSample = started;
  // one change every 1/rate s on a fixed schedule (a late tick does not shift the rest): insert, update, delete
  for (let tick = 0; ; tick++) {
    const due = started + (tick * 1000) / rate;
    if (due >= end) break;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    const id = 1_000_000 + Math.floor(tick / 3);
    if (tick % 3 === 0) await writer.query("INSERT INTO employees (emp_id, first_name, salary) VALUES ($1, 'soak', 0)", [id]);
    else if (tick % 3 === 1) await writer.query('UPDATE employees SET salary = salary + 1 WHERE emp_id = $1', [id]);
    else await writer.query('DELETE FROM employees WHERE emp_id = $1', [id]);
    changes++;
    if (Date.now() >= nextSample) {
      if (tunnel.child.exitCode !== null) throw new Error(`soak: the tunnel exited: ${tunnel.output.slice(-2000)}`);
      const s: Sample = { s: (Date.now() - started) / 1000, rssMb: vmRssMb(pid), ...(await scrape(metricsUrl)), changes };
      samples.push(s);
      console.log(`soak: ${f(s.s, 0)} s  RSS ${f(s.rssMb)} MB  heap used ${s.heapUsedMb === null ? '?' : f(s.heapUsedMb)} MB  external ${s.externalMb === null ? '?' : f(s.externalMb)} MB  changes ${changes}`);
      nextSample += everyMs;
    }
  }
  // every change arrived: the target equals the source
  const fingerprint = 'SELECT count(*)::text || \':\' || coalesce(sum(salary), 0)::text || \':\' || coalesce(max(emp_id), 0)::text AS f FROM employees';
  const want = (await sql<{ f: string }>(dbs.source, fingerprint))[0]!.f;
  await waitUntil('the target to equal the source', async () => (await sql<{ f: string }>(dbs.target, fingerprint))[0]!.f === want, 120_000, 200);

  const after = samples.filter((s) => s.s * 1000 >= warmupMs);
  if (after.length < 2) throw new Error('soak: too few samples after the warm-up: run longer');
  const rss = after.map((s) => s.rssMb);
  const first = rss[0]!;
  const last = rss.at(-1)!;
  const min = Math.min(...rss);
  const max = Math.max(...rss);
  const mbPerMin = slope(after.map((s) => s.s / 60), rss);
  const heaps = after.filter((s) => s.heapUsedMb !== null).map((s) => s.heapUsedMb!);
  const heapSlope = heaps.length === after.length ? slope(after.map((s) => s.s / 60), heaps) : NaN;
  const flat = max - first <= toleranceMb && first - min <= toleranceMb;
  const date = new Date().toISOString().slice(0, 16).replace(':', '');
  const file = path.join(home, `soak-${date}.json`);
  writeFileSync(file, JSON.stringify({ minutes, rate, everyMs, warmupMs, changes, samples }, null, 1));
  console.log('\n| date | duration | trickle | changes | samples | RSS after warm-up: first / last / min / max | slope | heap used slope | within ±10 MB |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  console.log(`| ${new Date().toISOString().slice(0, 10)} | ${minutes} min | ${rate}/s | ${changes}, all in the target | ${samples.length} (${after.length} after ${values.warmup} min) | ${f(first)} / ${f(last)} / ${f(min)} / ${f(max)} MB | ${f(mbPerMin, 3)} MB/min | ${f(heapSlope, 3)} MB/min | ${flat ? 'yes' : '**no**'} |\n`);
  console.log(`soak: raw samples in ${path.relative(root, file)}`);
  process.exitCode = flat ? 0 : 1;
} finally {
  await writer?.end().catch(() => {});
  await tunnel?.stop();
  await own?.stack.down();
}
