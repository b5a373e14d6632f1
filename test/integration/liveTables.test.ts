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

  useTables('employees');
  tunnel.child.kill('SIGHUP');
  await tunnel.waitForLog('table removed: public.departments', 60_000);
  await tunnel.waitForLog('table removed: public.depots', 60_000);
  // the running tunnel's status lists the tables it runs now
  await waitFor('status of employees only', async () => {
    const answer = (await (await fetch(new URL('api/status', tunnel.url))).json()) as { status: { tables: { table: string }[] } | null };
    return answer.status?.tables.map((s) => s.table).join() === 'public.employees';
  }, 30_000, 200);

  writing = false;
  await writer;
  t.diagnostic(`${written} inserts into employees while tables came and went`);
  await waitFor('employees equal, never restarted', async () => (await runCli(['verify', '--limit', '5'], env)).code === 0, 90_000, 500);
  assert.equal(tunnel.ended(), false, 'the tunnel kept running');
  assert.equal(tunnel.output.split('\n').filter((l) => l.includes('"tunnel starting"')).length, 1, 'started once');
});
