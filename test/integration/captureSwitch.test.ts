import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sourceSlotName } from '../../src/names.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { appliedCountMismatches, changesTwice, installWriteLog, topicRecords, versionGaps, writeLogRegressions } from '../helpers/oracles.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { tortureDdl, Workload } from '../../testkit/workload.js';

/** Trigger capture's `source.lsn` is a change id; logical capture's a WAL position, far above any change id here. */
const byLogical = (lsn: unknown) => BigInt(String(lsn)) > BigInt(2 ** 24);

test('switching a running table from trigger to logical capture and back: no re-snapshot, the writers never stop, each transaction published by exactly one capture, no key goes back', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  // a delete carries its whole row in logical capture too (the version oracle reads it)
  await query(db.sourceUrl, `${tortureDdl}; ALTER TABLE torture REPLICA IDENTITY FULL`);
  await query(db.targetUrl, tortureDdl);
  await installWriteLog(db.targetUrl, 'torture', 'id', 'version');
  // exactly-once, so a change sent twice within one capture shows too (at-least-once takes the same switch path)
  const env = { ...db.env, PGTUNNEL_TABLES: 'torture', PGTUNNEL_BATCH_SIZE: '200', PGTUNNEL_HTTP_PORT: 'off', PGTUNNEL_EXACTLY_ONCE: 'true' };
  const workload = new Workload(db.sourceUrl, { writers: 3, maxTxRows: 50, lateChance: 0.05, lateMs: 1500, rollbackChance: 0.1, savepointChance: 0.2 });
  onCleanup(t, () => workload.stop().catch(() => {}));

  const trigger = await InProcessTunnel.start(t, env);
  workload.start();
  const published = async () => (await query<{ n: number }>(db.sourceUrl, 'SELECT changes_published::int AS n FROM pgtunnel.state'))[0]!.n;
  await waitFor('trigger capture publishing under load', async () => (await published()) > 1500, 60_000, 50);
  // The stop falls between batches (the switch onto the shared slot waits for the end of a batch anyway):
  // the writers are held for the stop alone, so it falls between batches; they run through the switch itself.
  const betweenBatches = async () => (await query<{ idle: boolean }>(db.sourceUrl, 'SELECT cur_snapshot IS NULL AS idle FROM pgtunnel.state'))[0]!.idle;
  // everything published and cleaned up: with no writer, no batch can start before the stop
  const caughtUp = async () => (await betweenBatches()) && (await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM torture_cdc'))[0]!.n === 0;
  await workload.whileHeld(async () => {
    await waitFor('trigger capture caught up, between batches', caughtUp, 60_000, 20);
    await trigger.stop();
  });
  assert.ok(await betweenBatches(), 'the trigger tunnel stopped between batches');

  // the writers go on while no tunnel runs and while the switch drains the last trigger batch
  const logical = await InProcessTunnel.start(t, { ...env, PGTUNNEL_CAPTURE: 'logical' });
  await waitFor('the hand-over to logical capture', async () => logical.logLines.some((l) => l.includes('switched to capture: logical')), 60_000, 50);
  // straight onto the source's shared slot (no slot of the table's own)
  const shared = sourceSlotName(new URL(db.sourceUrl).pathname.slice(1), db.topicPrefix);
  const slot = async () => BigInt((await query<{ lsn: string }>(db.sourceUrl, "SELECT (confirmed_flush_lsn - '0/0')::text AS lsn FROM pg_replication_slots WHERE slot_name = $1", [shared]))[0]!.lsn);
  const handedAt = await slot();
  await waitFor('logical capture confirming under load', async () => (await slot()) > handedAt + 200_000n, 60_000, 50);
  assert.deepEqual(await query(db.sourceUrl, "SELECT tgname FROM pg_trigger WHERE tgrelid = 'torture'::regclass AND NOT tgisinternal"), [], 'the triggers are gone');
  assert.deepEqual(await query(db.sourceUrl, "SELECT relname FROM pg_class WHERE relname = 'torture_cdc'"), [], 'the change table is gone');
  await logical.stop();

  // and back: the stream publishes up to the boundary transaction, the triggers have every later write
  const back = await InProcessTunnel.start(t, env);
  await waitFor('the hand-over back to trigger capture', async () => back.logLines.some((l) => l.includes('switched to capture: trigger')), 60_000, 50);
  const resumedAt = await published();
  await waitFor('trigger capture publishing again under load', async () => (await published()) > resumedAt + 1000, 60_000, 50);
  await workload.stop();
  await back.waitForEqual(120_000);
  assert.deepEqual(await workload.mismatches(db.targetUrl), [], 'every key at the version that committed last in the source');
  assert.deepEqual(await query(db.sourceUrl, 'SELECT slot_name FROM pg_replication_slots WHERE database = current_database()'), [], 'the shared slot is gone: its last table left it');

  const topic = `${db.topicPrefix}.public.torture`;
  const records = (await topicRecords(topic)).filter((r) => r.value !== null);
  assert.equal(records.filter((r) => r.value!.op === 'r').length, 0, 'no snapshot read: the table was empty at the start and the switch reads none');
  const byTrigger = new Set(records.filter((r) => !byLogical(r.value!.source.lsn)).map((r) => String(r.value!.source.txId)));
  const logicalTx = new Set(records.filter((r) => byLogical(r.value!.source.lsn)).map((r) => String(r.value!.source.txId)));
  t.diagnostic(`${byTrigger.size} transactions published by trigger capture (before and after), ${logicalTx.size} by logical capture`);
  assert.ok(byTrigger.size > 0 && logicalTx.size > 0, 'both captures published');
  // both name a transaction by its xid (xid8 of epoch 0 = the 32-bit xid), so one transaction in both would show
  const ids = (set: Set<string>) => [...set].map(Number);
  assert.ok(Math.min(...ids(byTrigger)) < Math.min(...ids(logicalTx)) && Math.max(...ids(logicalTx)) < Math.max(...ids(byTrigger)), 'comparable ids: logical capture\'s transactions lie between trigger capture\'s');
  assert.deepEqual([...byTrigger].filter((x) => logicalTx.has(x)), [], 'no transaction published by both captures');
  assert.deepEqual(changesTwice(records), [], 'exactly-once: no change twice within either capture (librdkafka read_committed)');
  assert.deepEqual(versionGaps(records), [], 'each source change in the topic, per key in version order, none skipped');
  assert.deepEqual(await appliedCountMismatches(db.targetUrl, topic, records), [], 'each Kafka record applied exactly once');
  assert.deepEqual(await writeLogRegressions(db.targetUrl), [], 'the target never went back to an older version');
  await back.stop();
});
