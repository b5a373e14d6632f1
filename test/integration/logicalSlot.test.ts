import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventRecorder, InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { appliedCountMismatches, changesTwice, installWriteLog, topicRecords, versionGaps, writeLogRegressions } from '../helpers/oracles.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';
import { tortureDdl, Workload } from '../../testkit/workload.js';
import type { TunnelError } from '../../src/errors.js';

const slotOf = async (url: string) =>
  (await query<{ slot_name: string; confirmed: string; active_pid: number | null }>(url,
    "SELECT slot_name, (confirmed_flush_lsn - '0/0')::text AS confirmed, active_pid FROM pg_replication_slots WHERE database = current_database()"))[0];

test('capture: logical, the slot dropped under a running tunnel: the producer stops with the repair, it does not stream on from nowhere', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_HTTP_PORT: 'off' };
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, i FROM generate_series(1, 100) i");
  const tunnel = await InProcessTunnel.start(t, env);
  await tunnel.waitForEqual();
  const slot = (await slotOf(db.sourceUrl))!.slot_name;
  // an active slot cannot be dropped: end its walsender first, and again if the producer's retry took it back
  await waitFor('the slot dropped', async () => {
    await query(db.sourceUrl, 'SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL', [slot]);
    await query(db.sourceUrl, 'SELECT pg_drop_replication_slot($1)', [slot]);
    return true;
  }, 30_000, 20);
  await waitFor('the tunnel to stop on its own', async () => tunnel.ended(), 60_000, 50);
  await assert.rejects(tunnel.stop(), (err: TunnelError) => {
    assert.equal(err.code, 'PGT_SLOT_LOST');
    assert.match(err.message, new RegExp(`the replication slot ${slot} of public\\.employees cannot give its changes`));
    assert.match(err.hint ?? '', /pgtunnel install.*pgtunnel snapshot --restart.*capture: trigger/);
    return true;
  });
});

test('capture: logical, producer failover: kill -9 of the leader under load, the standby streams on from the confirmed flush LSN; nothing lost or doubled, no key goes back', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  // a delete carries its whole row (the version oracle reads it), as trigger capture sends it
  await query(db.sourceUrl, `${tortureDdl}; ALTER TABLE torture REPLICA IDENTITY FULL`);
  await query(db.targetUrl, tortureDdl);
  await installWriteLog(db.targetUrl, 'torture', 'id', 'version');
  const env = { ...db.env, PGTUNNEL_TABLES: 'torture', PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_EXACTLY_ONCE: 'true', PGTUNNEL_BATCH_SIZE: '200', PGTUNNEL_HTTP_PORT: 'off' };
  const leader = TunnelProcess.spawn(t, env, ['run', '--role', 'producer']);
  await leader.waitForLog('phase: streaming', 60_000);
  const recorder = new EventRecorder();
  onCleanup(t, () => recorder.close());
  const consumer = await InProcessTunnel.start(t, env, { role: 'consumer', recorder });
  const standby = await InProcessTunnel.start(t, env, { role: 'producer', recorder, waitForStreaming: false });
  await waitFor('the in-process producer standing by', async () => recorder.of('pgtunnel:leadership').some((r) => r.event.state === 'standby'), 60_000);

  const workload = new Workload(db.sourceUrl, { writers: 3, maxTxRows: 100, lateChance: 0.03, lateMs: 1000, rollbackChance: 0.1, savepointChance: 0.2 });
  workload.start();
  onCleanup(t, () => workload.stop().catch(() => {}));
  const confirmedAtStart = BigInt((await slotOf(db.sourceUrl))!.confirmed);
  await waitFor('the leader confirming pages under load', async () => BigInt((await slotOf(db.sourceUrl))!.confirmed) > confirmedAtStart + 200_000n, 60_000, 50);
  const mark = recorder.recorded.length;
  await leader.kill('SIGKILL');
  const confirmedAtKill = BigInt((await slotOf(db.sourceUrl))!.confirmed);
  await waitFor('the standby to take the lock', async () => recorder.of('pgtunnel:leadership', mark).some((r) => r.event.state === 'leading'), 30_000);
  await waitFor('the standby publishing', async () => recorder.of('pgtunnel:produced', mark).some((r) => r.event.table === 'public.torture'), 60_000);
  await waitFor('the standby confirming past the kill', async () => BigInt((await slotOf(db.sourceUrl))!.confirmed) > confirmedAtKill + 200_000n, 60_000, 50);
  await workload.stop();
  await consumer.waitForEqual(120_000);
  assert.deepEqual(await workload.mismatches(db.targetUrl), [], 'every key at the version that committed last in the source');
  const topic = `${db.topicPrefix}.public.torture`;
  const records = await topicRecords(topic);
  assert.deepEqual(changesTwice(records), [], 'no source change published twice (librdkafka read_committed)');
  assert.deepEqual(versionGaps(records), [], 'each source change in the topic, per key in version order, none skipped');
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, topic, records), [], 'each Kafka record applied exactly once');
  assert.deepEqual(await writeLogRegressions(db.targetUrl), [], 'the target never went back to an older version');
  await standby.stop();
  await consumer.stop();
});
