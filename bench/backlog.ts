import { employeesDdl } from '../src/stack/demo.js';
import { BenchContext, BenchTunnel, sql, waitUntil } from './context.js';
import { fill } from './snapshot.js';

export interface BacklogResult {
  changes: number;
  /** the source writing the backlog while no tunnel ran */
  writeSeconds: number;
  /** tunnel start → the last change in the target (process start included) */
  catchUpSeconds: number;
  peakRssMb: number;
}

/**
 * A backlog of captured changes waiting in the change table (the tunnel was down while the source wrote
 * them), then the time a started tunnel takes to put every one of them in the target.
 */
export async function backlog(ctx: BenchContext, changes: number): Promise<BacklogResult> {
  const dbs = await ctx.databases('bench_backlog', employeesDdl);
  const env = ctx.tunnelEnv(dbs, 'employees');
  const first = new BenchTunnel(env);
  try {
    await first.ready(dbs.source, dbs.target);
  } finally {
    await first.stop();
  }
  const written = Date.now();
  for (let done = 0; done < changes; done += 100_000) await sql(dbs.source, fill(Math.min(100_000, changes - done)));
  const writeSeconds = (Date.now() - written) / 1000;
  const start = Date.now();
  const tunnel = new BenchTunnel(env);
  try {
    const expected = changes + 1; // and the readiness probe
    await waitUntil('the backlog in the target', async () => Number((await sql<{ n: string }>(dbs.target, 'SELECT count(*) AS n FROM employees'))[0]!.n) >= expected, 900_000, 50);
    return { changes, writeSeconds, catchUpSeconds: (Date.now() - start) / 1000, peakRssMb: tunnel.peakRssMb() };
  } finally {
    await tunnel.stop();
  }
}
