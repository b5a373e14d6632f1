// node dist/bench/captureCpu.js [--rounds 5] [--rows 100000] [--variant NAME …]: what capture costs the source backend in CPU,
// and what each part of it costs. Wall time on a shared 2-core machine swings 2× between runs; the
// backend's own CPU time (/proc/<pid>/schedstat, ns) does not. Each variant runs in a transaction that
// is rolled back, its changes to capture (dropped index, rewritten function) made inside it, so every
// variant starts from the same installed capture. Ratios are to the trigger-less table in the same round.
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { employeesDdl } from '../src/stack/demo.js';
import { currentTestStack, startTestStack } from '../testkit/testStack.js';
import { BenchContext, BenchTunnel, cpuNs, root, sql } from './context.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, rows: { type: 'string', default: '100000' }, variant: { type: 'string', multiple: true } } });
const rounds = Number(values.rounds);
const rows = Number(values.rows);

const measures = {
  bulk: 'UPDATE employees SET salary = salary + 1',
  // the same after single-row UPDATEs in its session (their cached plans must not serve a bulk UPDATE)
  bulkAfterSingle: 'DO $$ BEGIN FOR i IN 1..10 LOOP UPDATE employees SET salary = salary + 1 WHERE emp_id = i; END LOOP; UPDATE employees SET salary = salary + 1; END $$',
  update: `DO $$ BEGIN FOR i IN 1..5000 LOOP UPDATE employees SET salary = salary + 1 WHERE emp_id = 1 + (i * 37 % ${rows}); END LOOP; END $$`,
  insert: "DO $$ BEGIN FOR i IN 1..5000 LOOP INSERT INTO employees (first_name, last_name, dob, city, salary) VALUES ('f', 'l', '2000-01-01', 'c', 1); END LOOP; END $$",
};

/** The UPDATE capture function without the anti-join that captures a key change as a delete of the old key. */
async function withoutAntiJoin(source: string): Promise<string> {
  const [f] = await sql<{ name: string; body: string }>(source, `SELECT p.oid::regprocedure::text AS name, pg_get_functiondef(p.oid) AS body FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
    WHERE t.tgrelid = 'public.employees'::regclass AND t.tgname = 'pgtunnel_capture_update'`);
  // sql/source/000006: the anti-join sits behind GET DIAGNOSTICS … END IF
  const body = f!.body.replace(/ GET DIAGNOSTICS .* END IF;/s, '');
  if (body === f!.body) throw new Error(`capture cpu: no anti-join found in ${f!.name}`);
  return body;
}


async function cpuMs(url: string, setup: string[], statement: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    await client.query('BEGIN');
    for (const s of setup) await client.query(s);
    const before = cpuNs(pid);
    await client.query(statement);
    const ms = (cpuNs(pid) - before) / 1e6;
    await client.query('ROLLBACK');
    return ms;
  } finally {
    await client.end();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = process.env.PGTUNNEL_TEST_SOURCE_SERVER ? undefined : await startTestStack(home, 'capture-cpu-stack');
const ctx = new BenchContext(own?.stack ?? currentTestStack(), own?.env ?? { ...(process.env as Record<string, string>) }, home);
try {
  const plain = (await ctx.databases('bench_cpu_plain', employeesDdl)).source;
  const dbs = await ctx.databases('bench_cpu_captured', employeesDdl);
  for (const url of [plain, dbs.source]) await sql(url, `INSERT INTO employees (first_name, salary) SELECT 'n', 1 FROM generate_series(1, ${rows})`);
  const install = new BenchTunnel(ctx.tunnelEnv(dbs, 'employees'), ['install']);
  await new Promise((resolve) => install.child.once('exit', resolve));
  if (install.child.exitCode !== 0) throw new Error(`install failed: ${install.output}`);
  for (const url of [plain, dbs.source]) await sql(url, 'VACUUM ANALYZE employees');
  const noAntiJoin = await withoutAntiJoin(dbs.source);
  const noPk = 'ALTER TABLE emp_cdc DROP CONSTRAINT emp_cdc_pkey';
  const variants: [string, string, string[]][] = [
    ['no trigger', plain, []],
    ['capture as installed', dbs.source, []],
    ['no primary key on change_id', dbs.source, [noPk]],
    ['no anti-join in the UPDATE function', dbs.source, [noAntiJoin]],
    ['neither', dbs.source, [noPk, noAntiJoin]],
    ['no index at all, no anti-join (the floor of trigger capture)', dbs.source, [noPk, 'DROP INDEX emp_cdc_txid_idx', noAntiJoin]],
    // the opt-in parts: full before-images (sql/source/000009) and the transaction counter (000008)
    ['before: full', dbs.source, ["UPDATE pgtunnel.captures SET before_full = true WHERE table_id = 'public.employees'", "SELECT pgtunnel.sync_capture('public.employees')"]],
    ['transactionMetadata', dbs.source, ['ALTER TABLE emp_cdc ENABLE TRIGGER pgtunnel_transaction_events']],
  ];
  // --variant picks some (the baseline always runs: every ratio is to it)
  if (values.variant) variants.splice(0, variants.length, ...variants.filter(([name]) => name === 'no trigger' || values.variant!.includes(name)));
  const results = new Map(variants.map(([name]) => [name, new Map(Object.keys(measures).map((m) => [m, [] as number[]]))]));
  for (let round = 0; round < rounds; round++) {
    for (const [m, statement] of Object.entries(measures)) {
      for (const [name, url, setup] of variants) results.get(name)!.get(m)!.push(await cpuMs(url, setup, statement));
    }
  }
  const base = results.get('no trigger')!;
  console.log(`\ncapture cpu: source backend CPU, median of ${rounds} rounds; ratio to no trigger per round, median (min–max); bulk = one UPDATE of ${rows} rows, update/insert = 5,000 single-row statements\n`);
  console.log('| variant | bulk UPDATE ms | ratio | the same after single-row UPDATEs, ms | ratio | single-row UPDATE µs | ratio | single-row INSERT µs | ratio |\n|---|---|---|---|---|---|---|---|---|');
  for (const [name] of variants) {
    const r = results.get(name)!;
    const cells = Object.keys(measures).flatMap((m) => {
      const per = r.get(m)!.map((x, i) => x / base.get(m)![i]!);
      const value = m.startsWith('bulk') ? median(r.get(m)!).toFixed(0) : ((median(r.get(m)!) * 1000) / 5000).toFixed(1);
      return [value, `${median(per).toFixed(2)}× (${Math.min(...per).toFixed(2)}–${Math.max(...per).toFixed(2)})`];
    });
    console.log(`| ${name} | ${cells.join(' | ')} |`);
  }
} finally {
  await own?.stack.down();
}
process.exit(0);
