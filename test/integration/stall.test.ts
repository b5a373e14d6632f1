import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';

const count = async (url: string, table: string) => (await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM ${table}`))[0]!.n;

test('a vacuum of the change table that cannot get its lock does not hold the stream', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await InProcessTunnel.start(t, db.env);
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
  const vacuumWaiting = async () => (await query(db.sourceUrl, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'VACUUM%emp_cdc%' AND wait_event_type = 'Lock'")).length > 0;
  await waitFor('a vacuum of the change table waiting on its lock', vacuumWaiting, 30_000, 50);

  const since = tunnel.events.recorded.length;
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name, salary) VALUES (900001, 'after', 1)");
  // An in-loop vacuum would hold the stream until the lock is released: the change would never arrive here.
  await waitFor('a change committed while the vacuum waits', async () => (await query(db.targetUrl, 'SELECT 1 FROM employees WHERE emp_id = 900001')).length > 0, 10_000, 10);
  assert.ok(await vacuumWaiting(), 'the change was applied while the vacuum still waited on its lock');
  // A figure here, not a bound: stall bounds are bench/stall.ts's (changes at or over 1 s under load).
  const latencies = tunnel.events.of('pgtunnel:latencies', since).flatMap((r) => r.event.latenciesMs);
  t.diagnostic(`source commit to target commit while the vacuum waited: ${latencies.length > 0 ? `${Math.max(...latencies)} ms` : 'not measured'}`);

  await holder.query('COMMIT');
  await holder.end();
  await tunnel.stop();
});
