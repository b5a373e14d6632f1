import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { query, tunnelDatabases } from '../helpers/services.js';

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
