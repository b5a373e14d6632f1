import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';

// Issue 21 item 6: a stream page's checkpoint is queued after its ack and never holds up the next page. A
// session holding the state row's lock stops every checkpoint from committing; the batch's later pages
// must still be read and published (the target gets all of them), while the stored position stays where
// it was; once the lock goes, the checkpoints commit and the published change rows are cleaned up.

const stateOf = async (url: string) =>
  (await query<{ prev: string | null; cur: string | null; last: number }>(url, "SELECT prev_snapshot::text AS prev, cur_snapshot::text AS cur, last_change_id::int AS last FROM pgtunnel.state WHERE table_id = 'public.employees'"))[0]!;

test('the checkpoint is off the read path: with checkpoints blocked, the batch\'s next page is still read and published', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await InProcessTunnel.start(t, { ...db.env, PGTUNNEL_BATCH_SIZE: '10' });
  const stored = await stateOf(db.sourceUrl);

  const blocker = new pg.Client({ connectionString: db.sourceUrl });
  blocker.on('error', () => {});
  await blocker.connect();
  onCleanup(t, () => blocker.end());
  await blocker.query('BEGIN');
  await blocker.query("SELECT 1 FROM pgtunnel.state WHERE table_id = 'public.employees' FOR UPDATE");

  // one transaction of 30 changes: a page of 10, then (the page size doubling) one of 20
  await query(db.sourceUrl, "INSERT INTO employees (first_name) SELECT 'p' || i FROM generate_series(1, 30) i");
  await waitFor('both pages in the target while the first page\'s checkpoint waits for the lock', async () =>
    (await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM employees'))[0]!.n === 30, 30_000, 50);
  assert.deepEqual(await stateOf(db.sourceUrl), stored, 'no checkpoint committed while the lock is held');
  const waiting = await query<{ n: number }>(db.sourceUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%pgtunnel.state%'");
  assert.equal(waiting[0]!.n, 1, 'exactly one checkpoint in flight, waiting for the lock');

  await blocker.query('ROLLBACK');
  await waitFor('the batch checkpointed and its change rows cleaned up', async () => {
    const state = await stateOf(db.sourceUrl);
    const left = (await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM emp_cdc'))[0]!.n;
    return state.prev !== stored.prev && state.cur === null && left === 0;
  }, 30_000, 50);
  assert.deepEqual(await tunnel.differences(), []);
  await tunnel.stop();
});

// Issue 21 item 2: a snapshot chunk is read (on the producer's reads connection) while the previous one is
// acknowledged and checkpointed. With the state row locked, the chunk whose checkpoint waits and exactly one
// chunk after it reach the target, and no more (one chunk read ahead; its commit waits for the checkpoint).
test('the snapshot reads and publishes the next chunk while the previous chunk\'s checkpoint waits, and only one', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const rows = 6_000;
  const chunk = 100;
  await query(db.sourceUrl, `INSERT INTO employees (first_name) SELECT 'p' || i FROM generate_series(1, ${rows}) i`);
  const tunnel = await InProcessTunnel.start(t, { ...db.env, PGTUNNEL_SNAPSHOT_CHUNK_SIZE: String(chunk) }, { waitForStreaming: false });
  const done = async () => (await query<{ n: number }>(db.sourceUrl, "SELECT snapshot_rows_done::int AS n FROM pgtunnel.state WHERE table_id = 'public.employees'"))[0]?.n ?? 0;
  await waitFor('a first snapshot chunk checkpointed', async () => (await done()) >= chunk, 30_000, 20);

  const blocker = new pg.Client({ connectionString: db.sourceUrl });
  blocker.on('error', () => {});
  await blocker.connect();
  onCleanup(t, () => blocker.end());
  await blocker.query('BEGIN');
  const locked = await blocker.query<{ n: number; phase: string }>("SELECT snapshot_rows_done::int AS n, phase FROM pgtunnel.state WHERE table_id = 'public.employees' FOR UPDATE");
  const stored = locked.rows[0]!.n;
  assert.ok(locked.rows[0]!.phase === 'snapshot' && stored + 2 * chunk <= rows, `the snapshot still has two chunks to go when the lock is taken (${stored} of ${rows} done)`);

  const inTarget = async () => (await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM employees'))[0]!.n;
  await waitFor('the next chunk in the target while the previous chunk\'s checkpoint waits', async () => (await inTarget()) >= stored + 2 * chunk, 30_000, 50);
  const waiting = await query<{ n: number }>(db.sourceUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%pgtunnel.state%'");
  assert.equal(waiting[0]!.n, 1, 'exactly one checkpoint in flight, waiting for the lock');
  assert.equal(await inTarget(), stored + 2 * chunk, 'no chunk published beyond the one read ahead');
  assert.equal(await done(), stored, 'no checkpoint committed while the lock is held');

  await blocker.query('ROLLBACK');
  await waitFor('the snapshot finished', async () => (await inTarget()) === rows, 60_000, 100);
  assert.deepEqual(await tunnel.differences(), []);
  await tunnel.stop();
});
