// node dist/bench/consumerCpu.js --base DIR [--rows 300000] [--backlog 200000] [--rounds 2]: the tunnel's CPU and wall
// on a snapshot of --rows rows and on a backlog of --backlog changes captured while no tunnel ran, this build against
// another (--base: a checkout with dist/ built, e.g. main's), turns alternated in every round, one stack of its own.
// CPU is the tunnel process's (all threads, /proc/<pid>/stat), so on a loaded machine only the same-run ratios
// compare. Not part of `npm run bench`.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startTestStack } from '../testkit/testStack.js';
import { employeesDdl } from '../src/stack/demo.js';
import { BenchContext, BenchTunnel, root, sql, waitUntil } from './context.js';
import { fill } from './snapshot.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '300000' }, backlog: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '2' }, base: { type: 'string' } } });
if (!values.base) throw new Error('--base DIR: the build to compare with');
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = await startTestStack(home, 'bench-consumer-cpu-stack');
const ctx = new BenchContext(own.stack, own.env, home);
const builds = { this: path.join(root, 'bin/pgtunnel.js'), base: path.join(path.resolve(values.base), 'bin/pgtunnel.js') };
type Build = keyof typeof builds;

const count = async (target: string) => Number((await sql<{ n: string }>(target, 'SELECT count(*) AS n FROM employees'))[0]!.n);

/** utime + stime of the whole process (threads that ended included), in seconds. */
function processCpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Figures { seconds: number; cpu: number }

/** A tunnel of `build` from its start until `done`: wall and process CPU. */
async function measured(build: Build, dbs: { source: string; target: string }, done: () => Promise<boolean>): Promise<Figures> {
  const start = Date.now();
  const tunnel = new BenchTunnel(ctx.tunnelEnv(dbs, 'employees'), ['run'], builds[build]);
  try {
    await waitUntil('the changes in the target', done, 900_000, 200);
    const seconds = (Date.now() - start) / 1000;
    return { seconds, cpu: processCpuSeconds(tunnel.child.pid!) };
  } finally {
    await tunnel.stop();
  }
}

async function snapshot(build: Build, rows: number): Promise<Figures> {
  const dbs = await ctx.databases('bench_consumer_snapshot', employeesDdl);
  await sql(dbs.source, fill(rows));
  await sql(dbs.source, 'VACUUM ANALYZE employees');
  return measured(build, dbs, async () => (await count(dbs.target)) >= rows);
}

async function backlog(build: Build, changes: number): Promise<Figures> {
  const dbs = await ctx.databases('bench_consumer_backlog', employeesDdl);
  const first = new BenchTunnel(ctx.tunnelEnv(dbs, 'employees'), ['run'], builds[build]);
  try {
    await first.ready(dbs.source, dbs.target);
  } finally {
    await first.stop();
  }
  for (let done = 0; done < changes; done += 100_000) await sql(dbs.source, fill(Math.min(100_000, changes - done)));
  return measured(build, dbs, async () => (await count(dbs.target)) >= changes + 1);
}

const results: { kind: string; round: number; build: Build; f: Figures }[] = [];
try {
  for (let round = 1; round <= Number(values.rounds); round++) {
    const order: Build[] = round % 2 === 1 ? ['base', 'this'] : ['this', 'base'];
    for (const build of order) results.push({ kind: `snapshot ${values.rows}`, round, build, f: await snapshot(build, Number(values.rows)) });
    if (Number(values.backlog) > 0) for (const build of order) results.push({ kind: `backlog ${values.backlog}`, round, build, f: await backlog(build, Number(values.backlog)) });
  }
} finally {
  await own.stack.down();
}
console.log('| run | round | build | wall s | tunnel CPU s |\n|---|---|---|---|---|');
for (const r of results) console.log(`| ${r.kind} | ${r.round} | ${r.build} | ${r.f.seconds.toFixed(1)} | ${r.f.cpu.toFixed(1)} |`);
for (const kind of new Set(results.map((r) => r.kind))) {
  const ratios = (key: keyof Figures) => results.filter((r) => r.kind === kind && r.build === 'this').map((r) => (r.f[key] / results.find((b) => b.kind === kind && b.round === r.round && b.build === 'base')!.f[key]).toFixed(2)).join(', ');
  console.log(`${kind}: this/base per round — wall ${ratios('seconds')}; tunnel CPU ${ratios('cpu')}`);
}
