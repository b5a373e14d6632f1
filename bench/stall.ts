// node dist/bench/stall.js [--rate 1000] [--seconds 60] [--slow 500]: the stall hunt. Single-row inserts at a
// fixed rate; each change's source commit → target commit time (both from track_commit_timestamp), p50/p99/max,
// and for every change at or over --slow ms the stage that held it, from the tunnel's debug stage timings.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { currentTestStack, startTestStack } from '../testkit/testStack.js';
import { BenchContext, BenchTunnel, percentile, root, sql, waitUntil } from './context.js';
import { fixedRateLoad } from './latency.js';

const { values } = parseArgs({ options: { rate: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '60' }, slow: { type: 'string', default: '500' }, from: { type: 'string' } } });
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const slowMs = Number(values.slow);

type Page = { txids: [number, number]; at: number; readMs: number; publishMs: number; saveMs: number };
type PolledSet = { arrivedAt: number; takenAt: number; committedAt: number; offsetsMs?: number };
type Vacuum = { at: number; ms: number };

/** Where one change spent its time, in ms; the stages add up to its latency. */
export interface Stages {
  /** source commit → the producer's read of the page began (poll sleep, vacuum, trigger check, the previous page) */
  poll: number;
  read: number;
  /** the page's publish until every message was acknowledged (acks=all) */
  publish: number;
  /** checkpoint and cleanup transaction in the source */
  save: number;
  /** producer's ack done → the consumer had the set (fetch wait, consumer busy); may overlap save */
  deliver: number;
  /** set buffered → taken by the apply loop (previous set's apply and group offset commits) */
  queue: number;
  /** target transaction until commit */
  apply: number;
}

export function stagesOf(commitMs: number, targetMs: number, page: Page, set: PolledSet): Stages {
  const acked = page.at + page.readMs + page.publishMs;
  return {
    poll: page.at - commitMs,
    read: page.readMs,
    publish: page.publishMs,
    save: page.saveMs,
    deliver: set.arrivedAt - acked - page.saveMs,
    queue: set.takenAt - set.arrivedAt,
    apply: targetMs - set.takenAt,
  };
}

/** Index of the last element ≤ value in an ascending array (-1 when none). */
function lastAtOrBelow(sorted: number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

function parseLog(output: string): { pages: Page[]; sets: PolledSet[]; vacuums: Vacuum[] } {
  const pages: Page[] = [];
  const sets: PolledSet[] = [];
  const vacuums: Vacuum[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    const e = JSON.parse(line) as Record<string, unknown>;
    if (e.msg === 'page published') pages.push(e as unknown as Page);
    else if (e.msg === 'set applied') sets.push(e as unknown as PolledSet);
    else if (e.msg === 'change table vacuumed') vacuums.push(e as unknown as Vacuum);
  }
  return { pages, sets, vacuums };
}

type Change = { txid: string; ms: number; targetMs: number; latency: number };
type Run = { started: number; rate: number; seconds: number; peakRssMb: number; changes: Change[]; pages: Page[]; sets: PolledSet[]; vacuums: Vacuum[] };

/** Prints the latency figures and, for every slow change, the stage that held it. */
function analyse(run: Run): void {
  const { started, changes, pages, sets, vacuums } = run;
  const sorted = changes.map((c) => c.latency).sort((a, b) => a - b);
  console.log(`stall: ${run.rate}/s for ${run.seconds} s: ${sorted.length} changes  p50 ${f(percentile(sorted, 50))}  p99 ${f(percentile(sorted, 99))}  max ${f(sorted.at(-1)!)} ms  peak RSS ${f(run.peakRssMb)} MB`);
  const all: Stages[] = [];
  const slow: { at: number; latency: number; stages: Stages }[] = [];
  pages.sort((a, b) => a.txids[0] - b.txids[0]);
  const pageStarts = pages.map((p) => p.txids[0]);
  const setEnds = sets.map((s) => s.committedAt);
  for (const c of changes) {
    const txid = Number(c.txid);
    let i = lastAtOrBelow(pageStarts, txid);
    while (i > 0 && pages[i]!.txids[1] < txid) i--;
    const page = pages[i];
    // the first set whose apply loop saw its commit return at or after the row's commit
    const set = sets[lastAtOrBelow(setEnds, c.targetMs - 1.5) + 1];
    if (!page || !set) continue;
    const stages = stagesOf(c.ms, c.targetMs, page, set);
    all.push(stages);
    if (c.latency >= slowMs) slow.push({ at: (c.ms - started) / 1000, latency: c.latency, stages });
  }
  const keys = Object.keys(all[0] ?? {}) as (keyof Stages)[];
  console.log(`stall: per stage over ${all.length} changes (p50 / p99 / max ms): ${keys.map((k) => { const v = all.map((x) => x[k]).sort((a, b) => a - b); return `${k} ${f(percentile(v, 50))}/${f(percentile(v, 99))}/${f(v.at(-1)!)}`; }).join('  ')}`);
  console.log(`stall: ${slow.length} changes ≥ ${slowMs} ms`);
  slow.sort((a, b) => a.at - b.at);
  // One line per episode (slow changes within 2 s of each other share a cause): its worst change.
  const episodes: (typeof slow)[] = [];
  for (const s of slow) {
    const current = episodes.at(-1);
    if (current && s.at - current.at(-1)!.at <= 2) current.push(s);
    else episodes.push([s]);
  }
  for (const episode of episodes) {
    const s = episode.reduce((a, b) => (a.latency >= b.latency ? a : b));
    const worst = keys.reduce((a, b) => (s.stages[a] >= s.stages[b] ? a : b));
    console.log(`  ${f(episode[0]!.at)}-${f(episode.at(-1)!.at)} s, ${episode.length} changes, worst ${f(s.latency)} ms at ${f(s.at)} s, held in ${worst}: ${keys.map((k) => `${k} ${f(s.stages[k])}`).join(', ')}`);
  }
  console.log(`stall: vacuums of the change table: ${vacuums.map((v) => `${f((v.at - started) / 1000)} s (${v.ms} ms)`).join(', ') || 'none'}`);
  // offsetsMs: logged while group offset commits were awaited on the apply path (before 2026-11-25)
  const offsets = sets.flatMap((s) => (s.offsetsMs === undefined ? [] : [s.offsetsMs])).sort((a, b) => a - b);
  const awaited = offsets.length === 0 ? '' : `; group offset commits awaited p50 ${f(percentile(offsets, 50))} / p99 ${f(percentile(offsets, 99))} / max ${f(offsets.at(-1)!)} ms`;
  console.log(`stall: ${sets.length} sets applied${awaited}`);
}

const f = (n: number) => n.toFixed(1);
if (values.from) {
  analyse(JSON.parse(readFileSync(values.from, 'utf8')) as Run);
  process.exit(0);
}
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = process.env.PGTUNNEL_TEST_SOURCE_SERVER ? undefined : await startTestStack(home, 'stall-stack');
const ctx = new BenchContext(own?.stack ?? currentTestStack(), own?.env ?? { ...(process.env as Record<string, string>) }, home);
try {
  const dbs = await ctx.databases('bench_stall', 'CREATE TABLE bench_latency (id bigint PRIMARY KEY, payload text)');
  const tunnel = new BenchTunnel(ctx.tunnelEnv(dbs, 'bench_latency', { PGTUNNEL_LOG_LEVEL: 'debug' }));
  try {
    await tunnel.ready(dbs.source, dbs.target, 'bench_latency', "INSERT INTO bench_latency VALUES (0, 'probe')");
    const started = Date.now();
    console.log(`stall: ${rate}/s for ${seconds} s`);
    const count = await fixedRateLoad(dbs.source, rate, seconds);
    const arrived = async () => Number((await sql<{ n: string }>(dbs.target, 'SELECT count(*) AS n FROM bench_latency'))[0]!.n);
    await waitUntil('every row in the target', async () => (await arrived()) >= count + 1, 120_000, 100).catch(async (err: Error) => {
      throw new Error(`${err.message} (${await arrived()} of ${count + 1}; the tunnel's log is in ${path.join(home, 'stall-tunnel.log')})`);
    });
    const commitMs = 'extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 * 1000';
    const source = await sql<{ id: string; txid: string; ms: number }>(dbs.source, `SELECT id::text, xmin::text AS txid, ${commitMs} AS ms FROM bench_latency WHERE id > 0`);
    const target = new Map((await sql<{ id: string; ms: number }>(dbs.target, `SELECT id::text, ${commitMs} AS ms FROM bench_latency`)).map((r) => [r.id, r.ms]));
    const changes = source.map((r) => ({ txid: r.txid, ms: r.ms, targetMs: target.get(r.id)!, latency: target.get(r.id)! - r.ms }));
    const run: Run = { started, rate, seconds, peakRssMb: tunnel.peakRssMb(), changes, ...parseLog(tunnel.output) };
    const file = path.join(home, `stall-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.json`);
    writeFileSync(file, JSON.stringify(run));
    console.log(`stall: raw figures in ${file} (node dist/bench/stall.js --from <file> re-reads them)`);
    analyse(run);
  } finally {
    await tunnel.stop();
    writeFileSync(path.join(home, 'stall-tunnel.log'), tunnel.output);
  }
} finally {
  await own?.stack.down();
}
process.exit(0);
