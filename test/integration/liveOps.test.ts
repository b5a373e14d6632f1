import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { topicRecords, type TopicRecord } from '../helpers/oracles.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';

const departmentsDdl = 'CREATE TABLE departments (dept_id serial PRIMARY KEY, name text NOT NULL)';

/** Runs statements in one source transaction and returns its txid with what it wrote per table. */
async function transaction(url: string, statements: string[], events: Record<string, number>, commit = true): Promise<{ txid: string; events: Record<string, number> }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN');
    for (const s of statements) await client.query(s);
    const { rows } = await client.query<{ txid: string }>('SELECT pg_current_xact_id()::text AS txid');
    await client.query(commit ? 'COMMIT' : 'ROLLBACK');
    return { txid: rows[0]!.txid, events };
  } finally {
    await client.end();
  }
}

type Block = { id: string; total_order: number; data_collection_order: number };
type TxEvent = { status: 'BEGIN' | 'END'; id: string; event_count: number | null; data_collections: { data_collection: string; event_count: number }[] | null };

test('transaction metadata: one BEGIN and END per source transaction with exact counts per table, across tables and pages', { timeout: 180_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, departmentsDdl);
  // pages of 10 changes (growing to 80): the large transactions below are read in several pages
  const env = { ...db.env, PGTUNNEL_TABLES: 'employees,departments', PGTUNNEL_TRANSACTION_METADATA: 'true', PGTUNNEL_BATCH_SIZE: '10' };
  await InProcessTunnel.start(t, env);
  const emp = 'public.employees';
  const dept = 'public.departments';
  const committed = [
    await transaction(db.sourceUrl, ["INSERT INTO employees (first_name, salary) SELECT 'a' || i, i FROM generate_series(1, 3) i"], { [emp]: 3 }),
    await transaction(db.sourceUrl, [
      "INSERT INTO departments (name) SELECT 'd' || i FROM generate_series(1, 4) i",
      "INSERT INTO employees (first_name, salary) SELECT 'b' || i, i FROM generate_series(1, 25) i",
      "UPDATE departments SET name = name || '!' WHERE dept_id <= 2",
    ], { [emp]: 25, [dept]: 6 }),
    await transaction(db.sourceUrl, ["INSERT INTO employees (first_name, salary) SELECT 'c' || i, i FROM generate_series(1, 155) i"], { [emp]: 155 }),
    await transaction(db.sourceUrl, ['UPDATE employees SET salary = salary + 1 WHERE emp_id <= 40', 'DELETE FROM employees WHERE emp_id <= 5', "INSERT INTO departments (name) VALUES ('e')"], { [emp]: 45, [dept]: 1 }),
  ];
  const rolledBack = await transaction(db.sourceUrl, ["INSERT INTO departments (name) VALUES ('never')"], { [dept]: 1 }, false);
  await waitFor('the target', async () => (await query<{ n: number }>(db.targetUrl, "SELECT count(*)::int AS n FROM employees WHERE first_name LIKE 'c%'"))[0]!.n === 155
    && (await query<{ n: number }>(db.targetUrl, "SELECT count(*)::int AS n FROM departments WHERE name = 'e'"))[0]!.n === 1, 60_000, 50);

  // a consumer of its own (librdkafka, read_committed) reads the transaction topic and the table topics
  const events = (await topicRecords(`${db.topicPrefix}.transaction`)).map((r) => r.value as unknown as TxEvent);
  const byTable: Record<string, TopicRecord[]> = {
    [emp]: await topicRecords(`${db.topicPrefix}.${emp}`),
    [dept]: await topicRecords(`${db.topicPrefix}.${dept}`),
  };
  assert.equal(events.filter((e) => e.id === rolledBack.txid).length, 0, 'a rolled-back transaction has no events');
  assert.equal(events.length, committed.length * 2, `one BEGIN and one END per transaction: ${JSON.stringify(events)}`);
  for (const tx of committed) {
    const mine = events.filter((e) => e.id === tx.txid);
    assert.deepEqual(mine.map((e) => e.status), ['BEGIN', 'END'], `transaction ${tx.txid}`);
    assert.equal(mine[0]!.event_count, null);
    const total = Object.values(tx.events).reduce((a, b) => a + b, 0);
    assert.equal(mine[1]!.event_count, total, `END of ${tx.txid} counts every event`);
    assert.deepEqual(mine[1]!.data_collections, Object.keys(tx.events).sort().map((d) => ({ data_collection: d, event_count: tx.events[d] })));
    const totalOrders: number[] = [];
    for (const [table, n] of Object.entries(tx.events)) {
      const envelopes = byTable[table]!.filter((r) => r.value !== null && String(r.value.source.txId) === tx.txid);
      const blocks = envelopes.map((r) => (r.value as unknown as { transaction: Block }).transaction);
      assert.equal(blocks.length, n, `${table} envelopes of ${tx.txid}`);
      assert.ok(blocks.every((b) => b.id === tx.txid));
      assert.deepEqual(blocks.map((b) => b.data_collection_order).sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i + 1));
      // within a partition (one key's order), a transaction's events come in their order
      for (const p of new Set(envelopes.map((r) => r.partition))) {
        const orders = envelopes.filter((r) => r.partition === p).map((r) => (r.value as unknown as { transaction: Block }).transaction.data_collection_order);
        assert.deepEqual(orders, [...orders].sort((a, b) => a - b));
      }
      totalOrders.push(...blocks.map((b) => b.total_order));
    }
    assert.deepEqual(totalOrders.sort((a, b) => a - b), Array.from({ length: total }, (_, i) => i + 1), `total_order of ${tx.txid} numbers every event once`);
  }
  // each producer marks the counts of what it published in its checkpoint's transaction
  await waitFor('every count marked published', async () => (await query<{ n: number }>(db.sourceUrl, 'SELECT count(*)::int AS n FROM pgtunnel.transaction_events WHERE NOT published'))[0]!.n === 0, 30_000, 50);
});
