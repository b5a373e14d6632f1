import assert from 'node:assert/strict';
import { test } from 'node:test';
import { query, tunnelDatabases } from '../helpers/services.js';
import { runCli } from '../helpers/tunnelProcess.js';

const count = async (url: string) => (await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM employees'))[0]!.n;

test('run --once with apply: transactional applies everything committed before it started and exits 0, again for later changes; a refused transaction is reported as dead letters, whole', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, `INSERT INTO employees (first_name, last_name, dob, city, salary)
    SELECT 'f' || i, 'l' || i, DATE '1970-01-01' + i, 'c' || i % 7, i FROM generate_series(1, 2000) i`);
  const env = { ...db.env, PGTUNNEL_APPLY: 'transactional', PGTUNNEL_PARTITIONS: '3', PGTUNNEL_HTTP_PORT: 'off' };
  const first = await runCli(['run', '--once', '--timeout', '150s'], env, 180_000);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.equal(await count(db.targetUrl), 2000, `the snapshot applied; the run said:\n${first.stdout}`);
  // changes since: deletes (each followed by a tombstone, which applies nothing) and a transaction the target refuses
  await query(db.sourceUrl, 'UPDATE employees SET salary = salary + 1 WHERE emp_id % 3 = 0');
  await query(db.sourceUrl, 'DELETE FROM employees WHERE emp_id % 10 = 1');
  await query(db.targetUrl, 'ALTER TABLE employees ADD CONSTRAINT city_not_bad CHECK (city <> $$bad$$)');
  await query(db.sourceUrl, "BEGIN; UPDATE employees SET city = 'bad' WHERE emp_id = 500; UPDATE employees SET city = 'fine' WHERE emp_id = 502; COMMIT");

  const run = await runCli(['run', '--once', '--timeout', '150s'], env, 180_000);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /run --once done: the target applied everything committed before the start/);
  assert.match(run.stdout, /2 changes became dead letters/, 'the refused transaction whole: both of its changes');
  assert.equal(await count(db.targetUrl), await count(db.sourceUrl));
  const cities = await query<{ city: string }>(db.targetUrl, 'SELECT city FROM employees WHERE emp_id IN (500, 502) ORDER BY emp_id');
  assert.deepEqual(cities.map((c) => c.city), ['c3', 'c5'], 'neither change of the refused transaction reached the target');
});
