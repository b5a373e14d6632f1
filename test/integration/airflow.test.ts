import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { airflowVenv, exampleDir, run } from '../helpers/airflow.js';
import { onCleanup, query, tunnelDatabases } from '../helpers/services.js';
import { cliPath, runCli } from '../helpers/tunnelProcess.js';

const home = path.resolve(process.env.PGTUNNEL_TEST_STACK_ROOT ?? '.pgtunnel/test-stack', '..');

test('Airflow runs the example DAG (publish with run --role producer --once, then apply with run --role consumer --once): the target equals the source', { timeout: 1_200_000 }, async (t) => {
  const bin = await airflowVenv(home);
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, `INSERT INTO employees (first_name, last_name, dob, city, salary)
    SELECT 'f' || i, 'l' || i, DATE '1970-01-01' + i, 'c' || i % 5, i FROM generate_series(1, 2000) i`);
  assert.equal((await runCli(['install'], db.env)).code, 0);
  // pending changes beside the snapshot
  await query(db.sourceUrl, "UPDATE employees SET city = 'moved' WHERE emp_id % 4 = 0");
  await query(db.sourceUrl, 'DELETE FROM employees WHERE emp_id % 9 = 0');

  const airflowHome = mkdtempSync(path.join(tmpdir(), 'pgtunnel-airflow-'));
  onCleanup(t, () => rmSync(airflowHome, { recursive: true, force: true }));
  const env = {
    ...process.env,
    ...db.env,
    PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`,
    AIRFLOW_HOME: airflowHome,
    AIRFLOW__CORE__DAGS_FOLDER: exampleDir,
    AIRFLOW__CORE__LOAD_EXAMPLES: 'False',
    PGTUNNEL_CMD: `"${process.execPath}" "${cliPath}"`,
  };
  const started = Date.now();
  const migrated = await run(path.join(bin, 'airflow'), ['db', 'migrate'], env, 300_000);
  assert.equal(migrated.code, 0, migrated.output.slice(-4000));
  const migrateSeconds = (Date.now() - started) / 1000;
  const dagRun = await run(path.join(bin, 'airflow'), ['dags', 'test', 'pgtunnel'], env, 600_000);
  const dagSeconds = (Date.now() - started) / 1000 - migrateSeconds;
  t.diagnostic(`airflow db migrate ${migrateSeconds.toFixed(0)} s, dags test ${dagSeconds.toFixed(0)} s`);
  assert.equal(dagRun.code, 0, dagRun.output.slice(-6000));
  assert.match(dagRun.output, /run --once done: everything committed before the start is published/, dagRun.output.slice(-6000));
  assert.match(dagRun.output, /run --once done: the target applied everything committed before the start/, dagRun.output.slice(-6000));
  assert.doesNotMatch(dagRun.output, /state=failed|Marking task as FAILED/i, dagRun.output.slice(-6000));

  const verified = await runCli(['verify'], db.env);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  const [source, target] = await Promise.all([db.sourceUrl, db.targetUrl].map((u) => query<{ n: number; moved: number }>(u, "SELECT count(*)::int AS n, count(*) FILTER (WHERE city = 'moved')::int AS moved FROM employees")));
  assert.deepEqual(target, source);
  assert.ok(source![0]!.moved > 0);
});
