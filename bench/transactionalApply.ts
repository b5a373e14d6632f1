// What `apply: transactional` costs: the bulk writer and the fixed-rate latency load applied per partition
// (the default, at-least-once), per partition with exactlyOnce (which the mode turns on), and by whole source
// transactions, one after the other on one stack, so the ratios compare runs on the same machine state.
import type { BenchContext } from './context.js';
import { tunnelLatency } from './latency.js';
import { throughput } from './throughput.js';

export interface ModeRow { measure: string; baseline: string; tunnel: string; ratio: string; target: string; met: boolean }

const modes = [
  { name: 'per-partition', env: {} },
  { name: 'per-partition, exactlyOnce', env: { PGTUNNEL_EXACTLY_ONCE: 'true' } },
  { name: 'transactional', env: { PGTUNNEL_APPLY: 'transactional' } },
] as const;

type Measured = { tp: { tunnelPerSec: number; writerPerSec: number; changes: number }; lat: { p50: number; p99: number; max: number } };

/**
 * `measured`: modes the caller's run already measured with the same loads (the full bench's default and
 * exactlyOnce rows), so they are not run again; only their comparison rows are left out.
 */
export async function transactionalCost(ctx: BenchContext, plan: { throughputSeconds: number; bulkCap: number; rate: number; latencySeconds: number }, log: (text: string) => void, measured: Partial<Record<(typeof modes)[number]['name'], Measured>> = {}): Promise<ModeRow[]> {
  const results: ({ name: string } & Measured)[] = [];
  for (const mode of modes) {
    const known = measured[mode.name];
    if (known) {
      results.push({ name: mode.name, ...known });
      continue;
    }
    log(`apply ${mode.name}: the bulk writer, then ${plan.rate} one-row transactions/s`);
    Object.assign(process.env, mode.env); // the bench tunnels inherit the environment
    try {
      results.push({ name: mode.name, tp: await throughput(ctx, plan.throughputSeconds, 100, plan.bulkCap), lat: await tunnelLatency(ctx, plan.rate, plan.latencySeconds) });
    } finally {
      for (const k of Object.keys(mode.env)) delete process.env[k];
    }
  }
  const f = (n: number, digits = 1) => n.toFixed(digits);
  const base = results[0]!;
  return results.slice(1).filter((r) => !measured[r.name as keyof typeof measured]).flatMap((r) => [
    { measure: `apply ${r.name}: bulk writer (${r.tp.changes} changes)`, baseline: `per-partition ${f(base.tp.tunnelPerSec, 0)}/s`, tunnel: `${f(r.tp.tunnelPerSec, 0)}/s (writer ${f(r.tp.writerPerSec, 0)}/s)`, ratio: `${f(r.tp.tunnelPerSec / base.tp.tunnelPerSec, 2)}×`, target: 'recorded (a mode, off by default)', met: true },
    { measure: `apply ${r.name}: latency p50 / p99 / max (${plan.rate}/s)`, baseline: `per-partition ${f(base.lat.p50)} / ${f(base.lat.p99)} / ${f(base.lat.max)} ms`, tunnel: `${f(r.lat.p50)} / ${f(r.lat.p99)} / ${f(r.lat.max)} ms`, ratio: `${f(r.lat.p50 / base.lat.p50, 2)}× / ${f(r.lat.p99 / base.lat.p99, 2)}×`, target: 'recorded (a mode, off by default)', met: true },
  ]);
}
