// Alone in the suite (scripts/test.mjs): it holds the < 1 s promise. Order policies and replays, which hold no
// time bound, are in dlqPolicies.test.ts and share the machine.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Producer, stringSerializers } from '@platformatic/kafka';
import { goodEmployee as good, letters, targetRow } from '../helpers/deadLetterList.js';
import { query, services, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

const rulesFile = fileURLToPath(new URL('../../../examples/employees-rules.yaml', import.meta.url));

async function status(env: Record<string, string>) {
  return JSON.parse((await runCli(['status', '--json'], env)).stdout);
}

test('every dead-letter class, with its reason in Kafka headers; good changes keep flowing; the counts add up', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_CONFIG: rulesFile };
  await query(db.targetUrl, 'ALTER TABLE employees ADD CONSTRAINT salary_below_1000000 CHECK (salary < 1000000)');
  // a process: the < 1 s promise is `pgtunnel run`'s, its consumer on a thread of its own (not the test's)
  const tunnel = await TunnelProcess.start(t, env);
  await query(db.sourceUrl, good(7));
  await waitFor('emp 7 applied', async () => (await targetRow(db, 7)) !== undefined);
  await query(db.sourceUrl, `
    INSERT INTO employees VALUES (1, 'Old', 'Timer', '1990-01-01', 'London', 20000);
    INSERT INTO employees VALUES (2, 'Low', 'Pay', '2010-01-01', 'Paris', 5000);
    INSERT INTO employees VALUES (-3, 'Neg', 'Ative', '2010-01-01', 'Rome', 20000);
    INSERT INTO emp_cdc (emp_id, first_name, action) VALUES (4, 'Hand', 'MERGE');
    INSERT INTO employees VALUES (6, 'Too', 'Rich', '2010-01-01', 'Oslo', 2000000), (9, 'Fine', 'Neighbour', '2010-01-01', 'Oslo', 20000)`);
  const producer = new Producer({ clientId: 'poisoner', bootstrapBrokers: [services().brokers], serializers: stringSerializers });
  await producer.send({ messages: [{ topic: `${db.topicPrefix}.public.employees`, key: '{"emp_id":5}', value: '{"op":"c","after":{"emp_id":55}}' }] });
  await producer.close();
  await query(db.targetUrl, 'DELETE FROM employees WHERE emp_id = 7');
  await query(db.sourceUrl, 'UPDATE employees SET salary = 31000 WHERE emp_id = 7; UPDATE employees SET salary = 25000 WHERE emp_id = 1');
  const committed = Date.now();
  await query(db.sourceUrl, good(8));
  await waitFor('the good change', async () => (await targetRow(db, 8)) !== undefined, 5000, 5);
  assert.ok(Date.now() - committed < 1000, 'a good change after the bad ones arrives in under 1 s');
  // 9 may sit in another partition than 8: wait for it rather than read it once
  await waitFor('the refused change\'s neighbour in the same batch applied', async () => (await targetRow(db, 9))?.salary === 20000, 10_000, 50);

  const found = await waitFor('all eight dead letters', async () => {
    const l = await letters(env);
    return l.length >= 8 ? l : undefined;
  }, 20_000, 250);
  assert.deepEqual(found.map((l) => `${l.errorClass} ${l.key}`).sort(), [
    'bad-action {"emp_id":4}', 'missing-key {"emp_id":7}', 'parked {"emp_id":1}', 'poison {"emp_id":5}',
    'rule {"emp_id":-3}', 'rule {"emp_id":1}', 'rule {"emp_id":2}', 'target {"emp_id":6}',
  ]);
  const target = found.find((l) => l.errorClass === 'target')!;
  assert.equal(target.headers['pgtunnel.error.code'], '23514');
  assert.equal(target.headers['pgtunnel.error.constraint'], 'salary_below_1000000');
  const rule = found.find((l) => l.key === '{"emp_id":2}')!;
  assert.equal(rule.headers['pgtunnel.rule'], 'salary-above-10000');
  for (const h of ['pgtunnel.error.class', 'pgtunnel.error.message', 'pgtunnel.original.topic', 'pgtunnel.original.partition', 'pgtunnel.original.offset', 'pgtunnel.time', 'pgtunnel.attempt']) {
    assert.ok(rule.headers[h] !== undefined, `header ${h}`);
  }
  assert.deepEqual((await letters(env, ['--rule', 'born-after-2007'])).map((l) => l.key), ['{"emp_id":1}']);

  const report = await waitFor('nothing in flight', async () => {
    const s = await status(env);
    return s.lag === 0 && s.counts.inFlight === 0 ? s : undefined;
  }, 10_000, 200);
  // 10 changes captured: inserts 7, 1, 2, -3, 6, 9, 8, the MERGE row, the updates of 7 and 1.
  // Applied: inserts 7, 9, 8. Dead letters: 1, 2, -3 (rules), 6 (target), 7 (missing key), 1 (parked), MERGE.
  assert.deepEqual(report.counts, { captured: 10, snapshotRows: 0, applied: 3, deadLettered: 7, inFlight: 0, poison: 1 });
  await tunnel.stop();
});
