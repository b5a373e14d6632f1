// node dist/bench/idle.js [--seconds 30] [--probes 40]: what an idle tunnel costs and how fast it wakes
// (bench/idleCost.ts). PGTUNNEL_* variables in the environment (e.g. PGTUNNEL_EXACTLY_ONCE=true) reach the tunnel.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { currentTestStack, startTestStack } from '../testkit/testStack.js';
import { BenchContext, root } from './context.js';
import { idleCost } from './idleCost.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '30' }, probes: { type: 'string', default: '40' } } });
const f = (n: number) => n.toFixed(1);
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = process.env.PGTUNNEL_TEST_SOURCE_SERVER ? undefined : await startTestStack(home, 'idle-stack');
const ctx = new BenchContext(own?.stack ?? currentTestStack(), own?.env ?? { ...(process.env as Record<string, string>) }, home);
try {
  const r = await idleCost(ctx, Number(values.seconds), Number(values.probes));
  console.log(`idle: over ${f(r.seconds)} s the tunnel process used ${f(r.tunnelCpu)}% of a core, its producer's source backend ${f(r.producerBackendCpu)}%`);
  const f2 = (n: number) => n.toFixed(2);
  console.log(`idle: by thread, % of a core: ${Object.entries(r.threads).filter(([, v]) => v >= 0.005).sort((a, b) => b[1] - a[1]).map(([name, v]) => `${name} ${f2(v)}`).join(', ')}`);
  console.log(`idle: first probe after ${f(r.seconds)} s idle ${f(r.firstProbeMs)} ms; ${r.probes.count} more single-change probes after 50–250 ms gaps, commit → target commit p50 ${f(r.probes.p50)}  p99 ${f(r.probes.p99)}  max ${f(r.probes.max)} ms`);
} finally {
  await own?.stack.down();
}
process.exit(0);
