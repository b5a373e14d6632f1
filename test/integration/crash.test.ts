import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appliedCountMismatches, sameRows, snapshotReadsPerKey, topicRecords } from '../helpers/oracles.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';
import { killMidStream } from '../helpers/crashWorkload.js';

async function converged(env: Record<string, string>): Promise<true | undefined> {
  const result = await runCli(['verify', '--limit', '5'], env);
  if (result.code === 1) return undefined;
  assert.equal(result.code, 0, result.stderr);
  return true;
}

async function state(sourceUrl: string) {
  return (await query<{ phase: string; snapshot_rows_done: number }>(sourceUrl, 'SELECT phase, snapshot_rows_done::int FROM pgtunnel.state'))[0]!;
}

test('kill -9 while streaming, 1,000 changes while down, restart: the target converges, no re-snapshot', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, i FROM generate_series(1, 2000) i");
  const first = await TunnelProcess.start(t, db.env);
  await waitFor('the snapshot applied', () => converged(db.env), 60_000, 200);

  // A steady stream of changes with a SIGKILL in the middle of it, then 1,000 changes while the tunnel is down.
  await killMidStream(db.sourceUrl, db.targetUrl, first);
  const before = await state(db.sourceUrl);
  assert.equal(before.phase, 'streaming');

  const second = await TunnelProcess.start(t, db.env);
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 60_000);
  assert.ok(await converged(db.env), 'verify agrees that the tables are equal');
  assert.doesNotMatch(second.output, /snapshot progress|snapshot published/, 'a finished snapshot is not run again');
  const topic = `${db.topicPrefix}.public.employees`;
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, topic, await topicRecords(topic)), [], 'each Kafka record applied exactly once');
  assert.equal((await state(db.sourceUrl)).snapshot_rows_done, before.snapshot_rows_done);
  await second.stop();
});

test('kill -9 during the snapshot: the restart resumes from the last chunk and loses no streamed change', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, i FROM generate_series(1, 60000) i");
  const env = { ...db.env, PGTUNNEL_SNAPSHOT_CHUNK_SIZE: '500', PGTUNNEL_BATCH_SIZE: '200' };
  const first = await TunnelProcess.start(t, env, false);
  await waitFor('a few snapshot chunks', async () => (await state(db.sourceUrl)).snapshot_rows_done >= 5000, 60_000);
  // Changes during the snapshot, on rows already read and not yet read.
  await query(db.sourceUrl, "UPDATE employees SET city = 'during' WHERE emp_id % 1000 = 0");
  await query(db.sourceUrl, 'DELETE FROM employees WHERE emp_id % 1000 = 1');
  await first.kill('SIGKILL');
  const doneAtKill = (await state(db.sourceUrl)).snapshot_rows_done;
  assert.ok(doneAtKill < 60000, 'killed before the snapshot finished');

  const second = await TunnelProcess.start(t, env);
  await sameRows(db.sourceUrl, db.targetUrl, 'employees', 90_000);
  assert.ok(await converged(db.env), 'verify agrees that the tables are equal');
  assert.equal((await state(db.sourceUrl)).phase, 'streaming');
  // Resumed, not restarted, judged by what Kafka holds: every surviving key read by the snapshot, and only
  // the chunks published after the last checkpoint read twice (a restart from zero reads ≥ 5,000 keys twice).
  const reads = snapshotReadsPerKey(await topicRecords(`${db.topicPrefix}.public.employees`));
  const surviving = await query<{ k: string }>(db.sourceUrl, `SELECT json_build_object('emp_id', emp_id)::text AS k FROM employees`);
  assert.deepEqual(surviving.filter((r) => !reads.has(r.k.replace(/\s/g, ''))).map((r) => r.k), [], 'every surviving key has a snapshot read in the topic');
  const twice = [...reads].filter(([, n]) => n > 1);
  t.diagnostic(`snapshot: ${reads.size} keys read, ${twice.length} twice; checkpoint at the kill ${doneAtKill} rows`);
  assert.ok(twice.length <= 2 * 500, `only the chunks after the last checkpoint read again, not the snapshot from zero: ${twice.length} keys read twice`);
  assert.ok(twice.every(([, n]) => n === 2), 'no key read more than twice');
  await second.stop();
});
