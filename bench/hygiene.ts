// npm run hygiene: the source-hygiene long run — a 1,000,000-row snapshot killed with SIGKILL and resumed,
// `verify` on 1,000,000 rows, then 1,000,000 captured changes with the change table's rows and size sampled.
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { employeesDdl } from '../src/stack/demo.js';
import { startTestStack } from '../testkit/testStack.js';
import { BenchContext, BenchTunnel, root, sql, waitUntil } from './context.js';

const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const { stack, env } = await startTestStack(home, 'hygiene-stack');
const ctx = new BenchContext(stack, env, home);
const log = (text: string) => console.log(`hygiene: ${text}`);
const rows = 1_000_000;
const lines: string[] = [];

const state = async (url: string) => (await sql<{ phase: string; done: string }>(url, 'SELECT phase, snapshot_rows_done::text AS done FROM pgtunnel.state'))[0]!;
const count = async (url: string) => Number((await sql<{ n: string }>(url, 'SELECT count(*) AS n FROM employees'))[0]!.n);

try {
  const dbs = await ctx.databases('hygiene', employeesDdl);
  const tunnelEnv = ctx.tunnelEnv(dbs, 'employees');
  await sql(dbs.source, `INSERT INTO employees (first_name, last_name, dob, city, salary) SELECT 'f' || i, 'l' || i, DATE '1970-01-01' + i % 15000, 'c' || i % 100, i FROM generate_series(1, ${rows}) i`);

  log('snapshot of 1,000,000 rows, SIGKILL at 300,000 or more');
  const first = new BenchTunnel(tunnelEnv);
  await waitUntil('300,000 snapshot rows', async () => Number((await state(dbs.source).catch(() => ({ done: '0' }))).done) >= 300_000, 600_000, 100);
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  const killedAt = Number((await state(dbs.source)).done);
  await sql(dbs.source, "UPDATE employees SET city = 'during' WHERE emp_id % 1000 = 0");
  const resumedStart = Date.now();
  const second = new BenchTunnel(tunnelEnv);
  await second.streaming();
  await waitUntil('the snapshot in the target', async () => (await count(dbs.target)) === rows, 600_000, 200);
  const finalDone = Number((await state(dbs.source)).done);
  lines.push(`| snapshot killed at ${killedAt} rows, restarted | resumed: the restart read ${finalDone - killedAt} more rows (${finalDone} in all, not ${killedAt + rows}), ${((Date.now() - resumedStart) / 1000).toFixed(1)} s to finish |`);

  log('verify on 1,000,000 rows');
  const verifyStart = Date.now();
  const verify = new BenchTunnel(tunnelEnv, ['verify']);
  const code = await new Promise<number | null>((r) => verify.child.once('exit', r));
  lines.push(`| \`verify\` on ${rows} rows after the resumed snapshot | exit ${code} in ${((Date.now() - verifyStart) / 1000).toFixed(1)} s (${verify.output.trim().split('\n').at(-1)}) |`);

  log('1,000,000 changes: 10 UPDATEs of 100,000 rows each, change table sampled');
  let maxRows = 0;
  const sizes: number[] = [];
  for (let round = 0; round < 10; round++) {
    await sql(dbs.source, `UPDATE employees SET salary = salary + 1 WHERE emp_id % 10 = ${round}`);
    await waitUntil('the round published', async () => {
      const [s] = await sql<{ rows: string; bytes: string }>(dbs.source, "SELECT count(*) AS rows, pg_total_relation_size('emp_cdc') AS bytes FROM emp_cdc");
      maxRows = Math.max(maxRows, Number(s!.rows));
      return Number(s!.rows) === 0;
    }, 600_000, 100);
    sizes.push(Number((await sql<{ bytes: string }>(dbs.source, "SELECT pg_total_relation_size('emp_cdc') AS bytes"))[0]!.bytes));
    log(`round ${round + 1}: change table ${(sizes.at(-1)! / 1e6).toFixed(1)} MB`);
  }
  const mb = sizes.map((b) => (b / 1e6).toFixed(1)).join(', ');
  lines.push(`| 1,000,000 captured changes with the tunnel running | change table at most ${maxRows} rows (the largest transaction is 100,000); size after each 100,000: ${mb} MB |`);
  const again = new BenchTunnel(tunnelEnv, ['verify']);
  const code2 = await new Promise<number | null>((r) => again.child.once('exit', r));
  lines.push(`| \`verify\` after the 1,000,000 changes | exit ${code2} |`);
  await second.stop();
} finally {
  await stack.down();
}
const table = `\n## Source hygiene ${new Date().toISOString().slice(0, 10)} (npm run hygiene)\n| what | result |\n|---|---|\n${lines.join('\n')}\n`;
appendFileSync(path.join(root, 'bench', 'RESULTS.md'), table);
console.log(table);
process.exit(0);
