import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appliedCountMismatches, changesTwice, installWriteLog, sameRows, snapshotReadsPerKey, topicRecords, writeLogRegressions } from '../helpers/oracles.js';
import { query, tunnelDatabases, waitFor, withStackPassword } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

const verified = async (env: Record<string, string>) => ((await runCli(['verify', '--limit', '3'], env)).code === 0 ? true : undefined);

/** The failpoint killed the process itself: it died of SIGKILL that the test did not send. */
async function killedByFailpoint(p: TunnelProcess, name: string): Promise<void> {
  await p.waitForLog(`failpoint ${name}`, 30_000).catch(() => {}); // the exit below is the proof; the log only helps reading
  const signal = await waitFor(`the ${name} failpoint to kill the process`, async () => p.child.signalCode ?? undefined, 30_000);
  assert.equal(signal, 'SIGKILL', `the process died of the failpoint's SIGKILL, not otherwise:\n${p.output.slice(-3000)}`);
}

const employeesTopic = (db: { topicPrefix: string }) => `${db.topicPrefix}.public.employees`;

/** What the salaries sum to after `rounds` bumps of rows 1..rows (round i bumps emp_id % 7 = i % 7). */
function expectedBumps(rows: number, rounds: number): number {
  let total = 0;
  for (let i = 0; i < rounds; i++) for (let id = 1; id <= rows; id++) if (id % 7 === i % 7) total++;
  return total;
}

async function bumpSalaries(sourceUrl: string, rounds: number): Promise<void> {
  for (let i = 0; i < rounds; i++) await query(sourceUrl, `UPDATE employees SET salary = salary + 1 WHERE emp_id % 7 = ${i % 7}`);
}

test('killed between the target commit and the Kafka group commit: nothing is applied twice', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, 0 FROM generate_series(1, 500) i");
  await installWriteLog(db.targetUrl, 'employees', 'emp_id', 'salary');
  const crashing = await TunnelProcess.start(t, { ...db.env, PGTUNNEL_FAILPOINTS: 'apply.after-commit:3' });
  // the consumer has joined its group: on a cold broker it joins late and takes every bump in one set
  await waitFor('the snapshot in the target', async () => (await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM employees'))[0]!.n === 500, 30_000, 50);
  await bumpSalaries(db.sourceUrl, 20);
  await killedByFailpoint(crashing, 'apply.after-commit');
  await bumpSalaries(db.sourceUrl, 20);
  const restarted = await TunnelProcess.start(t, db.env);
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 60_000);
  assert.ok(await verified(db.env), 'verify agrees that the tables are equal');
  const records = await topicRecords(employeesTopic(db));
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, employeesTopic(db), records), [], 'each Kafka record applied exactly once (target counts = records in the topic)');
  assert.deepEqual(await writeLogRegressions(db.targetUrl), [], 'no key written twice in one apply, no salary going back (a record applied again)');
  // the crash window was hit: Kafka handed the restarted consumer records the target had already applied
  await restarted.waitForLog('skipped records the target already had', 10_000);
  const sums = await query<{ s: number }>(db.targetUrl, 'SELECT sum(salary)::int AS s FROM employees');
  assert.equal(sums[0]!.s, expectedBumps(500, 40), 'every committed bump in the target once');
  await restarted.stop();
});

test('killed between the Kafka ack and the source checkpoint: the batch is re-sent and the target converges', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, 0 FROM generate_series(1, 500) i");
  const crashing = await TunnelProcess.start(t, { ...db.env, PGTUNNEL_FAILPOINTS: 'producer.after-publish:2' });
  await bumpSalaries(db.sourceUrl, 10);
  await killedByFailpoint(crashing, 'producer.after-publish');
  const checkpoint = (await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM emp_cdc'))[0]!.n;
  assert.ok(checkpoint > 0, 'the acknowledged batch is still in the change table: its checkpoint was never written');
  await bumpSalaries(db.sourceUrl, 10);
  const restarted = await TunnelProcess.start(t, db.env);
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 60_000);
  assert.ok(await verified(db.env), 'verify agrees that the tables are equal');
  await waitFor('the change table emptied by the checkpoint', async () => (await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM emp_cdc'))[0]!.n === 0, 10_000, 100);
  // at-least-once into Kafka: the re-sent batch is there twice, as distinct records, each applied once
  const records = await topicRecords(employeesTopic(db));
  assert.notDeepEqual(changesTwice(records), [], 'the re-sent batch is in the topic twice (at-least-once)');
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, employeesTopic(db), records), [], 'each Kafka record applied exactly once (re-sent copies included)');
  await restarted.stop();
});

test('exactly-once: killed between the Kafka commit and the source checkpoint: the position Kafka committed is adopted, no change published twice', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_EXACTLY_ONCE: 'true' };
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, 0 FROM generate_series(1, 500) i");
  // the snapshot is the first Kafka transaction; the second is a stream batch
  const crashing = await TunnelProcess.start(t, { ...env, PGTUNNEL_FAILPOINTS: 'producer.after-kafka-commit:2' });
  await bumpSalaries(db.sourceUrl, 10);
  await killedByFailpoint(crashing, 'producer.after-kafka-commit');
  const left = (await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM emp_cdc'))[0]!.n;
  assert.ok(left > 0, 'the batch Kafka committed is still in the change table: its source checkpoint was never written');
  await bumpSalaries(db.sourceUrl, 10);
  const restarted = TunnelProcess.spawn(t, env);
  await restarted.waitForLog('adopted the position Kafka committed last', 60_000).catch((err: Error) => {
    throw new Error(`${err.message}\n--- restarted tunnel ---\n${restarted.output.slice(-5000)}`);
  });
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 60_000);
  assert.ok(await verified(env), 'verify agrees that the tables are equal');
  assert.equal((await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM emp_cdc'))[0]!.n, 0);
  // judged by librdkafka's read_committed consumer, not by pgtunnel's own committed reader
  const records = await topicRecords(employeesTopic(db));
  assert.deepEqual(changesTwice(records), [], 'no envelope published twice (read_committed)');
  const reads = snapshotReadsPerKey(records);
  assert.deepEqual([reads.size, [...reads.values()].filter((n) => n !== 1)], [500, []], 'every key read by the snapshot exactly once');
  // two rounds of 10 bumps, one change per bumped row
  const changes = records.filter((r) => r.value !== null && r.value.op !== 'r').length;
  assert.equal(changes, 2 * expectedBumps(500, 10), 'every change published once');
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, employeesTopic(db), records), [], 'each Kafka record applied exactly once');
  const sums = await query<{ s: number }>(db.targetUrl, 'SELECT sum(salary)::int AS s FROM employees');
  assert.equal(sums[0]!.s, 2 * expectedBumps(500, 10), 'every committed bump in the target once');
  await restarted.stop();
});

test('SIGTERM under load exits 0, and the restart resumes without loss', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await TunnelProcess.start(t, db.env);
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) await query(db.sourceUrl, `INSERT INTO employees (first_name) SELECT 'w${i}-' || g FROM generate_series(1, 50) g`);
  })();
  await waitFor('changes flowing', async () => (await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM employees'))[0]!.n > 500);
  // how long the exit takes is bench's to measure (npm run bench -- --operations)
  const code = await tunnel.stop();
  writing = false;
  await writer;
  assert.equal(code, 0, tunnel.output);
  const again = await TunnelProcess.start(t, db.env);
  await waitFor('convergence', () => verified(db.env), 60_000, 200);
  await again.stop();
});

test('an unreachable broker at start: --wait says what it waits for in status, and SIGTERM still stops it', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_KAFKA_BROKERS: '127.0.0.1:1' };
  const exits = await runCli(['run'], env);
  assert.equal(exits.code, 3);
  assert.match(exits.stderr, /cannot reach Kafka at 127\.0\.0\.1:1.*\n.*fix: start the broker/);
  const waiting = TunnelProcess.spawn(t, env, ['run', '--wait']);
  await waiting.waitForLog('waiting: cannot reach Kafka', 20_000);
  assert.equal(await waiting.stop(), 0);
});

test('status shows what a running tunnel waits for when a service goes away', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await TunnelProcess.start(t, db.env);
  // The target database disappears under the running consumer.
  await query(db.targetUrl.replace(/\/[^/]+$/, '/postgres'), `ALTER DATABASE ${db.topicPrefix} WITH ALLOW_CONNECTIONS false`);
  await query(db.targetUrl.replace(/\/[^/]+$/, '/postgres'), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db.topicPrefix}'`);
  await query(db.sourceUrl, "INSERT INTO employees (first_name) VALUES ('while the target is away')");
  const report = await waitFor('a waiting consumer in status', async () => {
    const status = await runCli(['status', '--json'], db.env);
    const parsed = JSON.parse(status.stdout);
    const consumer = parsed.processes.flatMap((p: { parts: Record<string, { state: string; reason?: string }> }) => Object.entries(p.parts)).find(([name]: [string]) => name === 'consumer');
    return consumer?.[1].state === 'waiting' ? { status, consumer: consumer[1] } : undefined;
  }, 30_000, 250);
  assert.equal(report.status.code, 3, 'status exits 3 while the target is unreachable');
  assert.match(report.consumer.reason, /target database/);
  await query(db.targetUrl.replace(/\/[^/]+$/, '/postgres'), `ALTER DATABASE ${db.topicPrefix} WITH ALLOW_CONNECTIONS true`);
  await waitFor('the change applied after the target came back', async () => (await query(db.targetUrl, "SELECT 1 FROM employees WHERE first_name = 'while the target is away'")).length === 1, 30_000, 200);
  const dlq = await runCli(['dlq', 'list'], db.env);
  assert.match(dlq.stdout, /^no dead letters/, 'a retryable error is retried, never dead-lettered');
  await tunnel.stop();
});

test('a capture trigger dropped or the change table edited by hand stops the tunnel with the fix', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const first = await TunnelProcess.start(t, db.env);
  await query(db.sourceUrl, 'DROP TRIGGER pgtunnel_capture_update ON employees');
  assert.equal(await waitFor('the tunnel to stop', async () => first.child.exitCode ?? undefined, 15_000), 4);
  assert.match(first.output, /capture trigger\(s\) pgtunnel_capture_update on public\.employees were dropped or disabled/);
  assert.match(first.output, /fix: restore capture with `pgtunnel uninstall && pgtunnel install`/);

  assert.equal((await runCli(['uninstall'], db.env)).code, 0);
  const second = await TunnelProcess.start(t, db.env);
  await query(db.sourceUrl, 'ALTER TABLE emp_cdc DROP COLUMN captured_at');
  await query(db.sourceUrl, "INSERT INTO employees (first_name) VALUES ('x')");
  assert.equal(await waitFor('the tunnel to stop', async () => second.child.exitCode ?? undefined, 15_000), 4);
  assert.match(second.output, /reading the change table public\.emp_cdc failed .*edited by hand\?/);
});

test('insufficient privileges are a clear error naming what to grant', { timeout: 30_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, `DO $$ BEGIN CREATE ROLE pgtunnel_weak LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  await withStackPassword(db.sourceUrl, ['pgtunnel_weak']);
  const weakUrl = db.sourceUrl.replace('postgres@', 'pgtunnel_weak@');
  const result = await runCli(['install'], { ...db.env, PGTUNNEL_SOURCE_URL: weakUrl });
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /the source role pgtunnel_weak lacks what installing capture of public\.employees .*needs/);
  assert.match(result.stderr, /fix: run `pgtunnel install` as the installer role, or .*GRANT CREATE ON DATABASE/);
});

test('verify --repair re-sends differing keys through the tunnel', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, i FROM generate_series(1, 1000) i");
  const tunnel = await TunnelProcess.start(t, db.env);
  await waitFor('the snapshot applied', () => verified(db.env), 30_000, 200);
  await query(db.targetUrl, "UPDATE employees SET salary = -1 WHERE emp_id IN (3, 300); DELETE FROM employees WHERE emp_id = 30; INSERT INTO employees (emp_id) VALUES (5000)");
  const repair = await runCli(['verify', '--repair'], db.env);
  assert.equal(repair.code, 1);
  assert.match(repair.stdout, /repair: re-sent 3 source rows and 1 deletes through the tunnel/);
  await waitFor('the repaired target', () => verified(db.env), 10_000, 100);
  await tunnel.stop();
});
