import { execFileSync } from 'node:child_process';
import { employeesDdl } from '../src/stack/demo.js';
import { BenchContext, BenchTunnel, sql, waitUntil } from './context.js';

export interface SnapshotResult {
  rows: number;
  copySeconds: number;
  tunnelSeconds: number;
  /** the source table's size on disk */
  tableMb: number;
  peakRssMb: number;
}

export const fill = (rows: number) =>
  `INSERT INTO employees (first_name, last_name, dob, city, salary)
   SELECT 'first' || i, 'last' || i, DATE '1960-01-01' + i % 20000, 'city' || i % 100, i % 100000 FROM generate_series(1, ${rows}) i`;

/** The physical limit: COPY (binary) out of the source piped into COPY in the target. */
function copyPipe(source: string, target: string): number {
  const start = process.hrtime.bigint();
  execFileSync('bash', ['-c', `set -o pipefail; psql -qAt "${source}" -c "\\copy employees TO STDOUT (FORMAT binary)" | psql -qAt "${target}" -c "\\copy employees FROM STDIN (FORMAT binary)"`]);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export async function snapshot(ctx: BenchContext, rows: number): Promise<SnapshotResult> {
  const copyDbs = await ctx.databases('bench_copy', employeesDdl);
  await sql(copyDbs.source, fill(rows));
  await sql(copyDbs.source, 'VACUUM ANALYZE employees');
  const copySeconds = copyPipe(copyDbs.source, copyDbs.target);

  const dbs = await ctx.databases('bench_snapshot', employeesDdl);
  await sql(dbs.source, fill(rows));
  await sql(dbs.source, 'VACUUM ANALYZE employees');
  const tableMb = Number((await sql<{ b: string }>(dbs.source, "SELECT pg_table_size('employees') AS b"))[0]!.b) / 1e6;
  const start = Date.now();
  const tunnel = new BenchTunnel(ctx.tunnelEnv(dbs, 'employees'));
  try {
    await waitUntil('the snapshot in the target', async () => Number((await sql<{ n: string }>(dbs.target, 'SELECT count(*) AS n FROM employees'))[0]!.n) >= rows, 900_000, 100);
    return { rows, copySeconds, tunnelSeconds: (Date.now() - start) / 1000, tableMb, peakRssMb: tunnel.peakRssMb() };
  } finally {
    await tunnel.stop();
  }
}
