import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { changesTwice, sameRows, snapshotReadsPerKey, topicRecords } from '../helpers/oracles.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';

/** The slots of this test's database and the walsenders streaming them (other tests share the cluster). */
const replication = async (url: string) => (await query<{ slots: number; walsenders: number }>(url,
  `SELECT (SELECT count(*)::int FROM pg_replication_slots WHERE database = current_database() AND NOT temporary) AS slots,
          (SELECT count(*)::int FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.database = current_database()) AS walsenders`))[0]!;

test('capture: logical, one slot per source: three tables under a writer on one walsender, a table added live is snapshotted alone and joins at its consistent point, nothing lost or doubled', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  for (const n of [1, 2, 3, 4]) await query(db.sourceUrl, `CREATE TABLE sh_${n} (id int PRIMARY KEY, v int NOT NULL)`);
  for (const n of [1, 2, 3]) await query(db.sourceUrl, `INSERT INTO sh_${n} SELECT i, 0 FROM generate_series(1, 300) i`);
  const config = path.join(db.home, 'tables.json');
  const useTables = (...names: string[]) => writeFileSync(config, JSON.stringify({ tables: names.map((name) => ({ name })) }));
  useTables('sh_1', 'sh_2', 'sh_3');
  const env = { ...db.env, PGTUNNEL_CONFIG: config, PGTUNNEL_CAPTURE: 'logical', PGTUNNEL_TABLE_CHECK_INTERVAL_MS: '1000', PGTUNNEL_BATCH_SIZE: '50' };
  const started = Date.now();
  const step = (what: string) => t.diagnostic(`${what} at ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const tunnel = await TunnelProcess.start(t, env);
  step('streaming');
  t.after(async () => {
    await tunnel.stop().catch(() => {});
    await query(db.sourceUrl, 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active').catch(() => {});
  });

  // a writer across all tables: transactions touching several of them, and sh_4 (not yet captured) too
  let writing = true;
  let n = 0;
  const writer = (async () => {
    while (writing) {
      n++;
      await query(db.sourceUrl, `BEGIN; INSERT INTO sh_1 VALUES (1000 + ${n}, ${n}); UPDATE sh_2 SET v = ${n} WHERE id = 1 + ${n} % 300;
        UPDATE sh_3 SET v = v + 1 WHERE id = 1 + ${n} % 7; INSERT INTO sh_4 VALUES (${n}, ${n}); UPDATE sh_4 SET v = v + 1 WHERE id = 1 + ${n} % 50; COMMIT`);
    }
  })();
  await waitFor('the writer under way', async () => n > 30, 30_000, 20);
  const shared = await replication(db.sourceUrl);
  assert.deepEqual(shared, { slots: 1, walsenders: 1 }, 'one slot and one walsender for the three tables');

  // added live: sh_4's snapshot takes a temporary slot's snapshot while the writer goes on; it joins the shared stream at its consistent point
  useTables('sh_1', 'sh_2', 'sh_3', 'sh_4');
  await tunnel.waitForLog('table added: public.sh_4', 60_000);
  await tunnel.waitForLog('joins the source slot at its consistent point', 60_000);
  step('sh_4 joining');
  const writtenAtJoin = n;
  await waitFor('the writer past the join', async () => n > writtenAtJoin + 30, 60_000, 20);
  writing = false;
  await writer;
  step('writer stopped');
  for (const table of ['sh_1', 'sh_2', 'sh_3', 'sh_4']) await sameRows(db.sourceUrl, db.targetUrl, table, 60_000);
  step('target equal');
  assert.deepEqual(await replication(db.sourceUrl), { slots: 1, walsenders: 1 }, 'still one slot and one walsender with four tables');

  for (const table of ['sh_1', 'sh_2', 'sh_3', 'sh_4']) {
    const records = await topicRecords(`${db.topicPrefix}.public.${table}`);
    assert.deepEqual(changesTwice(records), [], `no change of ${table} sent twice (the stream restarted for sh_4 skips what Kafka has)`);
    const reads = snapshotReadsPerKey(records);
    assert.ok([...reads.values()].every((n) => n === 1), `each row of ${table} read once by its snapshot`);
    // only sh_4 was snapshotted after the start: the other tables' snapshot rows are their 300 seed rows
    if (table !== 'sh_4') assert.equal(reads.size, 300, `${table} not read again when sh_4 joined`);
    else assert.ok(reads.size > 0 && records.some((r) => r.value && r.value.op !== 'r'), 'sh_4: its snapshot, then its stream');
  }
});
