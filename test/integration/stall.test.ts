import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';

const count = async (url: string, table: string) => (await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;

test('a vacuum of the change table that cannot get its lock does not hold the stream', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await TunnelProcess.start(t, db.env);
  // SHARE UPDATE EXCLUSIVE is what VACUUM takes: the capture triggers' inserts, the producer's reads and
  // its cleanup go on, only a vacuum waits (as one waits on a lock under a steady write load).
  const holder = new pg.Client({ connectionString: db.sourceUrl });
  holder.on('error', () => {}); // the database is dropped (FORCE) at cleanup
  await holder.connect();
  t.after(() => holder.end().catch(() => {}));
  await holder.query('BEGIN');
  await holder.query('LOCK TABLE emp_cdc IN SHARE UPDATE EXCLUSIVE MODE');
  // 20,000 cleaned change rows make the producer's vacuum due.
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, 0 FROM generate_series(1, 20000) i");
  await waitFor('the inserts applied', async () => (await count(db.targetUrl, 'employees')) === 20000, 60_000, 50);
  await waitFor('a vacuum of the change table waiting on its lock', async () =>
    (await query(db.sourceUrl, "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'VACUUM%emp_cdc%' AND wait_event_type = 'Lock'")).length > 0, 30_000, 50);

  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name, salary) VALUES (900001, 'after', 1)");
  const committed = Date.now();
  await waitFor('a change committed while the vacuum waits', async () => (await query(db.targetUrl, 'SELECT 1 FROM employees WHERE emp_id = 900001')).length > 0, 10_000, 10);
  const ms = Date.now() - committed;
  t.diagnostic(`source commit to target visible while the vacuum waited: ${ms} ms`);
  assert.ok(ms < 1000, `the change took ${ms} ms`);

  await holder.query('COMMIT');
  await holder.end();
  assert.equal(await tunnel.stop(), 0);
});
