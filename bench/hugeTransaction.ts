// node dist/bench/hugeTransaction.js [--rows 200000] [--budget 1048576] [--apply per-partition]: one source transaction of
// `rows` inserts under `apply: transactional` with a byte budget that forces the spill path (or the default apply, to compare). A reader on the target counts the
// table the whole time: it must only ever see 0 or every row. Prints the time from the commit to the rows in the
// target, the tunnel's peak RSS and the counts the reader saw.
import { parseArgs } from 'node:util';
import path from 'node:path';
import pg from 'pg';
import { currentTestStack, startTestStack } from '../testkit/testStack.js';
import { BenchContext, BenchTunnel, root, sql, waitUntil } from './context.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '200000' }, budget: { type: 'string', default: String(1024 * 1024) }, apply: { type: 'string', default: 'transactional' } } });
const rows = Number(values.rows);
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = process.env.PGTUNNEL_TEST_SOURCE_SERVER ? undefined : await startTestStack(home, 'huge-tx-stack');
const ctx = new BenchContext(own?.stack ?? currentTestStack(), own?.env ?? { ...(process.env as Record<string, string>) }, home);
const ddl = 'CREATE TABLE bulk (id int PRIMARY KEY, v int, note text)';
try {
  const dbs = await ctx.databases('bench_huge_tx', ddl);
  const tunnel = new BenchTunnel(ctx.tunnelEnv(dbs, 'bulk', { PGTUNNEL_APPLY: values.apply!, PGTUNNEL_EXACTLY_ONCE: 'true', PGTUNNEL_TRANSACTION_METADATA: 'true', PGTUNNEL_TRANSACTION_BUFFER_BYTES: values.budget! }));
  try {
    await tunnel.ready(dbs.source, dbs.target, 'bulk', 'INSERT INTO bulk VALUES (0, 0)');
    const seen = new Set<number>();
    let reading = true;
    const reader = (async () => {
      const client = new pg.Client({ connectionString: dbs.target });
      await client.connect();
      while (reading) seen.add(Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM bulk')).rows[0]!.n));
      await client.end();
    })();
    const started = Date.now();
    await sql(dbs.source, `INSERT INTO bulk SELECT g, g, 'row ' || g FROM generate_series(1, ${rows}) g`);
    const committed = Date.now();
    let rssMb = 0;
    try {
      await waitUntil('the transaction in the target', async () => {
        // a tunnel that died (its memory, say) is reported, not waited for
        if (tunnel.child.exitCode !== null || tunnel.child.signalCode !== null) throw new Error(`the tunnel exited (${tunnel.child.exitCode ?? tunnel.child.signalCode}) after ${(Date.now() - committed) / 1000} s (peak RSS ${Math.round(rssMb)} MB); its output ends:\n${tunnel.output.slice(-3000)}`);
        try {
          rssMb = Math.max(rssMb, tunnel.peakRssMb());
        } catch {
          // exited between the two looks: the next one reports it
        }
        return Number((await sql<{ n: string }>(dbs.target, 'SELECT count(*) AS n FROM bulk'))[0]!.n) === rows + 1;
      }, 3_600_000, 500);
    } catch (err) {
      // the reader stops first: the stack going down under it must not hide why the wait ended
      reading = false;
      await reader.catch(() => {});
      throw err;
    }
    const applied = Date.now();
    reading = false;
    await reader;
    const partial = [...seen].filter((n) => n !== 1 && n !== rows + 1);
    const spilled = tunnel.output.split('\n').filter((l) => l.includes('spilled to the target')).length;
    console.log(JSON.stringify({ apply: values.apply, rows, budgetBytes: Number(values.budget), insertSeconds: (committed - started) / 1000, commitToAppliedSeconds: (applied - committed) / 1000, spills: spilled, peakRssMb: Math.round(tunnel.peakRssMb()), readerCounts: [...seen].sort((a, b) => a - b), partial }));
    if (partial.length > 0) process.exitCode = 1;
  } finally {
    await tunnel.stop();
  }
} finally {
  await own?.stack.down();
}
