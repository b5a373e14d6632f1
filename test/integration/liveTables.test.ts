import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';
import { installInProcess } from '../helpers/inProcessTunnel.js';
import { loadConfig } from '../../src/config/load.js';
import { lockNames } from '../../src/names.js';
import { removeCapture } from '../../src/setup/tableRemoval.js';

/** What capture of a table has in the source: its triggers, its captures and state rows, its change table. */
const captured = async (url: string, table: string, changeTable = `${table}_cdc`) => (await query<{ n: number }>(url,
  `SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('public.' || $1::text) AND tgname LIKE 'pgtunnel%')::int
        + (SELECT count(*) FROM pgtunnel.captures WHERE table_id = 'public.' || $1::text)::int
        + (SELECT count(*) FROM pgtunnel.state WHERE table_id = 'public.' || $1::text)::int
        + (to_regclass($2::text) IS NOT NULL)::int AS n`, [table, changeTable]))[0]!.n;

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
  assert.equal(await captured(db.sourceUrl, 'departments'), 0, 'no trigger, capture record, state or change table of departments left');
  assert.equal(await captured(db.sourceUrl, 'depots'), 0, 'nor of depots');
  assert.equal(await captured(db.sourceUrl, 'employees', 'emp_cdc'), 7, 'employees still captured');
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

test('a removed table whose producer lock another session holds keeps its capture; once free, capture goes, its unpublished changes counted', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_TABLES: 'employees' };
  await installInProcess(env);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'u' || i, i FROM generate_series(1, 3) i");
  await query(db.sourceUrl, "INSERT INTO pgtunnel.signals (table_id) VALUES ('public.employees')");
  const config = loadConfig({ env });
  // a producer of another tunnel that still runs the table, as the lock shows it
  const other = new pg.Client({ connectionString: db.sourceUrl });
  await other.connect();
  try {
    const { rows } = await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid, pg_advisory_lock(hashtext($1), hashtext($2))', [lockNames.producer, 'public.employees']);
    const kept = await removeCapture(config, config.tables[0]!, 1500);
    assert.equal(kept.removed, false, kept.what);
    assert.match(kept.what, new RegExp(`stays installed: .* held by pid ${rows[0]!.pid}.*pgtunnel uninstall`));
    assert.equal(await captured(db.sourceUrl, 'employees', 'emp_cdc'), 7, 'capture untouched');
  } finally {
    await other.end();
  }
  const removal = await removeCapture(config, config.tables[0]!);
  assert.equal(removal.removed, true, removal.what);
  assert.match(removal.what, /capture of public.employees removed from the source .*; 3 changes committed after its last checkpoint/);
  assert.equal(await captured(db.sourceUrl, 'employees', 'emp_cdc'), 0);
  assert.deepEqual(await query(db.sourceUrl, 'SELECT state, message FROM pgtunnel.signals'), [{ state: 'cancelled', message: 'capture of the table removed' }]);
  await query(db.sourceUrl, "INSERT INTO employees (first_name) VALUES ('uncaptured')");
});
