import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { sourceSlotName } from '../../src/names.js';
import { InProcessTunnel, installInProcess } from '../helpers/inProcessTunnel.js';
import { changesTwice, sameRows, snapshotReadsPerKey, topicRecords } from '../helpers/oracles.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TwoTableWriter, replication } from '../helpers/twoTables.js';

/** Trigger capture's `source.lsn` is a change id; logical capture's a WAL position, far above any change id here. */
const byLogical = (lsn: unknown) => BigInt(String(lsn)) > BigInt(2 ** 24);

test('capture switch on the shared slot: one table from the shared slot to triggers and straight back, a restart inside each switch, the other table streaming throughout: nothing lost or doubled, no re-snapshot, one slot at the end', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  const database = new URL(db.sourceUrl).pathname.slice(1);
  for (const name of ['sw_move', 'sw_stay']) {
    await query(db.sourceUrl, `CREATE TABLE ${name} (id int PRIMARY KEY, v int NOT NULL)`);
    await query(db.sourceUrl, `INSERT INTO ${name} SELECT i, 0 FROM generate_series(1, 300) i`);
  }
  onCleanup(t, () => query(db.sourceUrl, 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active').catch(() => {}));
  const config = (move: string) => {
    const file = `${db.home}/${move}.yaml`;
    writeFileSync(file, `capture: logical\ntables:\n  - { name: sw_move, capture: ${move} }\n  - sw_stay\n`);
    // exactly-once, so a change sent twice within one capture shows too (the restarts would otherwise resend a suffix)
    return { ...db.env, PGTUNNEL_CONFIG: file, PGTUNNEL_BATCH_SIZE: '50', PGTUNNEL_HTTP_PORT: 'off', PGTUNNEL_EXACTLY_ONCE: 'true' };
  };
  const [logical, trigger] = [config('logical'), config('trigger')];

  // a writer on both tables throughout: transactions touching both, before, during and after each switch
  const writer = new TwoTableWriter(t, db.sourceUrl, 'sw_move', 'sw_stay');
  const writes = (more: number) => writer.writes(more);
  const started = Date.now();
  const step = (what: string) => t.diagnostic(`${what} at ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const triggers = async () => (await query(db.sourceUrl, "SELECT 1 FROM pg_trigger WHERE tgrelid = 'sw_move'::regclass AND NOT tgisinternal")).length > 0;
  const member = async () => (await query(db.sourceUrl, "SELECT 1 FROM pg_publication_tables WHERE tablename = 'sw_move'")).length > 0;

  let tunnel = await InProcessTunnel.start(t, logical);
  step('started');
  await waitFor('both snapshots published', async () => (await query(db.sourceUrl, "SELECT 1 FROM pgtunnel.state WHERE phase = 'streaming'")).length === 2, 60_000, 50);
  await writes(30);
  await tunnel.stop();
  step('both tables streaming from the shared slot');

  // shared → trigger, stopped between the boundary transaction and the stream reaching it (install sets the boundary)
  await installInProcess(trigger);
  assert.ok(await triggers(), 'the triggers are installed before the boundary');
  await writes(50);
  tunnel = await InProcessTunnel.start(t, trigger);
  await waitFor('the hand-over to trigger capture', async () => tunnel.logLines.some((l) => l.includes('switched to capture: trigger')), 60_000, 50);
  step('switched to triggers');
  assert.equal(await member(), false, 'sw_move left the shared publication');
  await writes(30);
  await tunnel.stop();

  // trigger → shared slot, stopped as soon as the boundary pinned the last trigger batch (a restart inside the switch)
  tunnel = await InProcessTunnel.start(t, logical);
  await waitFor('the boundary of the switch onto the shared slot', async () => tunnel.logLines.some((l) => l.includes('the last trigger batch ends at the boundary transaction')), 60_000, 5);
  await tunnel.stop();
  t.diagnostic(`stopped inside the switch onto the shared slot: triggers ${(await triggers()) ? 'still there' : 'already gone'}`);
  await writes(30);
  tunnel = await InProcessTunnel.start(t, logical);
  await waitFor('on the shared slot', async () => !(await triggers()) && (await member()), 60_000, 50);
  step('switched to the shared slot');
  await writes(30);
  await writer.stop();
  for (const table of ['sw_move', 'sw_stay']) await sameRows(db.sourceUrl, db.targetUrl, table, 60_000);
  assert.deepEqual(await replication(db.sourceUrl), { slots: [sourceSlotName(database, db.topicPrefix)], walsenders: 1 }, 'one slot and one walsender for both tables');
  assert.deepEqual(await query(db.sourceUrl, "SELECT relname FROM pg_class WHERE relname = 'sw_move_cdc'"), [], 'the change table is gone');
  step('target equal');
  await tunnel.stop();

  const records = (await topicRecords(`${db.topicPrefix}.public.sw_move`)).filter((r) => r.value !== null);
  assert.deepEqual(changesTwice(records), [], 'no change of sw_move twice within either capture');
  const reads = snapshotReadsPerKey(records);
  assert.ok([...reads.values()].every((k) => k === 1) && reads.size >= 300, `each row of sw_move read once: no switch re-snapshots (${reads.size} keys read)`);
  const streamed = records.filter((r) => r.value!.op !== 'r');
  const byTrigger = new Set(streamed.filter((r) => !byLogical(r.value!.source.lsn)).map((r) => String(r.value!.source.txId)));
  const logicalTx = new Set(streamed.filter((r) => byLogical(r.value!.source.lsn)).map((r) => String(r.value!.source.txId)));
  t.diagnostic(`sw_move: ${byTrigger.size} transactions by trigger capture, ${logicalTx.size} by the shared stream`);
  assert.ok(byTrigger.size > 0 && logicalTx.size > 0, 'both captures published sw_move');
  assert.deepEqual([...byTrigger].filter((x) => logicalTx.has(x)), [], 'no transaction of sw_move published by both captures');
  // trigger capture's transactions lie between the stream's (before the first switch, after the second)
  const ids = (set: Set<string>) => [...set].map(Number);
  assert.ok(Math.min(...ids(logicalTx)) < Math.min(...ids(byTrigger)) && Math.max(...ids(byTrigger)) < Math.max(...ids(logicalTx)), 'trigger capture in the middle, the shared stream before and after');
  const other = (await topicRecords(`${db.topicPrefix}.public.sw_stay`)).filter((r) => r.value !== null);
  assert.deepEqual(changesTwice(other), [], 'no change of sw_stay twice (the shared stream restarted at each switch)');
  assert.equal(snapshotReadsPerKey(other).size, 300, 'sw_stay read once by its snapshot');
  assert.ok(other.filter((r) => r.value!.op !== 'r').every((r) => byLogical(r.value!.source.lsn)), 'sw_stay only ever streamed from the shared slot');
});
