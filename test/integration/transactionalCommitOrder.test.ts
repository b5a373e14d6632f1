import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { EventRecorder, InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';

// T1 writes table a, then T2 (begun after T1 committed) writes table b: a reader of the target must never see
// T2 without T1, also when T2 reaches the applier first because a's producer is down.
const ddl = 'CREATE TABLE commit_a (id int PRIMARY KEY, v text); CREATE TABLE commit_b (id int PRIMARY KEY, v text)';
const orphansSql = "SELECT string_agg(b.id::text, ',') AS ids FROM commit_b b WHERE NOT EXISTS (SELECT 1 FROM commit_a a WHERE a.id = b.id)";

test('apply: transactional applies transactions of different tables in source commit order, also when the later one arrives first', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, ddl);
  await query(db.targetUrl, ddl);
  const base = { ...db.env, PGTUNNEL_APPLY: 'transactional', PGTUNNEL_PARTITIONS: '2', PGTUNNEL_HTTP_PORT: 'off' };
  const recorder = new EventRecorder();
  onCleanup(t, () => recorder.close());
  // one applier for both tables; each table's producer on its own, so one can stop while the other publishes
  const applier = await InProcessTunnel.start(t, { ...base, PGTUNNEL_TABLES: 'commit_a,commit_b' }, { role: 'consumer', recorder });
  await InProcessTunnel.start(t, { ...base, PGTUNNEL_TABLES: 'commit_b' }, { role: 'producer', recorder });
  const startA = () => InProcessTunnel.start(t, { ...base, PGTUNNEL_TABLES: 'commit_a' }, { role: 'producer', recorder });
  let producerA = await startA();

  let reading = true;
  let reads = 0;
  const orphans: string[] = [];
  const reader = (async () => {
    const client = new pg.Client({ connectionString: db.targetUrl });
    await client.connect();
    try {
      while (reading) {
        const ids = (await client.query<{ ids: string | null }>(orphansSql)).rows[0]!.ids;
        reads++;
        if (ids) orphans.push(ids);
      }
    } finally {
      await client.end();
    }
  })();
  onCleanup(t, () => { reading = false; });
  const pair = async (id: number) => {
    await query(db.sourceUrl, 'INSERT INTO commit_a VALUES ($1, $2)', [id, 'first']);
    await query(db.sourceUrl, 'INSERT INTO commit_b VALUES ($1, $2)', [id, 'second']);
  };
  const onTarget = async (id: number) => (await query(db.targetUrl, 'SELECT 1 FROM commit_b WHERE id = $1', [id])).length > 0;

  // both producers running: pairs committed one after the other
  for (let id = 1; id <= 20; id++) await pair(id);
  await waitFor('the running pairs on the target', () => onTarget(20), 60_000, 50, [applier]);

  // a's producer down: T1 stays in the source, T2 reaches the applier alone
  await producerA.stop();
  const since = recorder.recorded.length;
  await pair(100);
  const said = await waitFor('the applier to say it waits for commit_a (or the reader to see T2 without T1)', async () => {
    if (orphans.length > 0) return 'orphans';
    return recorder.of('pgtunnel:degraded', since).map((r) => r.event).find((e) => e.part === 'consumer' && e.reason.includes('public.commit_a'))?.reason;
  }, 60_000, 50, [applier]);
  assert.deepEqual(orphans, [], 'no read saw a row of commit_b without the commit_a row committed before it');
  assert.match(said, /wait .* for progress of public\.commit_a/);
  assert.equal(await onTarget(100), false, 'T2 is held while T1 cannot have arrived');

  producerA = await startA();
  await waitFor('T1 and T2 on the target', () => onTarget(100), 60_000, 50, [applier]);
  await applier.waitForEqual(60_000);
  reading = false;
  await reader;
  t.diagnostic(`${reads} reads of the target`);
  assert.ok(reads > 20, `the reader read often (${reads} reads)`);
  assert.deepEqual(orphans, [], 'no read saw a row of commit_b without the commit_a row committed before it');
  await producerA.stop();
});
