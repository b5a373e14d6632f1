// node dist/bench/tunnelProfile.js [--phase snapshot|backlog] [--rows 200000] [--rounds 1] [--variant 'name:ENV=v,ENV2=w']
//   [--variant 'name:bin=/other/build/bin/pgtunnel.js'] [--variant 'name:format=avro'] [--cpu-prof dir]
// The whole tunnel (`pgtunnel run`, both threads) over a snapshot or a backlog, profiled from outside: CPU-seconds
// per thread (/proc/<pid>/task), of the source and target backends and of the broker, and the topic's end offsets
// against the target's applied offsets over time, so the side that limits shows. Variants (an environment or
// another build, a format: avro and json-schema start the stack's registry) run in turns in one invocation on
// one stack: on a loaded machine only their ratios compare.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, startTestStack } from '../testkit/testStack.js';
import { employeesDdl } from '../src/stack/demo.js';
import { EndOffsetReader } from '../src/transport/kafka.js';
import { BenchContext, root, sql, waitUntil } from './context.js';
import { fill } from './snapshot.js';
import { profileSummary } from './cpuProfileSummary.js';

const { values } = parseArgs({ options: {
  phase: { type: 'string', default: 'snapshot' }, rows: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '1' },
  variant: { type: 'string', multiple: true, default: [] }, warmup: { type: 'string', default: '20000' }, 'cpu-prof': { type: 'string' }, 'sample-ms': { type: 'string', default: '500' },
} });
const rows = Number(values.rows);
const phase = values.phase as 'snapshot' | 'backlog';
const variants = (values.variant!.length > 0 ? values.variant! : ['as built:']).map((spec) => {
  const [name, rest = ''] = spec.split(/:(.*)/s);
  const env: Record<string, string> = {};
  let bin = path.join(root, 'bin/pgtunnel.js');
  let format: BenchContext['format'] = 'json';
  for (const pair of rest.split(',').filter(Boolean)) {
    const [k, v] = pair.split(/=(.*)/s) as [string, string];
    if (k === 'bin') bin = v;
    else if (k === 'format') format = v as BenchContext['format'];
    else env[k] = v;
  }
  return { name: name!, env, bin, format };
});
const tick = 100; // clock ticks per second in /proc stat (USER_HZ)

/** utime + stime of a /proc stat file, in seconds; 0 once the process or thread is gone. */
function cpuOf(statFile: string): number {
  try {
    const fields = readFileSync(statFile, 'utf8').replace(/^.*\) /s, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) / tick;
  } catch {
    return 0;
  }
}

/** CPU-seconds per thread name of a process (workers are named `pgtunnel producer|consumer`, cut to 15 chars). */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let name = 'gone';
    try {
      name = readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
    } catch {
      continue;
    }
    const group = name === 'MainThread' ? 'main' : name.startsWith('pgtunnel prod') ? 'producer' : name.startsWith('pgtunnel cons') ? 'consumer' : 'other (GC, libuv, V8)';
    out.set(group, (out.get(group) ?? 0) + cpuOf(`/proc/${pid}/task/${t}/stat`));
  }
  return out;
}

/** CPU-seconds of a database's backends, each pid's highest reading kept (a backend that ends keeps its last). */
class Backends {
  private readonly seen = new Map<number, number>();
  constructor(private readonly server: string, private readonly db: string) {}
  async sample(): Promise<void> {
    const pids = await sql<{ pid: number }>(`${this.server}/postgres`, 'SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [this.db]).catch(() => []);
    for (const { pid } of pids) this.seen.set(pid, Math.max(this.seen.get(pid) ?? 0, cpuOf(`/proc/${pid}/stat`)));
  }
  get seconds(): number {
    return [...this.seen.values()].reduce((a, b) => a + b, 0);
  }
}

interface Figures { variant: string; seconds: number; producedAt: number; peakRssMb: number; cpu: Map<string, number>; timeline: string[] }

async function runOnce(ctx: BenchContext, variant: (typeof variants)[number], round: number, rows: number): Promise<Figures> {
  const db = `bench_profile_${phase}`;
  const dbs = await ctx.databases(db, employeesDdl);
  const port = String(await freePort());
  ctx.format = variant.format;
  const env: Record<string, string> = { ...ctx.tunnelEnv(dbs, 'employees'), PGTUNNEL_LOG_LEVEL: 'info', PGTUNNEL_HTTP_PORT: port, ...variant.env };
  if (values['cpu-prof'] && round > 0) env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${path.join(values['cpu-prof'], `${variant.name.replace(/\W+/g, '_')}-${round}`)}`;
  let expected = rows;
  if (phase === 'snapshot') {
    await sql(dbs.source, fill(rows));
    await sql(dbs.source, 'VACUUM ANALYZE employees');
  } else {
    // a first tunnel installs capture and streams; the backlog is written while none runs
    const first = spawnTunnel(variant.bin, env);
    await waitUntil('the first tunnel to stream', async () => first.output().includes('phase: streaming'), 600_000, 100);
    await first.stop();
    for (let done = 0; done < rows; done += 100_000) await sql(dbs.source, fill(Math.min(100_000, rows - done)));
  }
  const topic = `${env.PGTUNNEL_TOPIC_PREFIX}.public.employees`;
  const offsets = new EndOffsetReader({ kafkaBrokers: [ctx.brokers] });
  const source = new Backends(ctx.sourceServer, db);
  const target = new Backends(ctx.targetServer, db);
  const brokerPid = ctx.stack.kafka.pid();
  const brokerAt = brokerPid ? cpuOf(`/proc/${brokerPid}/stat`) : 0;
  const start = Date.now();
  const tunnel = spawnTunnel(variant.bin, env);
  const timeline: string[] = [];
  let producedAt = 0;
  let last = { at: 0, produced: 0, applied: 0, cpu: new Map<string, number>() };
  try {
    await waitUntil(`the ${phase} in the target`, async () => {
      if (tunnel.exited()) throw new Error(`tunnel exited: ${tunnel.output().slice(-2000)}`);
      const ends = await offsets.read([topic]).catch(() => new Map<string, bigint[]>());
      const produced = Number((ends.get(topic) ?? []).reduce((a, b) => a + b, 0n));
      const applied = Number((await sql<{ n: string | null }>(dbs.target, 'SELECT sum(next_offset)::text AS n FROM pgtunnel.consumer_offsets WHERE topic = $1', [topic]).catch(() => [{ n: null }]))[0]!.n ?? 0);
      await source.sample();
      await target.sample();
      const cpu = threadCpu(tunnel.pid);
      if (brokerPid) cpu.set('broker', cpuOf(`/proc/${brokerPid}/stat`));
      cpu.set('source backends', source.seconds);
      cpu.set('target backends', target.seconds);
      const now = (Date.now() - start) / 1000;
      if (!producedAt && produced >= expected) producedAt = now;
      if (now - last.at >= 2 || applied >= expected) {
        const pct = (group: string) => (((cpu.get(group) ?? 0) - (last.cpu.get(group) ?? 0)) / Math.max(now - last.at, 0.001) * 100).toFixed(0);
        timeline.push(`${now.toFixed(1)} s: produced ${produced} (+${((produced - last.produced) / Math.max(now - last.at, 0.001) / 1000).toFixed(1)}k/s), applied ${applied} (+${((applied - last.applied) / Math.max(now - last.at, 0.001) / 1000).toFixed(1)}k/s), lag ${produced - applied}; CPU% producer ${pct('producer')} consumer ${pct('consumer')} main ${pct('main')} other ${pct('other (GC, libuv, V8)')} source ${pct('source backends')} target ${pct('target backends')} broker ${pct('broker')}`);
        last = { at: now, produced, applied, cpu };
      }
      return applied >= expected;
    }, 900_000, Number(values['sample-ms']));
    const seconds = (Date.now() - start) / 1000;
    const count = Number((await sql<{ n: string }>(dbs.target, 'SELECT count(*) AS n FROM employees'))[0]!.n);
    if (count < expected) throw new Error(`applied offsets reached ${expected} but the target holds ${count} rows`);
    const cpu = threadCpu(tunnel.pid);
    cpu.set('source backends', source.seconds);
    cpu.set('target backends', target.seconds);
    if (brokerPid) cpu.set('broker', cpuOf(`/proc/${brokerPid}/stat`) - brokerAt);
    timeline.push(await stageSums(port));
    const paths = tunnel.output().match(/(snapshot rows|change pages) read as [^"]*/g) ?? [];
    timeline.push(...new Set(paths));
    return { variant: variant.name, seconds, producedAt, peakRssMb: tunnel.peakRssMb(), cpu, timeline };
  } finally {
    await offsets.close();
    await tunnel.stop();
  }
}

/** Each stage's total seconds and count from the tunnel's /metrics (pgtunnel_stage_seconds), scraped once at the end. */
async function stageSums(port: string): Promise<string> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).catch(() => '');
  const sums = new Map<string, { s: number; n: number }>();
  for (const m of text.matchAll(/^pgtunnel_stage_seconds_(sum|count)\{stage="(\w+)"\} ([\d.e+-]+)/gm)) {
    const e = sums.get(m[2]!) ?? { s: 0, n: 0 };
    if (m[1] === 'sum') e.s = Number(m[3]);
    else e.n = Number(m[3]);
    sums.set(m[2]!, e);
  }
  // heap used and off-heap (Buffers) per thread at the end, for what RSS is made of
  const heaps = [...text.matchAll(/^pgtunnel_nodejs_(heap_size_used|external_memory)_bytes\{thread="(\w+)"\} (\d+)/gm)].map((m) => `${m[2]} ${m[1] === 'external_memory' ? 'external' : 'heap'} ${(Number(m[3]) / 2 ** 20).toFixed(0)} MB`);
  return `stages (total s / count): ${[...sums].filter(([, e]) => e.n > 0).map(([k, e]) => `${k} ${e.s.toFixed(2)}/${e.n}`).join(', ')}\n  at the end: ${heaps.join(', ')}`;
}

function spawnTunnel(bin: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [bin, 'run'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return {
    pid: child.pid!,
    output: () => output,
    exited: () => child.exitCode !== null,
    peakRssMb: () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = await startTestStack(home, 'bench-profile-stack', { registry: variants.some((v) => v.format !== 'json') });
const ctx = new BenchContext(own.stack, own.env, home);
const results: Figures[] = [];
try {
  // a fresh broker's JIT and the page cache: a small unrecorded run first, so the first variant is not the one paying
  if (Number(values.warmup) > 0) await runOnce(ctx, { ...variants[0]!, env: { ...variants[0]!.env, NODE_OPTIONS: '' } }, 0, Number(values.warmup));
  for (let round = 1; round <= Number(values.rounds); round++) {
    // turns alternate so neither variant always runs first on the warmed stack
    const order = round % 2 === 1 ? variants : [...variants].reverse();
    for (const v of order) {
      const r = await runOnce(ctx, v, round, rows);
      results.push(r);
      console.log(`\n${phase} of ${rows}, ${v.name} (round ${round}): ${r.seconds.toFixed(1)} s (all in Kafka at ${r.producedAt.toFixed(1)} s), peak RSS ${r.peakRssMb.toFixed(0)} MB`);
      console.log(`  CPU-s: ${[...r.cpu].map(([k, s]) => `${k} ${s.toFixed(2)}`).join(', ')}`);
      for (const line of r.timeline) console.log(`  ${line}`);
    }
  }
  console.log(`\n| variant | ${phase} s | in Kafka s | producer CPU-s | consumer CPU-s | main | other | source be | target be | broker | peak RSS MB |\n|---|---|---|---|---|---|---|---|---|---|---|`);
  const c = (r: Figures, k: string) => (r.cpu.get(k) ?? 0).toFixed(2);
  for (const r of results) console.log(`| ${r.variant} | ${r.seconds.toFixed(1)} | ${r.producedAt.toFixed(1)} | ${c(r, 'producer')} | ${c(r, 'consumer')} | ${c(r, 'main')} | ${c(r, 'other (GC, libuv, V8)')} | ${c(r, 'source backends')} | ${c(r, 'target backends')} | ${c(r, 'broker')} | ${r.peakRssMb.toFixed(0)} |`);
  if (values['cpu-prof'] && existsSync(values['cpu-prof'])) console.log(`\n${profileSummary(values['cpu-prof'])}`);
} finally {
  await own.stack.down();
}
