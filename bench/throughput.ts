import pg from 'pg';
import { BenchContext, BenchTunnel, sql, waitUntil } from './context.js';
import { employeesDdl } from '../src/stack/demo.js';

export interface ThroughputResult {
  writerPerSec: number;
  tunnelPerSec: number;
  changes: number;
  peakRssMb: number;
}

/**
 * A writer on one connection, as fast as it goes for `seconds` (or until `cap` changes), against the
 * tunnel: the tunnel's rate is changes divided by the time from the first write to the last row in the
 * target, so a ratio of 1 means it kept up. `rowsPerTx` 1 is the OLTP writer, 100 a bulk loader.
 */
export async function throughput(ctx: BenchContext, seconds: number, rowsPerTx: number, cap: number, inspect?: (tunnelOutput: string) => void): Promise<ThroughputResult> {
  const dbs = await ctx.databases(`bench_throughput_${rowsPerTx}`, employeesDdl);
  const tunnel = new BenchTunnel(ctx.tunnelEnv(dbs, 'employees'));
  try {
    await tunnel.ready(dbs.source, dbs.target);
    const client = new pg.Client({ connectionString: dbs.source });
    await client.connect();
    const start = Date.now();
    let changes = 0;
    try {
      while (Date.now() - start < seconds * 1000 && changes < cap) {
        await client.query(`INSERT INTO employees (first_name, last_name, dob, city, salary) SELECT 'f', 'l', DATE '2000-01-01', 'c', g FROM generate_series(1, ${rowsPerTx}) g`);
        changes += rowsPerTx;
      }
    } finally {
      await client.end();
    }
    const written = Date.now();
    const expected = changes + 1; // and the readiness probe
    await waitUntil('the tunnel to catch up', async () => Number((await sql<{ n: string }>(dbs.target, 'SELECT count(*) AS n FROM employees'))[0]!.n) >= expected, 600_000, 20);
    const caughtUp = Date.now();
    inspect?.(tunnel.output);
    return {
      writerPerSec: changes / ((written - start) / 1000),
      tunnelPerSec: changes / ((caughtUp - start) / 1000),
      changes,
      peakRssMb: tunnel.peakRssMb(),
    };
  } finally {
    await tunnel.stop();
  }
}
