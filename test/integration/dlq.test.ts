import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Producer, stringSerializers } from '@platformatic/kafka';
import { query, services, tunnelDatabases, waitFor, type TunnelEnv } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

const rulesFile = fileURLToPath(new URL('../../../examples/employees-rules.yaml', import.meta.url));
const good = (id: number) => `INSERT INTO employees VALUES (${id}, 'Good', 'One', '2010-01-01', 'Oslo', 50000)`;

async function letters(env: Record<string, string>, args: string[] = []): Promise<{ errorClass: string; rule?: string; key: string; message: string; headers: Record<string, string> }[]> {
  const result = await runCli(['dlq', 'list', '--json', ...args], env);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
}

async function targetRow(db: TunnelEnv, id: number) {
  return (await query<{ salary: number }>(db.targetUrl, 'SELECT salary FROM employees WHERE emp_id = $1', [id]))[0];
}

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

test('orderPolicy park holds a key\'s later changes behind its dead letter; continue applies them', { timeout: 90_000 }, async (t) => {
  for (const policy of ['park', 'continue']) {
    const db = await tunnelDatabases(t);
    const config = path.join(db.home, 'rules.yaml');
    writeFileSync(config, `tables:\n  - name: employees\n    orderPolicy: ${policy}\n    rules:\n      - { name: salary-above-10000, column: salary, op: '>', value: 10000 }\n`);
    const env = { ...db.env, PGTUNNEL_CONFIG: config };
    const tunnel = await InProcessTunnel.start(t, env);
    await query(db.sourceUrl, "INSERT INTO employees VALUES (1, 'A', 'B', '2010-01-01', 'Oslo', 500)");
    await query(db.sourceUrl, 'UPDATE employees SET salary = 20000 WHERE emp_id = 1');
    await query(db.sourceUrl, good(2));
    await waitFor('the marker change', async () => (await targetRow(db, 2)) !== undefined);
    // key 1's partition may lag the marker's: its letters (newest first) say both of its changes were handled
    const expected = policy === 'park' ? ['parked', 'rule'] : ['rule'];
    await tunnel.waitForEvents('pgtunnel:dead-lettered', `key 1's dead letters (${policy})`, (e) => e.length === expected.length, 15_000);
    await waitFor(`key 1's dead letters (${policy})`, async () => JSON.stringify((await letters(env)).map((l) => l.errorClass)) === JSON.stringify(expected), 15_000, 200);
    if (policy === 'continue') await waitFor('key 1\'s later change applied past its letter', async () => (await targetRow(db, 1))?.salary === 20000, 10_000, 50);
    assert.equal((await targetRow(db, 1))?.salary, policy === 'park' ? undefined : 20000, `${policy}: key 1 ${policy === 'park' ? 'held behind its letter' : 'applied past its letter'}`);
    await tunnel.stop();
  }
});

test('replay after a rule change applies the dead letters in order and releases the parked key', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const strict = path.join(db.home, 'strict.yaml');
  writeFileSync(strict, "tables:\n  - name: employees\n    rules:\n      - { name: salary-above-10000, column: salary, op: '>', value: 10000 }\n");
  const env = { ...db.env, PGTUNNEL_CONFIG: strict };
  const tunnel = await InProcessTunnel.start(t, env);
  await query(db.sourceUrl, "INSERT INTO employees VALUES (1, 'A', 'B', '2010-01-01', 'Oslo', 500)");
  await query(db.sourceUrl, 'UPDATE employees SET city = \'Bergen\' WHERE emp_id = 1');
  await query(db.sourceUrl, good(2));
  await tunnel.waitForEvents('pgtunnel:dead-lettered', 'two dead letters', (e) => e.length === 2, 15_000);
  await waitFor('two dead letters listed', async () => (await letters(env)).length === 2, 15_000, 200);

  const dry = await runCli(['dlq', 'replay', '--dry-run'], env);
  assert.match(dry.stdout, /would fail .*salary-above-10000/);
  assert.equal((await letters(env)).length, 2, 'a dry run changes nothing');

  // The rule changes: a salary of 500 is fine now.
  const relaxed = path.join(db.home, 'relaxed.yaml');
  writeFileSync(relaxed, "tables:\n  - name: employees\n    rules:\n      - { name: salary-positive, column: salary, op: '>', value: 0 }\n");
  const replay = await runCli(['dlq', 'replay'], { ...db.env, PGTUNNEL_CONFIG: relaxed });
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /2 of 2\s+applied/);
  assert.deepEqual(await query(db.targetUrl, 'SELECT salary, city FROM employees WHERE emp_id = 1'), [{ salary: 500, city: 'Bergen' }]);
  assert.deepEqual(await letters(env), [], 'replayed letters leave the DLQ listing');
  assert.equal((await letters(env, ['--all'])).length, 2, 'Kafka data is kept; resolution is tracked by offsets');
  // The tunnel restarts with the new rules; the key is released, its next change applies directly.
  await tunnel.stop();
  const relaxedTunnel = await InProcessTunnel.start(t, { ...db.env, PGTUNNEL_CONFIG: relaxed });
  await query(db.sourceUrl, 'UPDATE employees SET city = \'Tromsø\' WHERE emp_id = 1');
  await waitFor('the released key', async () => (await query<{ city: string }>(db.targetUrl, 'SELECT city FROM employees WHERE emp_id = 1'))[0]?.city === 'Tromsø', 10_000);
  assert.deepEqual(await letters(env), []);
  await relaxedTunnel.stop();
});

test('replay after a target fix; what still fails stays with its new reason and a higher attempt', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.targetUrl, 'ALTER TABLE employees ADD CONSTRAINT salary_cap CHECK (salary < 100000)');
  const tunnel = await InProcessTunnel.start(t, db.env);
  await query(db.sourceUrl, "INSERT INTO employees VALUES (1, 'Rich', 'A', '2010-01-01', 'Oslo', 500000), (2, 'Rich', 'B', '2010-01-01', 'Oslo', 600000)");
  await tunnel.waitForEvents('pgtunnel:dead-lettered', 'two target dead letters', (e) => e.filter((l) => l.errorClass === 'target').length === 2, 15_000);
  await waitFor('two target dead letters listed', async () => (await letters(db.env)).filter((l) => l.errorClass === 'target').length === 2, 15_000, 200);
  await query(db.targetUrl, 'ALTER TABLE employees DROP CONSTRAINT salary_cap; ALTER TABLE employees ADD CONSTRAINT salary_cap CHECK (salary < 550000)');
  const replay = await runCli(['dlq', 'replay'], db.env);
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /applied\s+key \{"emp_id":1\}/);
  assert.match(replay.stdout, /failed\s+key \{"emp_id":2\}.*salary_cap/);
  assert.deepEqual(await query(db.targetUrl, 'SELECT emp_id FROM employees ORDER BY 1'), [{ emp_id: 1 }]);
  const left = await letters(db.env);
  assert.equal(left.length, 1);
  assert.equal(left[0]!.key, '{"emp_id":2}');
  assert.equal(left[0]!.headers['pgtunnel.attempt'], '2');
  await tunnel.stop();
});
