// node dist/bench/captureModes.js [--rounds 5] [--seconds 10] [--rows 100000]: capture's cost on the source, before
// and after the capture rewrite (f081202). Four databases on one cluster, the same table and workload: no trigger;
// the old capture (one plpgsql function branching on TG_OP, inserting `n.*` by position); the current capture in
// direct mode (DDL event trigger present, as `pgtunnel install` creates it as a superuser); the current capture in
// by-name json mode (no event trigger). pgbench single-row INSERT and UPDATE tps with 4 clients and a bulk UPDATE
// of --rows rows, interleaved: each round runs every measure on every variant (order rotated per round), and
// ratios are taken to the no-trigger run of the same round; medians over the rounds. The tunnel is not running.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { employeesDdl } from '../src/stack/demo.js';
import { currentTestStack, startTestStack } from '../testkit/testStack.js';
import { BenchContext, BenchTunnel, median, root, sql } from './context.js';
import { pgbench } from './overhead.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, seconds: { type: 'string', default: '10' }, rows: { type: 'string', default: '100000' }, measures: { type: 'string', default: 'insert,update,bulk' } } });
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const rows = Number(values.rows);

/**
 * The capture as it was before the rewrite (sql/table/000001, 000002 and 000004 at a4c5ea1, rendered for
 * public.employees): the change table starts with the table's columns in order, so `n.*` lines up.
 */
const oldCapture = `
CREATE TABLE public.emp_cdc (LIKE public.employees);
ALTER TABLE public.emp_cdc ALTER COLUMN emp_id DROP NOT NULL;
ALTER TABLE public.emp_cdc
  ADD COLUMN action varchar(100) NOT NULL,
  ADD COLUMN change_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  ADD COLUMN captured_at timestamptz NOT NULL DEFAULT clock_timestamp();
CREATE INDEX ON public.emp_cdc (txid);
CREATE FUNCTION public.emp_cdc_capture() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO public.emp_cdc SELECT n.*, 'INSERT' FROM new_rows n;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO public.emp_cdc SELECT n.*, 'UPDATE' FROM new_rows n;
    INSERT INTO public.emp_cdc SELECT o.*, 'DELETE' FROM old_rows o
      WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.emp_id = o.emp_id);
  ELSE
    INSERT INTO public.emp_cdc SELECT o.*, 'DELETE' FROM old_rows o;
  END IF;
  RETURN NULL;
END
$fn$;
CREATE FUNCTION public.emp_cdc_capture_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO public.emp_cdc (action) VALUES ('TRUNCATE');
  RETURN NULL;
END
$fn$;
CREATE TRIGGER pgtunnel_capture_insert AFTER INSERT ON public.employees
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.emp_cdc_capture();
CREATE TRIGGER pgtunnel_capture_update AFTER UPDATE ON public.employees
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.emp_cdc_capture();
CREATE TRIGGER pgtunnel_capture_delete AFTER DELETE ON public.employees
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION public.emp_cdc_capture();
CREATE TRIGGER pgtunnel_capture_truncate AFTER TRUNCATE ON public.employees
  FOR EACH STATEMENT EXECUTE FUNCTION public.emp_cdc_capture_truncate();`;

type Variant = { name: string; label: string; db: string; captured: boolean };
const variants: Variant[] = [
  { name: 'none', label: 'no trigger', db: 'bench_cap_none', captured: false },
  { name: 'old', label: 'old capture (a4c5ea1: TG_OP branches, `n.*` by position)', db: 'bench_cap_old', captured: true },
  { name: 'direct', label: 'new capture, direct mode (event trigger present)', db: 'bench_cap_direct', captured: true },
  { name: 'json', label: 'new capture, by-name json mode (no event trigger)', db: 'bench_cap_json', captured: true },
];
const allMeasures = ['insert', 'update', 'bulk'] as const;
type Measure = (typeof allMeasures)[number];
const measures = values.measures!.split(',') as Measure[];
if (measures.some((m) => !allMeasures.includes(m))) throw new Error(`capture modes: --measures takes ${allMeasures.join(',')}`);

const scripts = mkdtempSync(path.join(tmpdir(), 'pgtunnel-capture-modes-'));
writeFileSync(path.join(scripts, 'insert.sql'), "INSERT INTO employees (first_name, last_name, dob, city, salary) VALUES ('f', 'l', '2000-01-01', 'c', 1);\n");
writeFileSync(path.join(scripts, 'update.sql'), `\\set id random(1, ${rows})\nUPDATE employees SET salary = salary + 1 WHERE emp_id = :id;\n`);

async function install(ctx: BenchContext, dbs: { source: string; target: string }): Promise<void> {
  const run = new BenchTunnel(ctx.tunnelEnv(dbs, 'employees'), ['install']);
  await new Promise((resolve) => run.child.once('exit', resolve));
  if (run.child.exitCode !== 0) throw new Error(`install failed: ${run.output}`);
}

/** Creates a variant's database and capture, and checks that it captures what it should, the way it should. */
async function prepare(ctx: BenchContext, v: Variant): Promise<string> {
  const dbs = await ctx.databases(v.db, employeesDdl);
  await sql(dbs.source, `INSERT INTO employees (first_name, salary) SELECT 'n', 1 FROM generate_series(1, ${rows})`);
  if (v.name === 'old') await sql(dbs.source, oldCapture);
  if (v.name === 'direct' || v.name === 'json') await install(ctx, dbs);
  if (v.name === 'json') {
    await sql(dbs.source, 'DROP EVENT TRIGGER pgtunnel_ddl');
    await install(ctx, dbs); // regenerates capture by name, as without the privilege to create the event trigger
  }
  if (v.name === 'direct' || v.name === 'json') {
    const [fn] = await sql<{ body: string; eventTrigger: boolean }>(dbs.source, `SELECT pg_get_functiondef(t.tgfoid) AS body, EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgtunnel_ddl') AS "eventTrigger"
      FROM pg_trigger t WHERE t.tgrelid = 'public.employees'::regclass AND t.tgname = 'pgtunnel_capture_update'`);
    const json = fn!.body.includes('json_populate_record');
    if (json !== (v.name === 'json') || fn!.eventTrigger === (v.name === 'json')) throw new Error(`capture modes: ${v.name} is not in the mode it should be: ${fn!.body}`);
  }
  if (v.captured) {
    await sql(dbs.source, "INSERT INTO employees (first_name, salary) VALUES ('check', 1); UPDATE employees SET salary = 2 WHERE emp_id = 1");
    const got = await sql<{ action: string; first_name: string }>(dbs.source, 'SELECT action, first_name FROM emp_cdc ORDER BY change_id');
    if (got.map((r) => `${r.action}:${r.first_name}`).join(',') !== 'INSERT:check,UPDATE:n') throw new Error(`capture modes: ${v.name} captured ${JSON.stringify(got)}`);
  }
  return dbs.source;
}

/** Back to the starting state before each round: the seed rows only, an empty change table, fresh statistics. */
async function reset(source: string, v: Variant): Promise<void> {
  await sql(source, `SET session_replication_role = replica; DELETE FROM employees WHERE emp_id > ${rows}`);
  if (v.captured) await sql(source, 'TRUNCATE emp_cdc');
  await sql(source, `VACUUM ANALYZE employees${v.captured ? ', emp_cdc' : ''}`);
}

type Plan = { 'Execution Time': number; Triggers?: { 'Trigger Name': string; Time: number }[] };

/** tps, or for the bulk UPDATE its wall time and, from EXPLAIN ANALYZE, the part spent in the capture trigger. */
async function measure(source: string, m: Measure, secs: number): Promise<{ value: number; triggerSeconds?: number }> {
  if (m === 'insert') return { value: pgbench(source, path.join(scripts, 'insert.sql'), secs) };
  if (m === 'update') return { value: pgbench(source, path.join(scripts, 'update.sql'), secs) };
  const start = process.hrtime.bigint();
  const plan = (await sql<{ 'QUERY PLAN': Plan[] }>(source, `EXPLAIN (ANALYZE, FORMAT JSON) UPDATE employees SET salary = salary + 1 WHERE emp_id <= ${rows}`))[0]!['QUERY PLAN'][0]!;
  const value = Number(process.hrtime.bigint() - start) / 1e9;
  const triggerSeconds = (plan.Triggers ?? []).filter((t) => t['Trigger Name'].startsWith('pgtunnel_')).reduce((a, t) => a + t.Time, 0) / 1000;
  return { value, triggerSeconds };
}

const home = path.resolve(root, process.env.PGTUNNEL_HOME ?? '.pgtunnel');
const own = process.env.PGTUNNEL_TEST_SOURCE_SERVER ? undefined : await startTestStack(home, 'capture-modes-stack');
const ctx = new BenchContext(own?.stack ?? currentTestStack(), own?.env ?? { ...(process.env as Record<string, string>) }, home);
const f = (n: number, digits = 1) => n.toFixed(digits);
const log = (text: string) => console.log(`capture modes: ${text}`);
try {
  const sources = new Map<string, string>();
  for (const v of variants) sources.set(v.name, await prepare(ctx, v));
  await sql(`${ctx.sourceServer}/postgres`, 'CHECKPOINT');
  // results[variant][measure][round]
  const results = new Map(variants.map((v) => [v.name, new Map(measures.map((m) => [m, [] as number[]]))]));
  const triggerSeconds = new Map(variants.map((v) => [v.name, [] as number[]]));
  for (let round = -1; round < rounds; round++) {
    const order = variants.map((_, i) => variants[(i + Math.max(round, 0)) % variants.length]!);
    for (const v of order) await reset(sources.get(v.name)!, v);
    await sql(`${ctx.sourceServer}/postgres`, 'CHECKPOINT');
    for (const m of measures) {
      for (const v of order) {
        // round -1 warms caches and plans and is not counted
        const { value, triggerSeconds: t } = await measure(sources.get(v.name)!, m, round < 0 ? Math.min(2, seconds) : seconds);
        if (round >= 0) results.get(v.name)!.get(m)!.push(value);
        if (round >= 0 && t !== undefined) triggerSeconds.get(v.name)!.push(t);
        log(`${round < 0 ? 'warm-up' : `round ${round + 1}/${rounds}`} ${m} ${v.name}: ${m === 'bulk' ? `${f(value, 3)} s (trigger ${f(t!, 3)} s)` : `${f(value, 0)} tps`}`);
      }
    }
  }
  const base = results.get('none')!;
  const heads: Record<Measure, string[]> = { insert: ['insert tps', 'insert ratio'], update: ['update tps', 'update ratio'], bulk: [`bulk UPDATE ${rows} rows`, 'bulk ratio', 'of it in the trigger'] };
  const head = measures.flatMap((m) => heads[m]);
  const lines = [`| variant | ${head.join(' | ')} |`, `|---|${head.map(() => '---|').join('')}`];
  for (const v of variants) {
    const r = results.get(v.name)!;
    const cells = measures.flatMap((m) => {
      // per round, to the no-trigger run of the same round; median and range over the rounds
      const per = r.get(m)!.map((x, i) => x / base.get(m)![i]!);
      const ratio = `${f(median(per), 2)}${m === 'bulk' ? '×' : ''} (${f(Math.min(...per), 2)}–${f(Math.max(...per), 2)})`;
      if (m !== 'bulk') return [f(median(r.get(m)!), 0), ratio];
      return [`${f(median(r.get(m)!), 3)} s`, ratio, `${f(median(triggerSeconds.get(v.name)!), 3)} s`];
    });
    lines.push(`| ${v.label} | ${cells.join(' | ')} |`);
  }
  console.log(`\n${rounds} interleaved rounds, pgbench -c 4 -j 2 -T ${seconds} per measure; medians; ratio = variant / no trigger in the same round, median (min–max)\n`);
  console.log(`${lines.join('\n')}\n`);
  console.log(JSON.stringify({ results: Object.fromEntries([...results].map(([k, v]) => [k, Object.fromEntries(v)])), triggerSeconds: Object.fromEntries(triggerSeconds) }));
} finally {
  await own?.stack.down();
}
process.exit(0);
