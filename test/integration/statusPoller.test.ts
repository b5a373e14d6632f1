import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/instruments/log.js';
import { StatusPoller } from '../../src/report/statusPoller.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { installInProcess } from '../helpers/inProcessTunnel.js';

async function statusBackends(url: string): Promise<number[]> {
  const rows = await query<{ pid: number }>(url, "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgtunnel-status' AND datname = current_database()");
  return rows.map((r) => r.pid);
}

test('the status poller polls only while watched, on kept connections, one poll at a time', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await installInProcess(db.env);
  const config = loadConfig({ env: db.env });
  const poller = new StatusPoller(config, createLogger('test'), () => {}, 50, 1500);
  onCleanup(t, () => poller.stop());
  assert.equal(poller.polls, 0);
  await poller.watch();
  assert.ok(poller.report, 'the first watch waits for a report');
  // Someone keeps watching while we wait (a request now and then, as a dashboard makes).
  const watched = (check: () => Promise<boolean> | boolean) => async () => {
    await poller.watch();
    return check();
  };
  await waitFor('five polls', watched(() => poller.polls >= 5), 10_000);
  const first = await statusBackends(db.sourceUrl);
  await waitFor('five more polls', watched(() => poller.polls >= 10), 10_000);
  assert.deepEqual(await statusBackends(db.sourceUrl), first, 'the same source connection serves every poll');
  assert.equal(first.length, 1);

  // A poll blocked behind a lock is not overlapped by the next one.
  const locker = new pg.Client({ connectionString: db.sourceUrl });
  await locker.connect();
  onCleanup(t, () => locker.end());
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE emp_cdc IN ACCESS EXCLUSIVE MODE');
  await waitFor('a poll waiting for the lock', watched(async () => {
    const rows = await query(db.sourceUrl, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgtunnel-status' AND wait_event_type = 'Lock'");
    return rows.length === 1;
  }), 10_000);
  const blockedAt = poller.polls;
  for (let i = 0; i < 10; i++) {
    await poller.watch();
    await new Promise((r) => setImmediate(r));
  }
  assert.equal((await statusBackends(db.sourceUrl)).length, 1, 'no second connection while a poll waits');
  assert.equal(poller.polls, blockedAt);
  assert.equal(poller.pollsStarted, blockedAt + 1, 'one poll under way, none started beside it');
  await locker.query('COMMIT');
  await waitFor('polls going on after the lock', watched(() => poller.polls > blockedAt + 2), 10_000);

  // Nobody watches: polling stops and the connections close.
  await waitFor('the status connections closed when nobody watches', async () => (await statusBackends(db.sourceUrl)).length === 0 && (await statusBackends(db.targetUrl)).length === 0, 10_000, 100);
  const idle = poller.polls;
  // Only watch() or a scheduled timer starts a poll: with neither, none can start while nobody watches.
  assert.ok(poller.idle, 'no poll under way or scheduled while nobody watches');
  await poller.watch();
  await waitFor('polling again once watched', async () => poller.polls > idle, 10_000);
});
