import assert from 'node:assert/strict';
import { test } from 'node:test';
import { installWriteLog, sameRows, topicRecords, versionGaps } from '../helpers/oracles.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';
import { tortureDdl, Workload } from '../../testkit/workload.js';

/**
 * At-least-once logical capture sends the next page while the previous one's ack is out. The failpoint kills
 * the tunnel right after a page's slot acknowledgement while a later page is sent and not yet acknowledged
 * (it is passed only then: the kill itself shows the pages overlapped). The restart resumes from the slot:
 * every source change reaches the topic, per key in version order, and the target converges.
 */
test('capture: logical, two pages in flight: kill -9 between their acks under load; no change lost, per-key order holds, the target converges', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  // a delete carries its whole row (the version oracle reads it)
  await query(db.sourceUrl, `${tortureDdl}; ALTER TABLE torture REPLICA IDENTITY FULL`);
  await query(db.targetUrl, tortureDdl);
  await installWriteLog(db.targetUrl, 'torture', 'id', 'version');
  const env = { ...db.env, PGTUNNEL_TABLES: 'torture', PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_BATCH_SIZE: '50', PGTUNNEL_HTTP_PORT: 'off' };
  const crashing = await TunnelProcess.start(t, { ...env, PGTUNNEL_FAILPOINTS: 'producer.between-acks:30' });

  const workload = new Workload(db.sourceUrl, { writers: 3, maxTxRows: 40, lateChance: 0.03, lateMs: 500, rollbackChance: 0.1, savepointChance: 0.2 });
  workload.start();
  onCleanup(t, () => workload.stop().catch(() => {}));
  const signal = await waitFor('the failpoint between two acks to kill the tunnel', async () => crashing.child.signalCode ?? undefined, 90_000, 50);
  // only the failpoint sends SIGKILL here; its stderr line may die unflushed with a worker thread
  assert.equal(signal, 'SIGKILL', crashing.output.slice(-3000));

  const restarted = await TunnelProcess.start(t, env);
  // the restarted tunnel streams the workload on for a while before it stops
  const committed = workload.committed;
  await waitFor('the workload committing on after the restart', async () => (workload.committed > committed + 100 ? true : undefined), 60_000, 50);
  await workload.stop();
  await sameRows(db.sourceUrl, db.targetUrl, 'torture', 120_000);
  assert.deepEqual(await workload.mismatches(db.targetUrl), [], 'every key at the version that committed last in the source');
  const records = await topicRecords(`${db.topicPrefix}.public.torture`);
  assert.deepEqual(versionGaps(records), [], 'each source change in the topic, per key in version order (first copies), none skipped');
  await restarted.stop();
});
