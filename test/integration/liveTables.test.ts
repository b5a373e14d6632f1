import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

const count = async (url: string, table: string) => (await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;

test('tables come and go under load without a restart: SIGHUP adds one, the catalog check finds a new match of a pattern, removing stops them', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, 'CREATE TABLE departments (dept_id int PRIMARY KEY, name text NOT NULL)');
  await query(db.sourceUrl, "INSERT INTO departments SELECT i, 'd' || i FROM generate_series(1, 200) i");
  const config = path.join(db.home, 'tables.json');
  const useTables = (...names: string[]) => writeFileSync(config, JSON.stringify({ tables: names.map((name) => ({ name })) }));
  useTables('employees');
  const env = { ...db.env, PGTUNNEL_CONFIG: config, PGTUNNEL_TABLE_CHECK_INTERVAL_MS: '2000' };
  const tunnel = await TunnelProcess.spawnServed(t, env);
  await tunnel.waitForLog('phase: streaming', 120_000);

  // load on employees the whole time
  let writing = true;
  let written = 0;
  const writer = (async () => {
    while (writing) await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) VALUES ('w', $1)", [++written]);
  })();

  useTables('employees', 'dep*');
  tunnel.child.kill('SIGHUP');
  await tunnel.waitForLog('table added: public.departments', 60_000);
  await waitFor('departments snapshot applied', async () => (await count(db.targetUrl, 'departments')) === 200, 60_000, 100);
  await query(db.sourceUrl, "INSERT INTO departments VALUES (201, 'streamed')");
  await waitFor('departments streaming', async () => (await count(db.targetUrl, 'departments')) === 201, 30_000, 50);

  // a new table matching the pattern, found by the periodic check (no signal)
  await query(db.sourceUrl, 'CREATE TABLE depots (depot_id int PRIMARY KEY, city text)');
  await query(db.sourceUrl, "INSERT INTO depots SELECT i, 'c' || i FROM generate_series(1, 50) i");
  await tunnel.waitForLog('table added: public.depots', 60_000);
  await waitFor('depots applied', async () => (await query(db.targetUrl, "SELECT 1 FROM pg_tables WHERE tablename = 'depots'")).length === 1 && (await count(db.targetUrl, 'depots')) === 50, 60_000, 100);

  // removed while its application keeps writing it: no write fails, and its capture goes once its producer stopped
  let departmentWrites = 0;
  let writingDepartments = true;
  const departmentWriter = (async () => {
    while (writingDepartments) await query(db.sourceUrl, "UPDATE departments SET name = 'racing ' || $1 WHERE dept_id = 1 + $1 % 200", [++departmentWrites]);
  })();
  useTables('employees');
  tunnel.child.kill('SIGHUP');
  await tunnel.waitForLog('table removed: public.departments', 60_000);
  await tunnel.waitForLog('table removed: public.depots', 60_000);
  await tunnel.waitForLog('capture of public.departments removed from the source', 60_000);
  await tunnel.waitForLog('capture of public.depots removed from the source', 60_000);
  writingDepartments = false;
  await departmentWriter;
  const captured = async (table: string) => (await query<{ n: number }>(db.sourceUrl,
    `SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE 'pgtunnel%')::int
          + (SELECT count(*) FROM pgtunnel.captures WHERE table_id = 'public.' || $2::text)::int
          + (SELECT count(*) FROM pgtunnel.state WHERE table_id = 'public.' || $2::text)::int
          + (to_regclass($2::text || '_cdc') IS NOT NULL)::int AS n`, [table, table]))[0]!.n;
  assert.equal(await captured('departments'), 0, 'no trigger, capture record, state or change table of departments left');
  assert.equal(await captured('depots'), 0, 'nor of depots');
  assert.ok(await captured('employees') >= 4, 'employees still captured');
  await query(db.sourceUrl, "INSERT INTO departments VALUES (202, 'after removal')");
  assert.equal((await query(db.sourceUrl, "SELECT 1 FROM pg_class WHERE relname LIKE 'depart%_cdc'")).length, 0, 'a write after the removal has no change table to fill');
  // the running tunnel's status lists the tables it runs now, and says what became of the removed ones
  await waitFor('status of employees only', async () => {
    type Answer = { status: { tables: { table: string }[]; processes: { parts: Record<string, { state: string; reason?: string }> }[] } | null };
    const answer = (await (await fetch(new URL('api/status', tunnel.url))).json()) as Answer;
    const part = answer.status?.processes.map((p) => p.parts['producer public.departments']).find(Boolean);
    return answer.status?.tables.map((s) => s.table).join() === 'public.employees' && part?.state === 'removed' && /capture of public.departments removed/.test(part.reason ?? '');
  }, 30_000, 200);

  writing = false;
  await writer;
  t.diagnostic(`${departmentWrites} updates of departments raced its removal`);
  t.diagnostic(`${written} inserts into employees while tables came and went`);
  await waitFor('employees equal, never restarted', async () => (await runCli(['verify', '--limit', '5'], env)).code === 0, 90_000, 500);
  assert.equal(tunnel.ended(), false, 'the tunnel kept running');
  assert.equal(tunnel.output.split('\n').filter((l) => l.includes('"tunnel starting"')).length, 1, 'started once');
});
