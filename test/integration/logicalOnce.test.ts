import assert from 'node:assert/strict';
import { test } from 'node:test';
import { topicRecords } from '../helpers/oracles.js';
import { query, tunnelDatabases } from '../helpers/services.js';
import { runCli } from '../helpers/tunnelProcess.js';

const confirmed = async (url: string) =>
  BigInt((await query<{ lsn: string }>(url, "SELECT (confirmed_flush_lsn - '0/0')::text AS lsn FROM pg_replication_slots WHERE database = current_database()"))[0]!.lsn);
const walNow = async (url: string) => BigInt((await query<{ lsn: string }>(url, "SELECT (pg_current_wal_insert_lsn() - '0/0')::text AS lsn"))[0]!.lsn);

test('run --once with capture: logical reads the slot up to the WAL position at its start, publishes, confirms and exits; again with new changes it sends only those', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_SNAPSHOT_CHUNK_SIZE: '400', PGTUNNEL_BATCH_SIZE: '200' };
  await query(db.sourceUrl, "INSERT INTO employees (first_name, last_name, dob, city, salary) SELECT 'f' || i, 'l' || i, DATE '1970-01-01' + i, 'c', i FROM generate_series(1, 1000) i");
  const install = await runCli(['install'], env);
  assert.equal(install.code, 0, install.stderr);
  assert.match(install.stdout, /capture logical/);

  const first = await runCli(['run', '--once', '--timeout', '90s'], env, 120_000);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.match(first.stdout, /run --once done: the target applied everything committed before the start/);
  assert.equal((await runCli(['verify'], env)).code, 0, 'the target equals the source');

  // changes made while nothing runs wait in the slot; the next scheduled run publishes exactly them
  await query(db.sourceUrl, "UPDATE employees SET city = 'moved' WHERE emp_id <= 150");
  await query(db.sourceUrl, 'DELETE FROM employees WHERE emp_id > 990');
  const horizon = await walNow(db.sourceUrl);
  assert.ok((await confirmed(db.sourceUrl)) < horizon, 'the slot holds the new changes');
  const second = await runCli(['run', '--once', '--timeout', '90s'], env, 120_000);
  assert.equal(second.code, 0, second.stdout + second.stderr);
  assert.ok((await confirmed(db.sourceUrl)) >= horizon, 'the slot confirmed the WAL position the run started at');
  assert.equal((await runCli(['verify'], env)).code, 0, 'the target equals the source');

  const records = await topicRecords(`${db.topicPrefix}.public.employees`);
  const ops = records.filter((r) => r.value).map((r) => r.value!.op);
  assert.deepEqual([ops.filter((o) => o === 'r').length, ops.filter((o) => o === 'u').length, ops.filter((o) => o === 'd').length], [1000, 150, 10], 'each row read once, each change sent once');

  const idle = await runCli(['run', '--role', 'producer', '--once', '--timeout', '60s'], env, 90_000);
  assert.equal(idle.code, 0, idle.stdout + idle.stderr);
  assert.equal((await topicRecords(`${db.topicPrefix}.public.employees`)).length, records.length, 'nothing new: nothing sent');
});
