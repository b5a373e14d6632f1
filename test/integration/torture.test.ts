import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { appliedCountMismatches, changesTwice, installWriteLog, sameRows, topicRecords, versionGaps, writeLogRegressions } from '../helpers/oracles.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';
import { tortureDdl, Workload } from '../../testkit/workload.js';

test('torture: concurrent writers, late and long transactions, rollbacks, key changes, truncate — exact target', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, tortureDdl);
  await query(db.targetUrl, tortureDdl);
  await installWriteLog(db.targetUrl, 'torture', 'id', 'version');
  const env = { ...db.env, PGTUNNEL_TABLES: 'torture', PGTUNNEL_BATCH_SIZE: '500' };
  const tunnel = await TunnelProcess.start(t, env);

  const workload = new Workload(db.sourceUrl);
  workload.start();
  onCleanup(t, () => workload.stop().catch(() => {}));

  // A long transaction that takes its change ids first and commits after many batches went by.
  const long = new pg.Client({ connectionString: db.sourceUrl });
  await long.connect();
  onCleanup(t, () => long.end());
  await long.query('BEGIN');
  await long.query("INSERT INTO torture VALUES (-1, 1, 'long'), (-2, 1, 'long')");
  const batchesBefore = (await query<{ n: number }>(db.sourceUrl, 'SELECT changes_published::int AS n FROM pgtunnel.state'))[0]!.n;
  await waitFor('many batches published past the long transaction', async () =>
    (await query<{ n: number }>(db.sourceUrl, 'SELECT changes_published::int AS n FROM pgtunnel.state'))[0]!.n > batchesBefore + 5000, 60_000, 100);
  await long.query('COMMIT');
  workload.expected.set(-1, { version: 1, deleted: false });
  workload.expected.set(-2, { version: 1, deleted: false });

  await workload.truncate();
  await waitFor('more work after the truncate', async () => workload.committed > 50, 30_000, 100);
  const changesBeforeStop = workload.changes;
  await waitFor('a few thousand more changes', async () => workload.changes > changesBeforeStop + 3000, 60_000, 100);
  await workload.stop();

  // Kafka first: once the change table is empty every committed change is in the topic
  await waitFor('every change published and checkpointed', async () => (await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM torture_cdc'))[0]!.n === 0, 90_000, 250);
  const topic = `${db.topicPrefix}.public.torture`;
  const records = await topicRecords(topic);
  assert.deepEqual(changesTwice(records), [], 'no crash, so no change re-sent');
  assert.deepEqual(versionGaps(records), [], 'each source change in the topic, per key in version order, none skipped');
  await sameRows(db.sourceUrl, db.targetUrl, 'torture', 90_000);
  assert.equal((await runCli(['verify', '--limit', '5'], env)).code, 0, 'verify agrees that the tables are equal');
  assert.deepEqual(await workload.mismatches(db.targetUrl), [], 'every key at the version that committed last in the source');
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, topic, records), [], 'each Kafka record applied exactly once');
  assert.deepEqual(await writeLogRegressions(db.targetUrl), [], 'the target never went back to an older version nor upserted a key twice in one apply');
  t.diagnostic(`torture: ${workload.committed} transactions committed (${workload.changes} row changes), ${workload.rolledBack} rolled back`);
  await tunnel.stop();
});
