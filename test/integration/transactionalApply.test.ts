import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';

// Parent and child tables with a foreign key that is not deferrable: the target checks it at each statement.
const ddl = `CREATE TABLE orders (id int PRIMARY KEY, note text);
  CREATE TABLE order_lines (id int PRIMARY KEY, order_id int NOT NULL REFERENCES orders (id), qty int);
  CREATE TABLE bulk (id int PRIMARY KEY, v int)`;

test('apply: transactional honours foreign keys (no replica role) and applies a transaction past the memory budget whole', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, ddl);
  await query(db.targetUrl, ddl);
  const env = { ...db.env, PGTUNNEL_TABLES: 'orders,order_lines,bulk', PGTUNNEL_APPLY: 'transactional', PGTUNNEL_TRANSACTION_BUFFER_BYTES: String(1024 * 1024), PGTUNNEL_HTTP_PORT: 'off' };
  const tunnel = await InProcessTunnel.start(t, env);

  // An order and its lines in one transaction: the lines' table sorts first, so only ordering by the key makes it pass.
  await query(db.sourceUrl, `BEGIN;
    INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 200) g;
    INSERT INTO order_lines SELECT g, 1 + g % 200, g FROM generate_series(1, 600) g;
    COMMIT`);
  // lines moved to other orders and their old orders deleted, in one transaction
  await query(db.sourceUrl, `BEGIN;
    DELETE FROM order_lines WHERE order_id <= 50;
    DELETE FROM orders WHERE id <= 50;
    UPDATE order_lines SET qty = qty + 1 WHERE order_id > 150;
    COMMIT`);
  await tunnel.waitForEqual(60_000);
  const fk = await query<{ n: number }>(db.targetUrl, "SELECT count(*)::int AS n FROM pg_constraint WHERE contype = 'f' AND NOT condeferrable");
  assert.equal(fk[0]!.n, 1, 'the target kept its foreign key, not deferrable');
  const role = await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM order_lines l LEFT JOIN orders o ON o.id = l.order_id WHERE o.id IS NULL');
  assert.equal(role[0]!.n, 0, 'no line without its order');

  // One transaction of 50k rows (about 18 MB of envelopes) against a 1 MB budget (200k took the producer over a minute on a loaded machine): it spills, and a reader
  // on the target sees all of it or none.
  const rows = 50_000;
  const seen = new Set<number>();
  let reading = true;
  const reader = (async () => {
    while (reading) seen.add((await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM bulk'))[0]!.n);
  })();
  await query(db.sourceUrl, `INSERT INTO bulk SELECT g, g FROM generate_series(1, ${rows}) g`);
  await waitFor('the 50k-row transaction on the target', async () => (await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM bulk'))[0]!.n === rows, 100_000, 200, [tunnel]);
  reading = false;
  await reader;
  assert.deepEqual([...seen].filter((n) => n !== 0 && n !== rows), [], `the reader saw only 0 or ${rows} rows`);
  assert.ok(tunnel.logLines.some((l) => l.includes('spilled to the target')), 'the transaction spilled past the budget');
  const held = await query<{ n: number }>(db.targetUrl, 'SELECT count(*)::int AS n FROM pgtunnel.held_records');
  assert.equal(held[0]!.n, 0, 'spilled records are gone once applied');
  await tunnel.waitForEqual(60_000);
  await tunnel.stop();
});

test('apply: transactional refuses a configuration that cannot tell when a transaction is complete', () => {
  assert.throws(() => loadConfig({ env: { PGTUNNEL_APPLY: 'transactional', PGTUNNEL_TRANSACTION_METADATA: 'false' } }), /apply: transactional needs transactionMetadata/);
  assert.throws(() => loadConfig({ env: { PGTUNNEL_APPLY: 'transactional', PGTUNNEL_EXACTLY_ONCE: 'false' } }), /needs exactlyOnce/);
  const on = loadConfig({ env: { PGTUNNEL_APPLY: 'transactional' } });
  assert.equal(on.transactionMetadata, true);
  assert.equal(on.exactlyOnce, true);
});
