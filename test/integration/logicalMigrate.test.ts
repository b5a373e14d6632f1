import assert from 'node:assert/strict';
import { test } from 'node:test';
import { installLogical } from '../../src/capture/logicalInstall.js';
import { loadConfig } from '../../src/config/load.js';
import { publicationName, slotName, sourceSlotName } from '../../src/names.js';
import { withClient } from '../../src/pg.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { changesTwice, sameRows, snapshotReadsPerKey, topicRecords } from '../helpers/oracles.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TwoTableWriter, replication } from '../helpers/twoTables.js';

test('capture: logical, a table with a slot of its own moves onto the shared slot under a writer: no re-snapshot of the other table, nothing lost or doubled, one walsender after', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  const database = new URL(db.sourceUrl).pathname.slice(1);
  for (const name of ['mg_own', 'mg_new']) {
    await query(db.sourceUrl, `CREATE TABLE ${name} (id int PRIMARY KEY, v int NOT NULL)`);
    await query(db.sourceUrl, `INSERT INTO ${name} SELECT i, 0 FROM generate_series(1, 300) i`);
  }
  // mg_own as an install before the shared slot made it: state, a publication and a slot of its own (the old install path)
  const own = { schema: 'public', name: 'mg_own' };
  await withClient(db.sourceUrl, 'source', (source) => installLogical(source, loadConfig({ env: { ...db.env, PGTUNNEL_TABLES: 'mg_own' } }).tables[0]!));
  assert.deepEqual((await replication(db.sourceUrl)).slots, [slotName(own, database)], 'the old install: a slot of its own');
  onCleanup(t, () => query(db.sourceUrl, 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active').catch(() => {}));

  // a writer on both tables throughout: transactions touching both, before, during and after the move
  const writer = new TwoTableWriter(t, db.sourceUrl, 'mg_own', 'mg_new');
  await writer.writes(20);

  const env = { ...db.env, PGTUNNEL_TABLES: 'mg_own,mg_new', PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_BATCH_SIZE: '50', PGTUNNEL_HTTP_PORT: 'off' };
  const started = Date.now();
  const step = (what: string) => t.diagnostic(`${what} at ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const tunnel = await InProcessTunnel.start(t, env);
  step('streaming');
  await waitFor('mg_own moved onto the source slot', async () => tunnel.logLines.some((l) => l.includes('moved onto the source slot')), 60_000, 50);
  step('moved');
  await writer.writes(50);
  await writer.stop();
  for (const table of ['mg_own', 'mg_new']) await sameRows(db.sourceUrl, db.targetUrl, table, 60_000);
  assert.deepEqual(await replication(db.sourceUrl), { slots: [sourceSlotName(database, db.topicPrefix)], walsenders: 1 }, 'the own slot is gone: one slot and one walsender for both tables');
  assert.deepEqual(await query(db.sourceUrl, 'SELECT pubname FROM pg_publication WHERE pubname = $1', [publicationName(own)]), [], 'the own publication is gone');
  step('target equal');
  const joinLsn = BigInt((await query<{ lsn: string }>(db.sourceUrl, "SELECT (join_lsn - '0/0')::text AS lsn FROM pgtunnel.state WHERE table_id = 'public.mg_own'"))[0]!.lsn);
  await tunnel.stop();

  const records = await topicRecords(`${db.topicPrefix}.public.mg_own`);
  assert.deepEqual(changesTwice(records), [], 'no change of mg_own sent twice: the own slot gave the commits before the move, the shared one those after');
  const streamed = records.filter((r) => r.value !== null && r.value.op !== 'r').map((r) => BigInt(String(r.value!.source.lsn)));
  t.diagnostic(`mg_own: ${streamed.filter((l) => l < joinLsn).length} changes from its own slot, ${streamed.filter((l) => l >= joinLsn).length} from the shared slot`);
  assert.ok(streamed.some((l) => l < joinLsn) && streamed.some((l) => l >= joinLsn), 'mg_own streamed from both slots');
  assert.ok([...snapshotReadsPerKey(records).values()].every((k) => k === 1), 'each row of mg_own read once: the move is no re-snapshot');
  step('records read');
  const other = await topicRecords(`${db.topicPrefix}.public.mg_new`);
  assert.deepEqual(changesTwice(other), [], 'no change of mg_new sent twice (the shared stream restarted when mg_own joined)');
  assert.equal(snapshotReadsPerKey(other).size, 300, 'mg_new read once by its snapshot');
});
