import pg from 'pg';
import { BenchContext, BenchTunnel, sql, waitUntil } from './context.js';
import { employeesDdl } from '../src/stack/demo.js';

export interface ScaleResult {
  consumers: number;
  changes: number;
  /** changes per second, all consumers applying from a full backlog */
  applyPerSec: number;
  /** partitions each consumer held */
  spread: number[];
}

const count = async (url: string, q: string) => Number((await sql<{ n: string }>(url, q))[0]!.n);

/** How many partitions a consumer process holds, from its newest assignment log line. */
function held(p: BenchTunnel): number {
  let last: string | undefined;
  for (const line of p.output.split('\n')) if (line.includes('partitions assigned')) last = (JSON.parse(line) as { partitions: string }).partitions;
  return last ? (/\[([\d,]*)\]/.exec(last)?.[1] ?? '').split(',').filter(Boolean).length : 0;
}

/**
 * Apply throughput of a consumer group of `consumers` processes on a 6-partition topic. The group forms
 * first, idle; a SHARE lock on the target table then holds apply back while a producer publishes a
 * backlog of `changes` streamed inserts and stops (so only apply competes for the cores); the clock runs
 * from the lock's release until the last change is in the target.
 */
export async function applyScale(ctx: BenchContext, consumers: number, changes: number): Promise<ScaleResult> {
  const dbs = await ctx.databases(`bench_scale_${consumers}`, employeesDdl);
  const env = ctx.tunnelEnv(dbs, 'employees', { PGTUNNEL_PARTITIONS: '6' });
  const group: BenchTunnel[] = [];
  const gate = new pg.Client({ connectionString: dbs.target });
  let producer: BenchTunnel | undefined;
  try {
    for (let i = 0; i < consumers; i++) group.push(new BenchTunnel(env, ['run', '--role', 'consumer']));
    await waitUntil('the group formed', async () => {
      for (const c of group) if (c.child.exitCode !== null) throw new Error(`consumer exited: ${c.output}`);
      const spread = group.map(held);
      return spread.every((n) => n > 0) && spread.reduce((a, b) => a + b, 0) === 6;
    }, 120_000, 50);
    await gate.connect();
    await gate.query('BEGIN');
    await gate.query('LOCK TABLE employees IN SHARE MODE');
    producer = new BenchTunnel(env, ['run', '--role', 'producer']);
    await producer.streaming();
    for (let done = 0; done < changes; done += 1000) {
      await sql(dbs.source, `INSERT INTO employees (first_name, last_name, dob, city, salary) SELECT 'f', 'l', DATE '2000-01-01', 'c', g FROM generate_series(1, ${Math.min(1000, changes - done)}) g`);
    }
    await waitUntil('the backlog published', async () => (await count(dbs.source, 'SELECT changes_published AS n FROM pgtunnel.state')) >= changes, 600_000, 50);
    await producer.stop();
    const spread = group.map(held);
    const start = Date.now();
    await gate.query('COMMIT');
    await waitUntil('the backlog applied', async () => (await count(dbs.target, 'SELECT count(*) AS n FROM employees')) >= changes, 600_000, 20);
    return { consumers, changes, applyPerSec: changes / ((Date.now() - start) / 1000), spread };
  } finally {
    await gate.end().catch(() => {});
    await Promise.all([...group, ...(producer ? [producer] : [])].map((p) => p.stop()));
  }
}
