import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { employeesDdl } from '../src/stack/demo.js';
import { postgresBinDir } from '../src/stack/postgresCluster.js';
import { BenchContext, BenchTunnel, sql } from './context.js';

export interface OverheadResult {
  insertTps: { plain: number; captured: number; logical: number };
  updateTps: { plain: number; captured: number; logical: number };
  bulkUpdateSeconds: { plain: number; captured: number; logical: number };
  rows: number;
}

const scripts = mkdtempSync(path.join(tmpdir(), 'pgtunnel-bench-'));
writeFileSync(path.join(scripts, 'insert.sql'), "INSERT INTO employees (first_name, last_name, dob, city, salary) VALUES ('f', 'l', '2000-01-01', 'c', 1);\n");

/** tps of `script` run by pgbench with 4 clients on 2 threads for `seconds`. */
export function pgbench(url: string, script: string, seconds: number): number {
  const u = new URL(url);
  const out = execFileSync(path.join(postgresBinDir(), 'pgbench'), ['-n', '-c', '4', '-j', '2', '-T', String(seconds), '-f', script, '-h', u.hostname, '-p', u.port, '-U', 'postgres', u.pathname.slice(1)], { encoding: 'utf8' });
  return Number(out.match(/tps = ([\d.]+)/)![1]);
}

export async function timed(url: string, text: string): Promise<number> {
  const start = process.hrtime.bigint();
  await sql(url, text);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * One database without capture, one with trigger capture as `pgtunnel install` creates it as a superuser
 * (direct mode: the DDL event trigger present; captureModes.ts compares the modes) and one with logical
 * capture, same workload. The trigger side runs without the tunnel: on 2 cores its own CPU (Node, Kafka)
 * would be counted as the triggers' cost; the latency and throughput runs measure the tunnel. The logical
 * side's cost is the walsender decoding the WAL, which only a reader of the slot causes: its producer
 * streams to Kafka meanwhile (walsender, tunnel and broker share the 2 cores with the writers).
 */
async function side(ctx: BenchContext, name: string, capture: 'none' | 'trigger' | 'logical', rows: number, seconds: number) {
  const dbs = await ctx.databases(name, employeesDdl);
  await sql(dbs.source, `INSERT INTO employees (first_name, salary) SELECT 'n', 1 FROM generate_series(1, ${rows})`);
  await sql(dbs.source, 'VACUUM ANALYZE employees');
  const env = ctx.tunnelEnv(dbs, 'employees', capture === 'logical' ? { PGTUNNEL_CAPTURE: 'logical' } : {});
  if (capture !== 'none') {
    const install = new BenchTunnel(env, ['install']);
    await new Promise((resolve) => install.child.once('exit', resolve));
    if (install.child.exitCode !== 0) throw new Error(`install failed: ${install.output}`);
  }
  const producer = capture === 'logical' ? new BenchTunnel(env, ['run', '--role', 'producer']) : undefined;
  try {
    await producer?.streaming();
    writeFileSync(path.join(scripts, 'update.sql'), `\\set id random(1, ${rows})\nUPDATE employees SET salary = salary + 1 WHERE emp_id = :id;\n`);
    const insert = pgbench(dbs.source, path.join(scripts, 'insert.sql'), seconds);
    const update = pgbench(dbs.source, path.join(scripts, 'update.sql'), seconds);
    const bulk = await timed(dbs.source, `UPDATE employees SET salary = salary + 1 WHERE emp_id <= ${rows}`);
    return { insert, update, bulk };
  } finally {
    await producer?.stop();
  }
}

export async function overhead(ctx: BenchContext, rows: number, seconds: number): Promise<OverheadResult> {
  const plain = await side(ctx, 'bench_plain', 'none', rows, seconds);
  const captured = await side(ctx, 'bench_captured', 'trigger', rows, seconds);
  const logical = await side(ctx, 'bench_logical', 'logical', rows, seconds);
  return {
    insertTps: { plain: plain.insert, captured: captured.insert, logical: logical.insert },
    updateTps: { plain: plain.update, captured: captured.update, logical: logical.update },
    bulkUpdateSeconds: { plain: plain.bulk, captured: captured.bulk, logical: logical.bulk },
    rows,
  };
}
