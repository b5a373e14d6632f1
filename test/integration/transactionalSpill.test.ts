import assert from 'node:assert/strict';
import { test } from 'node:test';
import { onCleanup, query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';

const rows = 8_000;
const count = async (url: string) => (await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM bulk'))[0]!.n;

test('apply: transactional, a spilled transaction killed -9 mid-apply: nothing of it shows, the restart applies it whole, after it a later writer of one of its rows', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  for (const url of [db.sourceUrl, db.targetUrl]) await query(url, 'CREATE TABLE bulk (id int PRIMARY KEY, v int)');
  const env = { ...db.env, PGTUNNEL_TABLES: 'bulk', PGTUNNEL_APPLY: 'transactional', PGTUNNEL_PARTITIONS: '3', PGTUNNEL_TRANSACTION_BUFFER_BYTES: String(1024 * 1024), PGTUNNEL_HTTP_PORT: 'off' };
  // the first write of the tunnel is the first piece (5,000 rows) of the spilled transaction: the second kills
  // the process inside that one target transaction
  const first = new TunnelProcess({ ...env, PGTUNNEL_FAILPOINTS: 'apply.write:2' });
  onCleanup(t, () => first.kill('SIGKILL'));
  await waitFor('the tunnel streaming', async () => first.output.includes('phase: streaming'), 90_000, 50);

  const seen = new Set<number>();
  let reading = true;
  const reader = (async () => {
    while (reading) seen.add(await count(db.targetUrl));
  })();
  onCleanup(t, () => { reading = false; });
  await query(db.sourceUrl, `INSERT INTO bulk SELECT g, g FROM generate_series(1, ${rows}) g`);
  // a later transaction writes one of its rows: it must not go first
  await query(db.sourceUrl, 'UPDATE bulk SET v = -1 WHERE id = 7');
  await waitFor('the failpoint killing the tunnel mid-apply', async () => first.child.signalCode === 'SIGKILL', 120_000, 50);
  assert.match(first.output, /spilled to the target/, 'the transaction spilled past the budget');
  // (the failpoint's own line is written by the consumer's thread and dies with the process)
  assert.equal(await count(db.targetUrl), 0, 'nothing of the transaction committed');
  const held = await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM pgtunnel.held_records');
  assert.ok(held[0]!.n > 0, 'the spilled records were still held when it died (the apply never committed)');

  const second = TunnelProcess.spawn(t, env);
  await waitFor('the transaction and the later update on the target', async () => {
    const r = await query<{ n: number; v: number | null }>(db.targetUrl, 'SELECT count(*)::int AS n, max(v) FILTER (WHERE id = 7) AS v FROM bulk');
    return r[0]!.n === rows && r[0]!.v === -1;
  }, 150_000, 200, [second]);
  reading = false;
  await reader;
  assert.deepEqual([...seen].filter((n) => n !== 0 && n !== rows), [], `the reader saw only 0 or ${rows} rows`);
  const sums = async (url: string) => (await query<{ s: string }>(url, 'SELECT count(*)::text || \'/\' || sum(v)::text AS s FROM bulk'))[0]!.s;
  assert.equal(await sums(db.targetUrl), await sums(db.sourceUrl), 'the target equals the source');
  await waitFor('the spilled records gone once applied', async () => (await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM pgtunnel.held_records'))[0]!.n === 0, 30_000, 200, [second]);
  await second.stop();
});
