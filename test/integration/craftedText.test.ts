import assert from 'node:assert/strict';
import { test } from 'node:test';
import { snapshotRowToMessage, type TableRef } from '../../src/contracts/envelope.js';
import { EnvelopeProducer } from '../../src/transport/kafka.js';
import { onCleanup, query, services, tunnelDatabases, waitFor } from '../helpers/services.js';
import { TunnelProcess } from '../helpers/tunnelProcess.js';

/** 200 KB of what made the old URL pattern quadratic: dotted words, and base64 with + and /. */
const dotted = 'a.'.repeat(100 * 1024);
const base64ish = 'QUJD+/9x'.repeat(25 * 1024);

async function deadLetters(targetUrl: string, topic: string): Promise<number> {
  const [r] = await query<{ n: string }>(targetUrl, 'SELECT (coalesce(sum(dead_lettered), 0) + coalesce(sum(poison), 0))::text AS n FROM pgtunnel.consumer_offsets WHERE topic = $1', [topic]);
  return Number(r?.n ?? 0);
}

test('crafted 200 KB keys and values (dotted, base64-like) do not delay the next good change past 1 s', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await TunnelProcess.start(t, db.env);
  const table: TableRef = { db: 'db1', schema: 'public', name: 'employees', key: ['emp_id'], topic: `${db.topicPrefix}.public.employees`, topicPrefix: db.topicPrefix };
  const row = (id: number, fields: Record<string, string>) => JSON.stringify({ emp_id: id, first_name: 'Forged', last_name: null, dob: null, city: null, salary: null, ...fields });
  const producer = new EnvelopeProducer({ kafkaBrokers: [services().brokers] }, 'crafted-text');
  onCleanup(t, () => producer.close());
  // a key the poison message quotes; values the target's error echoes ("invalid input syntax for type …")
  const crafted = [
    snapshotRowToMessage(table, { row: row(900_001, {}), key: `{"emp_id":900001,"x":"${dotted}"}` }, 1, Date.now()),
    snapshotRowToMessage(table, { row: row(900_002, { salary: dotted }), key: '{"emp_id":900002}' }, 1, Date.now()),
    snapshotRowToMessage(table, { row: row(900_003, { dob: base64ish }), key: '{"emp_id":900003}' }, 1, Date.now()),
  ];
  // the consumer has joined its group, applied a change and written a dead letter (the DLQ topic exists):
  // what follows measures the crafted records alone
  await producer.publish([{ topic: table.topic, key: '{"emp_id":900000}', value: '{}' }]);
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name, salary) VALUES (2, 'Warm', 1)");
  await waitFor('the first change in the target', async () => (await query(db.targetUrl, 'SELECT 1 FROM employees WHERE emp_id = 2')).length === 1, 30_000, 20);
  await waitFor('the first dead letter', async () => (await deadLetters(db.targetUrl, table.topic)) === 1, 30_000, 20);
  await producer.publish(crafted);
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name, salary) VALUES (1, 'Ada', 1)");
  const committed = Date.now();
  await waitFor('the good change in the target', async () => (await query(db.targetUrl, 'SELECT 1 FROM employees WHERE emp_id = 1')).length === 1, 30_000, 5);
  const ms = Date.now() - committed;
  t.diagnostic(`the good change reached the target ${ms} ms after its commit`);
  const letters = await waitFor('the three crafted records dead-lettered', async () => {
    const n = await deadLetters(db.targetUrl, table.topic);
    return n >= 4 ? n : undefined;
  }, 30_000, 50);
  assert.equal(letters, 4);
  assert.ok(ms < 1000, `the good change took ${ms} ms`);
  const [applied] = await query<{ n: string }>(db.targetUrl, 'SELECT count(*)::text AS n FROM employees WHERE emp_id >= 900001');
  assert.equal(applied!.n, '0', 'no crafted row was applied');
  assert.equal(tunnel.child.exitCode, null, 'the tunnel is still running');
  await tunnel.stop();
});
