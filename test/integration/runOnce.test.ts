import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { lockNames, producerApplicationName } from '../../src/names.js';
import { endOffsets } from '../../src/transport/kafka.js';
import { onCleanup, query, services, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

const count = async (url: string) => (await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM employees'))[0]!.n;
const topicEnd = async (topic: string) => [...(await endOffsets({ kafkaBrokers: [services().brokers] }, [topic])).get(topic)!].reduce((a, b) => a + b, 0n);

test('run --once publishes the snapshot and the pending changes, waits until the target applied them, and exits 0; again with nothing new it exits 0 at once', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, `INSERT INTO employees (first_name, last_name, dob, city, salary)
    SELECT 'f' || i, 'l' || i, DATE '1970-01-01' + i, 'c' || i % 7, i FROM generate_series(1, 5000) i`);
  const install = await runCli(['install'], db.env);
  assert.equal(install.code, 0, install.stderr);
  // changes captured before the run: they wait in the change table
  await query(db.sourceUrl, 'UPDATE employees SET salary = salary + 1 WHERE emp_id % 3 = 0');
  await query(db.sourceUrl, 'DELETE FROM employees WHERE emp_id % 10 = 1');
  await query(db.sourceUrl, "INSERT INTO employees (first_name, last_name, dob, city, salary) SELECT 'n' || i, 'm', DATE '2000-01-01', 'x', i FROM generate_series(1, 300) i");
  assert.ok((await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM emp_cdc'))[0]!.n > 0, 'changes are pending in the change table');

  const env = { ...db.env, PGTUNNEL_SNAPSHOT_CHUNK_SIZE: '1000', PGTUNNEL_BATCH_SIZE: '500' };
  const first = await runCli(['run', '--once', '--timeout', '150s'], env, 180_000);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.match(first.stdout, /run --once done: the target applied everything committed before the start/);
  assert.equal(await count(db.targetUrl), await count(db.sourceUrl));
  const verified = await runCli(['verify'], db.env);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);

  // how long it takes is bench's to measure (npm run bench -- --operations)
  const again = await runCli(['run', '--once', '--timeout', '60s'], env, 90_000);
  assert.equal(again.code, 0, again.stdout + again.stderr);
  assert.doesNotMatch(again.stdout, /phase: snapshot|snapshot progress/, 'a done snapshot is not read again');
});

test('run --role producer --once only publishes; run --role consumer --once applies what was published before it started; a dead letter is reported, not a failure', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, `INSERT INTO employees (first_name, last_name, dob, city, salary)
    SELECT 'f' || i, 'l' || i, DATE '1970-01-01' + i, 'c', i FROM generate_series(1, 1000) i`);
  const topic = `${db.topicPrefix}.public.employees`;
  const first = await runCli(['run', '--role', 'producer', '--once', '--timeout', '90s'], db.env, 120_000);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.match(first.stdout, /run --once done: everything committed before the start is published/);
  assert.equal(await topicEnd(topic), 1000n, 'the snapshot is in Kafka');
  assert.equal(await count(db.targetUrl), 0, 'a producer alone applies nothing');

  await query(db.sourceUrl, "UPDATE employees SET city = 'moved' WHERE emp_id <= 100");
  // a key the target refuses: a dead letter, reported by the consumer run
  await query(db.targetUrl, 'ALTER TABLE employees ADD CONSTRAINT city_not_bad CHECK (city <> $$bad$$)');
  await query(db.sourceUrl, "UPDATE employees SET city = 'bad' WHERE emp_id = 500");
  const second = await runCli(['run', '--role', 'producer', '--once', '--timeout', '90s'], db.env, 120_000);
  assert.equal(second.code, 0, second.stdout + second.stderr);
  assert.equal(await topicEnd(topic), 1101n, 'the 101 changes are in Kafka');

  const applied = await runCli(['run', '--role', 'consumer', '--once', '--timeout', '90s'], db.env, 120_000);
  assert.equal(applied.code, 0, applied.stdout + applied.stderr);
  assert.match(applied.stdout, /1 changes became dead letters/);
  assert.equal((await query<{ n: number }>(db.targetUrl, "SELECT count(*)::int AS n FROM employees WHERE city = 'moved'"))[0]!.n, 100);
  assert.equal(await count(db.targetUrl), 1000);
});

test('run --once fails with the reason: at once when the target is unreachable, and at its --timeout with --wait, naming what it waited for', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_TARGET_URL: 'postgres://postgres@127.0.0.1:1/nowhere' };
  const direct = await runCli(['run', '--once'], env, 60_000);
  assert.equal(direct.code, 3, direct.stdout + direct.stderr);
  assert.match(direct.stderr, /cannot connect to the target database/);

  // ended by its own timeout, not runCli's 60 s (the time it takes is bench's to measure)
  const waited = await runCli(['run', '--once', '--wait', '--timeout', '5s'], env, 60_000);
  assert.equal(waited.code, 3, waited.stdout + waited.stderr);
  assert.match(waited.stderr, /run --once timed out after 5 s waiting for the services to answer \(cannot connect to the target database/);
});

// The deadline of the test above is met as soon as one attempt failed, however slow the start. A part's state is
// not: a 6 s --timeout passed on a loaded machine before the producer's thread had tried the lock. So the stop
// comes once the condition holds (the producer stands by), by the signal a scheduler sends at its own timeout.
test('run --once stuck behind a part names it when stopped: a producer standing by for another that holds the table', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, last_name, dob, city, salary) VALUES ('a', 'b', '2000-01-01', 'c', 1)");
  assert.equal((await runCli(['install'], db.env)).code, 0);
  // another producer of this table (named as pgtunnel's producers are, so readiness takes it for a live
  // peer): it holds the table's producer lock and publishes nothing
  const holder = new pg.Client({ connectionString: db.sourceUrl, application_name: producerApplicationName('public.employees') });
  holder.on('error', () => {});
  await holder.connect();
  onCleanup(t, () => holder.end());
  await holder.query('SELECT pg_advisory_lock(hashtext($1), hashtext($2))', [lockNames.producer, 'public.employees']);
  const spawnedAt = Date.now();
  const stuck = TunnelProcess.spawn(t, db.env, ['run', '--role', 'producer', '--once', '--timeout', '100s']);
  // its health file (what `pgtunnel status` reads) says the producer stands by
  const healthFile = path.join(db.home, 'run', `tunnel-${stuck.child.pid}.json`);
  await waitFor('the run --once producer standing by', async () => /"producer public\.employees":\{"state":"standby"/.test(await readFile(healthFile, 'utf8').catch(() => '')), 60_000, 100, [stuck]);
  t.diagnostic(`the producer stood by ${Date.now() - spawnedAt} ms after the process started`);
  assert.equal(await stuck.stop(), 4, stuck.output);
  assert.match(stuck.output, /run --once stopped by a signal before it was done; it was waiting for (the start horizon to be read|the snapshot of public\.employees to be published \(0 of \? rows\)); producer public\.employees is standby: another instance holds the producer lock/);
});
