import assert from 'node:assert/strict';
import { test } from 'node:test';
import { topicRecords } from '../helpers/oracles.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';
import { askForSnapshot } from '../../src/capture/signals.js';

type SignalRow = { state: string; rows_done: number; rows_total: number | null; message: string | null; last_key: string | null };

const signal = async (sourceUrl: string, id: string) =>
  (await query<SignalRow>(sourceUrl, 'SELECT state, rows_done::int, rows_total::int, message, last_key FROM pgtunnel.signals WHERE signal_id = $1', [id]))[0]!;

const seed = (sourceUrl: string, n: number) =>
  query(sourceUrl, "INSERT INTO employees (emp_id, first_name, city, salary) SELECT i, 'n' || i, 'c' || (i % 7), i FROM generate_series(1, $1::int) i", [n]);

/** The signal id `pgtunnel snapshot --table` printed (JSON log line). */
function signalIdOf(stdout: string): string {
  const line = stdout.split('\n').find((l) => l.includes('"signalId"'));
  assert.ok(line, `no signal id in: ${stdout}`);
  return String((JSON.parse(line) as { signalId: string }).signalId);
}

/** Updates, inserts and deletes on the source until stopped: what streams while a snapshot runs. */
function writer(sourceUrl: string, from: number): { stop: () => Promise<number> } {
  let running = true;
  let n = 0;
  const loop = (async () => {
    while (running) {
      n++;
      const id = 1 + ((n * 37) % 1500);
      await query(sourceUrl, 'UPDATE employees SET salary = salary + 1, city = $2 WHERE emp_id = $1', [id, `w${n}`]);
      await query(sourceUrl, "INSERT INTO employees (emp_id, first_name, salary) VALUES ($1, 'new', $1)", [from + n]);
      if (n % 3 === 0) await query(sourceUrl, 'DELETE FROM employees WHERE emp_id = $1', [1 + ((n * 53) % 1500)]);
    }
  })();
  return { stop: async () => { running = false; await loop; return n; } };
}

test('re-snapshot of one table under a concurrent writer: the damaged target is repaired, equal to the source after', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await InProcessTunnel.start(t, { ...db.env, PGTUNNEL_SNAPSHOT_CHUNK_SIZE: '20' });
  // streamed in large pages; the incremental snapshot reads them back in chunks of 20
  await seed(db.sourceUrl, 1500);
  await tunnel.waitForEqual();
  // the target is damaged by hand: rows lost and rows changed
  await query(db.targetUrl, 'DELETE FROM employees WHERE emp_id % 5 = 0');
  await query(db.targetUrl, "UPDATE employees SET city = 'wrong' WHERE emp_id % 5 = 1");
  const writing = writer(db.sourceUrl, 100_000);
  // asked as the CLI and the HTTP API ask (both are exercised below)
  const { signalId: id } = await askForSnapshot(db.sourceUrl, tunnel.config.tables, 'employees', null);
  await waitFor('the incremental snapshot done', async () => (await signal(db.sourceUrl, id)).state === 'done', 90_000, 50);
  const writes = await writing.stop();
  await tunnel.waitForEqual();
  const done = await signal(db.sourceUrl, id);
  assert.ok(done.rows_done >= 1000 && done.rows_total !== null, `rows read ${done.rows_done} of ${done.rows_total}`);
  t.diagnostic(`${writes} write rounds during the re-snapshot of ${done.rows_done} rows`);
  // progress reached the telemetry the metrics and dashboard read
  const events = tunnel.events.of('pgtunnel:backfill').map((r) => r.event);
  assert.equal(events.at(-1)?.state, 'done');
  assert.equal(events.at(-1)?.signalId, id);
});

test('--where backfill re-reads only its range; a bad predicate is refused; cancel stops a running snapshot and streaming goes on', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await InProcessTunnel.start(t, { ...db.env, PGTUNNEL_SNAPSHOT_CHUNK_SIZE: '20' });
  await seed(db.sourceUrl, 4000);
  await tunnel.waitForEqual();
  await query(db.targetUrl, "UPDATE employees SET city = 'wrong' WHERE emp_id IN (10, 20, 3000)");
  for (const [where, why] of [['emp_id < 10; DELETE FROM employees', /";"/], ['first_name', /not valid/]] as const) {
    const refused = await runCli(['snapshot', '--table', 'employees', '--where', where], db.env);
    assert.equal(refused.code, 2, `${where}: ${refused.stdout}${refused.stderr}`);
    assert.match(refused.stdout + refused.stderr, why);
  }
  assert.equal((await query(db.sourceUrl, 'SELECT 1 FROM pgtunnel.signals')).length, 0, 'a refused predicate is never stored');
  const asked = await runCli(['snapshot', '--table', 'public.employees', '--where', 'emp_id BETWEEN 5 AND 50', '--wait'], db.env, 90_000);
  assert.equal(asked.code, 0, asked.stderr + asked.stdout);
  const ranged = await signal(db.sourceUrl, signalIdOf(asked.stdout));
  assert.deepEqual([ranged.state, ranged.rows_done, ranged.rows_total], ['done', 46, 46]);
  await waitFor('the range repaired', async () => (await query(db.targetUrl, "SELECT 1 FROM employees WHERE city = 'wrong' AND emp_id IN (10, 20)")).length === 0, 30_000, 50);
  assert.equal((await query(db.targetUrl, "SELECT 1 FROM employees WHERE emp_id = 3000 AND city = 'wrong'")).length, 1, 'a row outside the range is not read');

  // cancel: a whole-table snapshot in chunks of 20, cancelled while it runs
  const whole = signalIdOf((await runCli(['snapshot', '--table', 'employees'], db.env)).stdout);
  await waitFor('the snapshot running', async () => (await signal(db.sourceUrl, whole)).rows_done > 0, 60_000, 20);
  const cancelled = await runCli(['snapshot', '--table', 'employees', '--cancel'], db.env);
  assert.equal(cancelled.code, 0, cancelled.stderr);
  assert.match(cancelled.stdout, /1 incremental snapshot\(s\) of public.employees cancelled/);
  await tunnel.waitForEvents('pgtunnel:backfill', 'the producer seeing the cancel', (events) => events.some((e) => e.signalId === whole && e.state === 'cancelled'));
  const stopped = await signal(db.sourceUrl, whole);
  assert.equal(stopped.state, 'cancelled');
  assert.ok(stopped.rows_done < 4000, `stopped at ${stopped.rows_done} rows`);
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name) VALUES (99999, 'after cancel')");
  await waitFor('streaming after the cancel', async () => (await query(db.targetUrl, 'SELECT 1 FROM employees WHERE emp_id = 99999')).length === 1, 60_000, 50);
  assert.equal((await signal(db.sourceUrl, whole)).rows_done, stopped.rows_done, 'no chunk after the cancel was seen');
});

test('HTTP API behind the token, and kill -9 mid-backfill: the restart resumes at the next chunk', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const token = 'signals-test-token-0123456789abcdef';
  const env = { ...db.env, PGTUNNEL_SNAPSHOT_CHUNK_SIZE: '25', PGTUNNEL_HTTP_TOKEN: token };
  const first = await TunnelProcess.spawnServed(t, env);
  await first.waitForLog('phase: streaming', 90_000);
  await seed(db.sourceUrl, 3000);
  const post = (path: string, body: unknown, auth = true) => fetch(new URL(path, first.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  assert.equal((await post('api/snapshot', { table: 'employees' }, false)).status, 401);
  const bad = await post('api/snapshot', { table: 'employees', where: 'emp_id <' });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { error: string }).error, /not valid/);
  assert.equal((await post('api/snapshot', { table: 'employees', where: 'nope > 1' })).status, 400);
  assert.equal((await post('api/snapshot', { table: 'nope' })).status, 400);
  const answer = await post('api/snapshot', { table: 'employees', where: 'emp_id > 1000' });
  assert.equal(answer.status, 202);
  const { signalId } = (await answer.json()) as { signalId: string };

  const atKill = await waitFor('the backfill part-way', async () => {
    const s = await signal(db.sourceUrl, signalId);
    return s.rows_done >= 300 ? s : undefined;
  }, 90_000, 10);
  await first.kill('SIGKILL');
  const stored = await signal(db.sourceUrl, signalId);
  assert.ok(stored.state === 'running' && stored.rows_done < 2000, `killed before the end: ${JSON.stringify(stored)}`);
  const second = TunnelProcess.spawn(t, env);
  await second.waitForLog('incremental snapshot resumed', 90_000);
  await waitFor('the backfill done', async () => (await signal(db.sourceUrl, signalId)).state === 'done', 120_000, 50);
  const done = await signal(db.sourceUrl, signalId);
  assert.equal(done.rows_done, 2000, 'the resumed snapshot counts each row once');
  // resumed, not restarted: each key of the range once, but the chunk in flight at the kill, which may
  // be published again, and never from the start again
  const reads = (await topicRecords(`${db.topicPrefix}.public.employees`)).filter((r) => r.value?.op === 'r' && Number(r.value.after!.emp_id) > 1000);
  assert.ok(reads.length >= 2000 && reads.length <= 2000 + 25, `${reads.length} snapshot records of the range (killed at ${atKill.rows_done} rows)`);
  // marked as Debezium marks incremental snapshot reads (the initial snapshot, of an empty table, read none)
  const markers = new Set(reads.map((r) => (r.value!.source as { snapshot?: unknown }).snapshot));
  assert.deepEqual([...markers], ['incremental']);
  await waitFor('the target applied it', async () => (await runCli(['verify', '--limit', '5'], env)).code === 0, 60_000, 500);
});

test('heartbeats: an idle table gets a record on <prefix>.heartbeat each interval, read by a test consumer', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await InProcessTunnel.start(t, { ...db.env, PGTUNNEL_HEARTBEAT_INTERVAL_MS: '1000' });
  await tunnel.waitForStreaming();
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name) VALUES (1, 'one')");
  await tunnel.waitForEqual();
  const committedAt = Date.now();
  type Beat = { ts_ms: number; table: string; topic: string };
  const beats = await waitFor('three heartbeats after the change', async () => {
    const records = await topicRecords(`${db.topicPrefix}.heartbeat`, 30_000);
    assert.ok(records.every((r) => r.key === '{"table":"public.employees"}'), 'keyed by the table');
    const mine = records.map((r) => r.value as unknown as Beat).filter((b) => b.ts_ms > committedAt);
    return mine.length >= 3 ? mine : undefined;
  }, 60_000, 500);
  for (const b of beats) assert.deepEqual([b.table, b.topic], ['public.employees', `${db.topicPrefix}.public.employees`]);
  const gaps = beats.slice(1).map((b, i) => b.ts_ms - beats[i]!.ts_ms);
  assert.ok(gaps.every((g) => g >= 1000), `one per interval at most: ${gaps.join(', ')} ms apart`);
});
