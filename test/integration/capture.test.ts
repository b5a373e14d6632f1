import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';

// The tunnels run in this process; install, uninstall and status are the CLI under test.

const countIn = async (url: string, where: string) => (await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM employees WHERE ${where}`))[0]!.n;

test('a transaction that commits after later ones is not lost; rolled-back work never arrives', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await InProcessTunnel.start(t, db.env);

  // The late transaction takes its change ids first…
  const late = new pg.Client({ connectionString: db.sourceUrl });
  late.on('error', () => {});
  await late.connect();
  onCleanup(t, () => late.end());
  await late.query('BEGIN');
  await late.query("INSERT INTO employees (emp_id, first_name) VALUES (1, 'late')");
  const { rows } = await late.query<{ id: number }>('SELECT max(change_id)::int AS id FROM emp_cdc');
  const lateChangeId = rows[0]!.id;

  // …then many later transactions commit and are published in batches past it.
  for (let i = 0; i < 20; i++) await query(db.sourceUrl, `INSERT INTO employees (emp_id, first_name) VALUES (${100 + i}, 'early')`);
  await waitFor('the later transactions in the target', async () => (await countIn(db.targetUrl, "first_name = 'early'")) === 20);
  // the checkpoint that deletes published rows commits after Kafka's ack, so possibly after the target applied them
  await waitFor('the later changes published and cleaned up while the late one is still open', async () =>
    (await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM emp_cdc WHERE change_id > $1', [lateChangeId]))[0]!.n === 0, 10_000, 50);

  // A rollback and a savepoint rollback inside the late transaction must never reach the target.
  await late.query('SAVEPOINT s');
  await late.query("INSERT INTO employees (emp_id, first_name) VALUES (2, 'rolled back to savepoint')");
  await late.query('ROLLBACK TO SAVEPOINT s');
  await late.query('COMMIT');
  await query(db.sourceUrl, "BEGIN; INSERT INTO employees (emp_id, first_name) VALUES (3, 'rolled back'); ROLLBACK");
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name) VALUES (4, 'marker')");

  await waitFor('the late transaction in the target', async () => (await countIn(db.targetUrl, "first_name IN ('late', 'marker')")) === 2, 10_000);
  assert.equal(await countIn(db.targetUrl, 'emp_id IN (2, 3)'), 0);
  assert.deepEqual(await tunnel.differences(), []);
  await tunnel.stop();
});

test('capture writes the seed columns with action, and a key-changing update as upsert plus delete', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const install = await runCli(['install'], db.env);
  assert.equal(install.code, 0, install.stderr);
  assert.match(install.stdout, /change table emp_cdc, key \(emp_id\)/);
  const columns = await query<{ column_name: string }>(db.sourceUrl,
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'emp_cdc' ORDER BY ordinal_position");
  assert.deepEqual(columns.map((c) => c.column_name), ['emp_id', 'first_name', 'last_name', 'dob', 'city', 'salary', 'action', 'change_id', 'txid', 'captured_at', 'schema_version']);
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name) VALUES (1, 'a'), (2, 'b')");
  await query(db.sourceUrl, 'UPDATE employees SET emp_id = emp_id + 10');
  await query(db.sourceUrl, 'DELETE FROM employees WHERE emp_id = 11');
  const changes = await query<{ emp_id: number; action: string }>(db.sourceUrl, 'SELECT emp_id, action FROM emp_cdc ORDER BY change_id');
  assert.deepEqual(changes.map((c) => `${c.action} ${c.emp_id}`), ['INSERT 1', 'INSERT 2', 'UPDATE 11', 'UPDATE 12', 'DELETE 1', 'DELETE 2', 'DELETE 11']);
  // install is idempotent
  assert.equal((await runCli(['install'], db.env)).code, 0);
  const uninstall = await runCli(['uninstall'], db.env);
  assert.equal(uninstall.code, 0, uninstall.stderr);
  assert.equal((await query(db.sourceUrl, "SELECT 1 FROM pg_trigger WHERE tgname LIKE 'pgtunnel_%'")).length, 0);
  assert.equal((await query(db.sourceUrl, "SELECT to_regclass('emp_cdc') AS t"))[0]!.t, null);
});

test('a batch larger than a page is published in pages and the checkpoint closes it, even on an exact multiple', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_BATCH_SIZE: '10' };
  const tunnel = await InProcessTunnel.start(t, env);
  for (const rows of [25, 20]) {
    await query(db.sourceUrl, `INSERT INTO employees (first_name) SELECT 'p' || i FROM generate_series(1, ${rows}) i`);
  }
  await waitFor('all 45 rows in the target', async () => (await countIn(db.targetUrl, 'true')) === 45, 10_000);
  const report = await waitFor('the last batch checkpointed and cleaned up', async () => {
    const status = JSON.parse((await runCli(['status', '--json'], env)).stdout);
    const table = status.tables[0];
    return table.checkpoint.batchSnapshot === null && table.changeTableRows === 0 ? table : undefined;
  }, 10_000, 100);
  assert.equal(report.changesPublished, 45);
  await tunnel.stop();
});

test('TRUNCATE on the source clears the target, in order with the changes around it', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name) SELECT 'before' || i FROM generate_series(1, 300) i");
  const tunnel = await InProcessTunnel.start(t, db.env);
  await waitFor('the snapshot', async () => (await countIn(db.targetUrl, 'true')) === 300);
  // Changes before, the truncate, and changes after it, all in one source transaction and in the next.
  await query(db.sourceUrl, `BEGIN;
    UPDATE employees SET city = 'gone' WHERE emp_id <= 100;
    TRUNCATE employees;
    INSERT INTO employees (emp_id, first_name) VALUES (5, 'after in the same transaction');
    COMMIT;
    INSERT INTO employees (emp_id, first_name) VALUES (6, 'after')`);
  await tunnel.waitForEqual(15_000);
  assert.deepEqual((await query<{ emp_id: number }>(db.targetUrl, 'SELECT emp_id FROM employees ORDER BY 1')).map((r) => r.emp_id), [5, 6]);
  await tunnel.stop();
});
