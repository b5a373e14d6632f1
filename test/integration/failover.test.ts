import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventRecorder, InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';
import { tortureDdl, Workload } from '../../testkit/workload.js';

test('producer failover under load: SIGKILL the active producer, the standby takes over and publishes; nothing lost, per-key order kept', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, tortureDdl);
  await query(db.targetUrl, tortureDdl);
  const env = { ...db.env, PGTUNNEL_TABLES: 'torture', PGTUNNEL_BATCH_SIZE: '500', PGTUNNEL_HTTP_PORT: 'off' };
  // The killed producers are processes (kill -9); the standbys run in this process, so their takeover is
  // timed by their events. The figure is reported; the failover promise is bench's to measure.
  const spawnActive = () => TunnelProcess.spawn(t, env, ['run', '--role', 'producer']);
  const recorder = new EventRecorder();
  onCleanup(t, () => recorder.close());
  let active = spawnActive();
  await active.waitForLog('phase: streaming', 60_000);
  const consumer = await InProcessTunnel.start(t, env, { role: 'consumer', recorder });

  const workload = new Workload(db.sourceUrl, { writers: 4, maxTxRows: 200, lateChance: 0.03, lateMs: 1500, rollbackChance: 0.1, savepointChance: 0.2 });
  workload.start();
  onCleanup(t, () => workload.stop().catch(() => {}));
  const published = async () => (await query<{ n: number }>(db.sourceUrl, 'SELECT changes_published::int AS n FROM pgtunnel.state'))[0]!.n;
  const figures: string[] = [];
  for (let round = 1; round <= 2; round++) {
    const since = recorder.recorded.length;
    const standby = await InProcessTunnel.start(t, env, { role: 'producer', recorder, waitForStreaming: false });
    await waitFor('the in-process producer standing by', async () => recorder.of('pgtunnel:leadership', since).some((r) => r.event.state === 'standby'), 60_000);
    const before = await published();
    await waitFor('the active producer publishing under load', async () => (await published()) > before + 2000, 60_000, 50);
    const killedAt = performance.now();
    const mark = recorder.recorded.length;
    await active.kill('SIGKILL');
    const led = await waitFor('the standby to take the lock', async () => recorder.of('pgtunnel:leadership', mark).find((r) => r.event.state === 'leading'), 30_000);
    const page = await waitFor('the standby to publish', async () => recorder.of('pgtunnel:produced', mark).find((r) => r.event.table === 'public.torture'), 30_000);
    figures.push(`round ${round}: lock taken ${Math.round(led.at - killedAt)} ms, first page published ${Math.round(page.at - killedAt)} ms after the kill`);
    if (round === 2) break;
    // The next round kills a process again: a new one stands by, and the in-process leader hands over to it.
    active = spawnActive();
    await standby.stop();
    const handedAt = await published();
    await waitFor('the new process publishing', async () => (await published()) > handedAt + 500, 60_000, 50);
  }
  t.diagnostic(`failover: ${figures.join('; ')}`);
  const after = await published();
  await waitFor('the last leader publishing on', async () => (await published()) > after + 2000, 60_000, 50);
  await workload.stop();
  await consumer.waitForEqual(120_000);
  assert.deepEqual(await workload.mismatches(db.targetUrl), [], 'every committed version, in order');
  await consumer.stop();
});

test('producers of two tables publish side by side; one consumer applies both', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  const ddl = 'CREATE TABLE a (id int PRIMARY KEY, v int); CREATE TABLE b (id int PRIMARY KEY, v int)';
  await query(db.sourceUrl, ddl);
  await query(db.targetUrl, ddl);
  const env = { ...db.env, PGTUNNEL_HTTP_PORT: 'off' };
  const recorder = new EventRecorder();
  onCleanup(t, () => recorder.close());
  const producers = await Promise.all(['a', 'b'].map((table) => InProcessTunnel.start(t, { ...env, PGTUNNEL_TABLES: table }, { role: 'producer', recorder })));
  const consumer = await InProcessTunnel.start(t, { ...env, PGTUNNEL_TABLES: 'a,b' }, { role: 'consumer', recorder });
  for (const table of ['a', 'b']) {
    await query(db.sourceUrl, `INSERT INTO ${table} SELECT i, 1 FROM generate_series(1, 500) i`);
    await query(db.sourceUrl, `UPDATE ${table} SET v = v + 1 WHERE id % 2 = 0`);
    await query(db.sourceUrl, `DELETE FROM ${table} WHERE id % 5 = 0`);
  }
  assert.deepEqual(consumer.tableIds, ['public.a', 'public.b']);
  await consumer.waitForEqual();
  assert.deepEqual(recorder.of('pgtunnel:leadership').map((r) => r.event.state), ['leading', 'leading'], 'neither producer waits for the other');
  for (const p of [...producers, consumer]) await p.stop();
});
