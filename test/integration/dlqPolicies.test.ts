// Dead-letter order policies and replays (no time bound: they share the machine; dlq.test.ts holds the < 1 s promise).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { goodEmployee as good, letters, targetRow } from '../helpers/deadLetterList.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { query, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli } from '../helpers/tunnelProcess.js';

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
