// node dist/bench/latencyStages.js [--rate 1000] [--seconds 15] [--rounds 2] [--variant name ...] [--base dist]
// [--load inserts|updates]: latency at a fixed rate and where it goes, for tunnel variants interleaved in one
// invocation beside native logical replication, so a loaded machine weighs on every variant alike (issue 21's latency
// goal). Each tunnel runs in this process (`Tunnel.run`, threads on or off; threads spawned before prepare as `pgtunnel
// run` does, or at `run` in the 'spawned at run' variant); the stage timings are its `pgtunnel:stages` events during
// the load. `start`: the latency of the probe row, committed as the tunnel starts (its start-up, counted in max). `--load updates`: each commit updates one row the target has and every
// other one also deletes one (the apply's sets of updates, deletes and tombstones); latency is counted on the updated
// rows, native replication is not run, and a variant's ratios are to the `--base` build's run just before it.
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { stages, subscribe, type Stage } from '../src/instruments/telemetry.js';
import { startTestStack } from '../testkit/testStack.js';
import { BenchContext, percentile, root, sql, waitUntil } from './context.js';
import { fixedRateLoad, latencies, measure, nativeLatency, sourceDdl, targetDdl, type LatencyResult, type LoadStatement } from './latency.js';

interface Variant {
  name: string;
  capture: 'trigger' | 'logical';
  threads: boolean;
  /** PGTUNNEL_* settings of this variant beyond the bench's own */
  env?: Record<string, string>;
  /** Another build's dist/ (`--base`, e.g. an older commit built in /tmp): its tunnel, this bench's load and clock. */
  dist?: string;
  /** Threads spawned by `Tunnel.run` after prepare (in-process callers), not before prepare as `pgtunnel run` does. */
  spawnAtRun?: boolean;
}

const { values } = parseArgs({ options: { rate: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '15' }, rounds: { type: 'string', default: '2' }, variant: { type: 'string', multiple: true }, base: { type: 'string' }, load: { type: 'string', default: 'inserts' } } });
const own = path.join(root, 'dist');
const ownVariants: Variant[] = [
  { name: 'trigger, two threads', capture: 'trigger', threads: true },
  { name: 'trigger, calling thread', capture: 'trigger', threads: false },
  { name: 'logical, two threads', capture: 'logical', threads: true },
  { name: 'logical, calling thread', capture: 'logical', threads: false },
  { name: 'trigger, threads spawned at run', capture: 'trigger', threads: true, spawnAtRun: true },
];
// with --base, each variant runs right after the same variant of the other build
const variants = ownVariants.flatMap((v) => (values.base ? [{ ...v, name: `base: ${v.name}`, dist: values.base }, v] : [v]));

/** The tunnel's entry points from a build (this one's, or `--base`'s: both share this process's channels by name). */
async function build(dist = own) {
  const load = (await import(path.join(dist, 'src/config/load.js'))) as typeof import('../src/config/load.js');
  const tables = (await import(path.join(dist, 'src/config/tables.js'))) as typeof import('../src/config/tables.js');
  const setup = (await import(path.join(dist, 'src/setup/prepare.js'))) as typeof import('../src/setup/prepare.js');
  const tunnel = (await import(path.join(dist, 'src/pipeline/tunnel.js'))) as typeof import('../src/pipeline/tunnel.js');
  return { loadConfig: load.loadConfig, withTables: tables.withTables, prepare: setup.prepare, Tunnel: tunnel.Tunnel, spawnSides: tunnel.spawnSides };
}
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
if (values.load !== 'inserts' && values.load !== 'updates') throw new Error(`--load: inserts or updates, not ${values.load}`);
const updates = values.load === 'updates';
const total = rate * seconds;

/** Commit `id` of the updates load: row id updated, and for odd ids row total + id deleted, in one statement. */
const updateRow: LoadStatement = (client, id) => client.query("WITH d AS (DELETE FROM bench_latency WHERE id = $2) UPDATE bench_latency SET payload = 'y' WHERE id = $1", [id, id % 2 === 1 ? total + id : -1]);

/** The updates load's latencies: each updated row's source commit to its target update, once every change arrived. */
async function measureUpdates(source: string, target: string): Promise<LatencyResult> {
  const rows = 1 + 2 * total - Math.ceil(total / 2);
  await waitUntil('every update and delete in the target', async () => {
    const [r] = await sql<{ n: string; y: string }>(target, "SELECT count(*) AS n, count(*) FILTER (WHERE payload = 'y') AS y FROM bench_latency");
    return Number(r!.y) >= total && Number(r!.n) === rows;
  }, 120_000, 100);
  return latencies(source, target, "payload = 'y'");
}

const chosen = values.variant ? variants.filter((v) => values.variant!.some((w) => v.name.includes(w))) : variants;

type StageSamples = Record<Stage, number[]>;
/** One stage's timing laid on the wall clock: an event's stages run back to back in `stages` order, ending when it was published. */
interface Span { stage: Stage; from: number; to: number }

/**
 * The slowest 1% of changes (commit to the target's row), each attributed to the stage whose span covered most
 * of its window; `none`: no timed stage covered a tenth of it (a gap between stages: a GC pause, a timer, a busy loop).
 */
function slowest(changes: { committedMs: number; ms: number }[], spans: Span[]): string {
  if (changes.length === 0) return '';
  const threshold = [...changes].sort((a, b) => b.ms - a.ms)[Math.max(0, Math.floor(changes.length / 100) - 1)]!.ms;
  const slow = changes.filter((c) => c.ms >= threshold);
  const held = new Map<string, number>();
  const covered = new Map<string, number>();
  for (const c of slow) {
    const end = c.committedMs + c.ms;
    const best = new Map<Stage, number>();
    for (const s of spans) {
      const overlap = Math.min(end, s.to) - Math.max(c.committedMs, s.from);
      if (overlap > (best.get(s.stage) ?? 0)) best.set(s.stage, overlap);
    }
    let top: [string, number] = ['none', c.ms / 10];
    for (const [stage, ms] of best) {
      covered.set(stage, (covered.get(stage) ?? 0) + ms / c.ms / slow.length);
      if (ms > top[1]) top = [stage, ms];
    }
    held.set(top[0], (held.get(top[0]) ?? 0) + 1);
  }
  const shares = [...held].sort((a, b) => b[1] - a[1]).map(([s, n]) => `${s} ${n}`).join(', ');
  const cover = stages.filter((s) => covered.has(s)).map((s) => `${s} ${f(100 * covered.get(s)!)}%`).join(', ');
  return `slowest 1% (${slow.length} changes, ≥ ${f(threshold)} ms) held most by: ${shares}; mean share of their window: ${cover}`;
}

async function tunnelRun(ctx: BenchContext, variant: Variant): Promise<LatencyResult & { start: number; stages: StageSamples; slowest: string }> {
  const { loadConfig, withTables, prepare, Tunnel, spawnSides } = await build(variant.dist);
  const db = `bench_lat_${variant.dist ? 'base_' : ''}${variant.capture}_${variant.threads ? 't' : 'c'}`;
  const dbs = await ctx.databases(db, sourceDdl, targetDdl);
  const env = ctx.tunnelEnv(dbs, 'bench_latency', { PGTUNNEL_CAPTURE: variant.capture, PGTUNNEL_HOME: path.join(ctx.home, `bench-${db}`), ...variant.env });
  const log = pino({ level: 'warn' });
  const config = await withTables(loadConfig({ env }));
  // as `pgtunnel run` does: the side threads load their modules (0.4–0.5 s of CPU each) while prepare runs
  const threads = variant.threads && !variant.spawnAtRun ? spawnSides({}, log) : variant.threads;
  const tables = await prepare(config, log).catch((err: unknown) => {
    if (Array.isArray(threads)) for (const thread of threads) thread.stop();
    throw err;
  });
  const controller = new AbortController();
  const samples = Object.fromEntries(stages.map((s) => [s, [] as number[]])) as StageSamples;
  const spans: Span[] = [];
  let recording = false;
  const unsubscribe = subscribe('pgtunnel:stages', ({ ms }) => {
    if (!recording) return;
    let to = Date.now();
    for (const stage of [...stages].reverse()) {
      const v = ms[stage];
      if (v === undefined) continue;
      samples[stage].push(v);
      spans.push({ stage, from: to - v, to });
      to -= v;
    }
  });
  let failure: unknown;
  const running = new Tunnel(config, tables, log).run(controller.signal, { threads }).catch((err) => (failure = err));
  try {
    await sql(dbs.source, "INSERT INTO bench_latency VALUES (0, 'probe')");
    await waitUntil('the probe row in the target', async () => {
      if (failure) throw failure;
      return Number((await sql<{ n: string }>(dbs.target, 'SELECT count(*) AS n FROM bench_latency'))[0]!.n) > 0;
    }, 120_000, 20);
    if (updates) {
      // the rows the load updates and deletes, in the target before the load starts
      await sql(dbs.source, "INSERT INTO bench_latency SELECT g, 'x' FROM generate_series(1, $1::int) g", [2 * total]);
      await waitUntil('the preloaded rows in the target', async () => Number((await sql<{ n: string }>(dbs.target, 'SELECT count(*) AS n FROM bench_latency'))[0]!.n) > 2 * total, 300_000, 100);
    }
    recording = true;
    const count = await fixedRateLoad(dbs.source, rate, seconds, updates ? updateRow : undefined);
    const result = updates ? await measureUpdates(dbs.source, dbs.target) : await measure(dbs.source, dbs.target, count + 1);
    // the probe, committed as the tunnel starts, waits for its start-up (counted in max, shown apart)
    const start = (await latencies(dbs.source, dbs.target, 'id = 0')).max;
    return { ...result, start, stages: samples, slowest: slowest(result.changes, spans) };
  } finally {
    unsubscribe();
    controller.abort();
    await running;
  }
}

const f = (n: number) => n.toFixed(1);
const line = (r: LatencyResult) => `p50 ${f(r.p50)} p99 ${f(r.p99)} max ${f(r.max)} ms`;

const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const stack = await startTestStack(home, 'latency-stages-stack');
const ctx = new BenchContext(stack.stack, stack.env, home);
// a stopped bench takes its stack down with it
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void stack.stack.down().finally(() => process.exit(1)));
const results = new Map<string, { ratio50: number[]; ratio99: number[]; lines: string[] }>();
try {
  for (let round = 1; round <= rounds; round++) {
    const native = updates ? undefined : await nativeLatency(ctx, rate, seconds);
    if (native) console.log(`round ${round}: native logical replication ${line(native)}`);
    /** The base build's run of the variant about to run (`--base` runs each variant right before this build's). */
    let baseRun: LatencyResult | undefined;
    for (const variant of chosen) {
      const r = await tunnelRun(ctx, variant);
      const stageText = stages.filter((s) => r.stages[s].length > 0).map((s) => {
        const v = r.stages[s].sort((a, b) => a - b);
        return `${s} ${f(percentile(v, 50))}/${f(percentile(v, 99))}/${f(v.at(-1)!)} (${v.length})`;
      }).join('  ');
      // the ratio's denominator: native replication, or (updates load) the base build's run of the variant
      const against = native ?? (variant.dist ? undefined : baseRun);
      const ratio = against ? `  ×${native ? 'native' : 'base'} ${f(r.p50 / against.p50)} / ${f(r.p99 / against.p99)}` : '';
      console.log(`round ${round}: ${variant.name}: ${line(r)}${ratio}; start ${f(r.start)} ms\n    stages p50/p99/max ms (count): ${stageText}\n    ${r.slowest}`);
      const entry = results.get(variant.name) ?? { ratio50: [], ratio99: [], lines: [] };
      if (against) {
        entry.ratio50.push(r.p50 / against.p50);
        entry.ratio99.push(r.p99 / against.p99);
      }
      entry.lines.push(`${line(r)}, start ${f(r.start)}`);
      results.set(variant.name, entry);
      baseRun = variant.dist ? r : undefined;
    }
  }
  console.log(`summary (same-run ratios to ${updates ? 'the base build' : 'native'}, per round):`);
  for (const [name, e] of results) console.log(`  ${name}: ${e.ratio50.length > 0 ? `p50 ×${e.ratio50.map(f).join(', ×')}; p99 ×${e.ratio99.map(f).join(', ×')}; ` : ''}${e.lines.join(' | ')}`);
} finally {
  await stack.stack.down();
}
process.exit(0);
