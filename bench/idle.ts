// node dist/bench/idle.js [--seconds 30] [--probes 40] [--rounds 1] [--base DIR]: what an idle tunnel costs and how
// fast it wakes (bench/idleCost.ts). `--base`: another build's tree (e.g. main built in /tmp), its tunnel run before
// this one's in every round, so the two are compared in one invocation. PGTUNNEL_* variables in the environment
// (e.g. PGTUNNEL_EXACTLY_ONCE=true) reach the tunnel.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { currentTestStack, startTestStack } from '../testkit/testStack.js';
import { BenchContext, root } from './context.js';
import { idleCost } from './idleCost.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '30' }, probes: { type: 'string', default: '40' }, rounds: { type: 'string', default: '1' }, base: { type: 'string' } } });
const f = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = process.env.PGTUNNEL_TEST_SOURCE_SERVER ? undefined : await startTestStack(home, 'idle-stack');
const ctx = new BenchContext(own?.stack ?? currentTestStack(), own?.env ?? { ...(process.env as Record<string, string>) }, home);
const builds = values.base ? [{ name: 'base', entry: path.resolve(values.base, 'bin/pgtunnel.js') }, { name: 'this', entry: undefined }] : [{ name: 'this', entry: undefined }];
try {
  for (let round = 1; round <= Number(values.rounds); round++) {
    for (const build of builds) {
      const r = await idleCost(ctx, Number(values.seconds), Number(values.probes), build.entry);
      const label = builds.length > 1 || Number(values.rounds) > 1 ? `idle (${build.name}, round ${round})` : 'idle';
      console.log(`${label}: over ${f(r.seconds)} s the tunnel process used ${f2(r.tunnelCpu)}% of a core, its producer's source backend ${f2(r.producerBackendCpu)}%`);
      console.log(`${label}: by thread, % of a core: ${Object.entries(r.threads).filter(([, v]) => v >= 0.005).sort((a, b) => b[1] - a[1]).map(([name, v]) => `${name} ${f2(v)}`).join(', ')}`);
      console.log(`${label}: first probe after ${f(r.seconds)} s idle ${f(r.firstProbeMs)} ms; ${r.probes.count} more single-change probes after 50–250 ms gaps, commit → target commit p50 ${f(r.probes.p50)}  p99 ${f(r.probes.p99)}  max ${f(r.probes.max)} ms`);
    }
  }
} finally {
  await own?.stack.down();
}
process.exit(0);
