import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
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

// Parent and child written in separate source transactions: each table's producer publishes on its own, so the
// applier may hold the child's transaction before the parent's arrives (or the parent's delete before the child's).
const familyDdl = `CREATE TABLE parents (id int PRIMARY KEY, name text);
  CREATE TABLE children (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parents (id), qty int)`;

test('apply: transactional keeps source commit order across tables for foreign keys; a transaction with a dead letter goes to the DLQ whole', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, familyDdl);
  await query(db.targetUrl, familyDdl);
  const config = path.join(db.home, 'family.yaml');
  writeFileSync(config, "tables:\n  - name: parents\n    orderPolicy: continue\n  - name: children\n    orderPolicy: continue\n    rules:\n      - { name: qty-not-negative, column: qty, op: '>=', value: 0 }\n");
  const env = { ...db.env, PGTUNNEL_CONFIG: config, PGTUNNEL_APPLY: 'transactional', PGTUNNEL_PARTITIONS: '3', PGTUNNEL_HTTP_PORT: 'off' };
  const tunnel = await InProcessTunnel.start(t, env);

  // each statement its own transaction: parent, child, then half of them removed child first
  for (let i = 1; i <= 60; i++) {
    await query(db.sourceUrl, 'INSERT INTO parents VALUES ($1, $2)', [i, `p${i}`]);
    await query(db.sourceUrl, 'INSERT INTO children VALUES ($1, $1, 1)', [i]);
    if (i % 2 === 0) {
      await query(db.sourceUrl, 'DELETE FROM children WHERE id = $1', [i]);
      await query(db.sourceUrl, 'DELETE FROM parents WHERE id = $1', [i]);
    }
  }
  // one transaction whose child fails the rule: neither row may reach the target
  await query(db.sourceUrl, "BEGIN; INSERT INTO parents VALUES (1000, 'whole'); INSERT INTO children VALUES (1000, 1000, -1); UPDATE parents SET name = 'seen' WHERE id = 1; COMMIT");
  const letters = await tunnel.waitForEvents('pgtunnel:dead-lettered', 'the failing transaction\'s three records as dead letters', (e) => e.length >= 3, 60_000);
  assert.deepEqual(letters.map((l) => l.errorClass).sort(), ['rule', 'rule', 'rule']);
  assert.equal(letters.filter((l) => l.message.startsWith('rule qty-not-negative')).length, 1, 'the failing record keeps its own reason');
  assert.equal(letters.filter((l) => l.message.startsWith('part of source transaction')).length, 2, 'the others say whose transaction took them');
  const whole = await query<{ n: number }>(db.targetUrl, "SELECT (SELECT count(*) FROM parents WHERE id = 1000 OR name = 'seen') + (SELECT count(*) FROM children WHERE id = 1000) AS n");
  assert.equal(Number(whole[0]!.n), 0, 'no part of the refused transaction on the target');

  // the source without that transaction's rows is what the target must equal
  await query(db.sourceUrl, "BEGIN; DELETE FROM children WHERE id = 1000; DELETE FROM parents WHERE id = 1000; UPDATE parents SET name = 'p1' WHERE id = 1; COMMIT");
  await tunnel.waitForEqual(60_000);
  const counted = await query<{ dead: string }>(db.targetUrl, 'SELECT sum(dead_lettered)::text AS dead FROM pgtunnel.consumer_offsets');
  assert.equal(counted[0]!.dead, '3', 'only the refused transaction was dead-lettered: no foreign key refusal on the way');
  await tunnel.stop();
});
