// node dist/bench/exactlyOnce.js [--seconds 10] [--rate 500]: what exactly-once into Kafka costs. The same
// bulk-writer throughput run and fixed-rate latency run, at-least-once and then exactlyOnce, on one stack.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { currentTestStack, startTestStack } from '../testkit/testStack.js';
import { BenchContext, root } from './context.js';
import { tunnelLatency } from './latency.js';
import { throughput } from './throughput.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, rate: { type: 'string', default: '500' } } });
const seconds = Number(values.seconds);
const rate = Number(values.rate);
const f = (n: number) => n.toFixed(1);
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = process.env.PGTUNNEL_TEST_SOURCE_SERVER ? undefined : await startTestStack(home, 'eos-stack');
const ctx = new BenchContext(own?.stack ?? currentTestStack(), own?.env ?? { ...(process.env as Record<string, string>) }, home);
try {
  for (const mode of ['false', 'true']) {
    process.env.PGTUNNEL_EXACTLY_ONCE = mode; // the bench tunnels inherit the environment
    const tp = await throughput(ctx, seconds, 100, 200_000);
    const lat = await tunnelLatency(ctx, rate, seconds);
    console.log(`exactlyOnce=${mode}: bulk writer ${f(tp.writerPerSec)}/s, tunnel ${f(tp.tunnelPerSec)}/s (${tp.changes} changes); latency at ${rate}/s p50 ${f(lat.p50)} p99 ${f(lat.p99)} max ${f(lat.max)} ms`);
  }
} finally {
  await own?.stack.down();
}
process.exit(0);
