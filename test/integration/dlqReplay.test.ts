import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { Admin } from '@platformatic/kafka';
import { deadLetterMessage } from '../../src/validate/deadLetters.js';
import { EnvelopeProducer, endOffsets } from '../../src/transport/kafka.js';
import { onCleanup, query, services, tunnelDatabases, waitFor, type TunnelEnv } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';

interface Letter {
  errorClass: string;
  key: string;
  attempt: number;
  resolved?: string;
  original: { topic: string; partition: number; offset: string };
}

async function letters(env: Record<string, string>, args: string[] = []): Promise<Letter[]> {
  const result = await runCli(['dlq', 'list', '--json', ...args], env);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
}

/** A config file in the test's home: employees with one salary rule and the given order policy. */
function rulesConfig(db: TunnelEnv, name: string, minSalary: number, orderPolicy: 'park' | 'continue' = 'park'): Record<string, string> {
  const file = path.join(db.home, `${name}.yaml`);
  writeFileSync(file, `tables:\n  - name: employees\n    orderPolicy: ${orderPolicy}\n    rules:\n      - { name: salary-above-${minSalary}, column: salary, op: '>', value: ${minSalary} }\n`);
  return { ...db.env, PGTUNNEL_CONFIG: file };
}

const salary = async (db: TunnelEnv, id: number) => (await query<{ salary: number }>(db.targetUrl, 'SELECT salary FROM employees WHERE emp_id = $1', [id]))[0]?.salary;

async function prefixTopics(prefix: string): Promise<string[]> {
  const admin = new Admin({ clientId: 'test', bootstrapBrokers: [services().brokers] });
  try {
    return (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`));
  } finally {
    await admin.close();
  }
}

test('a re-queued letter keeps its original place: the older change never lands after the newer one', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const strict = rulesConfig(db, 'strict', 10000);
  const tunnel = await InProcessTunnel.start(t, strict);
  await query(db.sourceUrl, "INSERT INTO employees VALUES (1, 'A', 'B', '2010-01-01', 'Oslo', 5000)");
  await query(db.sourceUrl, 'UPDATE employees SET salary = 20000 WHERE emp_id = 1');
  await tunnel.waitForEvents('pgtunnel:dead-lettered', 'a rule letter and a parked one', (e) => e.length === 2, 15_000);
  const [first] = await waitFor('both letters listed', async () => {
    const l = await letters(strict);
    return l.length === 2 ? l.filter((x) => x.errorClass === 'rule') : undefined;
  }, 15_000, 200);

  // Still failing: the rule letter goes back to the DLQ, behind the parked letter in DLQ order.
  const failed = await runCli(['dlq', 'replay'], strict);
  assert.equal(failed.code, 0, failed.stderr);
  assert.match(failed.stdout, /failed\s+key \{"emp_id":1\}/);
  assert.match(failed.stdout, /kept\s+key \{"emp_id":1\} \(parked\) — waits behind/);
  const requeued = (await letters(strict)).find((l) => l.errorClass === 'rule')!;
  assert.deepEqual(requeued.original, first!.original, 'the re-queued letter carries its original topic, partition and offset');
  assert.equal(requeued.attempt, 2);

  const relaxed = rulesConfig(db, 'relaxed', 0);
  const replay = await runCli(['dlq', 'replay'], relaxed);
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /applied\s+key \{"emp_id":1\} \(rule[^\n]*\n\s*applied\s+key \{"emp_id":1\} \(parked\)/, 'the older change first');
  assert.equal(await salary(db, 1), 20000, 'the target ends with the newest change, as the source');
  assert.deepEqual(await tunnel.differences(), [], 'the target equal to the source');
  assert.deepEqual(await letters(relaxed), []);
  assert.deepEqual((await letters(relaxed, ['--all'])).map((l) => l.resolved).sort(), ['applied', 'applied', 'requeued']);
  await tunnel.stop();
});

test('a letter older than the row in the target is superseded, not applied; a dry run writes nothing', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const strict = rulesConfig(db, 'strict', 10000, 'continue');
  const tunnel = await InProcessTunnel.start(t, strict);
  // Key 1: a letter at offset n, then a good change applied after it. Key 2: a letter and nothing newer.
  await query(db.sourceUrl, "INSERT INTO employees VALUES (1, 'A', 'B', '2010-01-01', 'Oslo', 500), (2, 'C', 'D', '2010-01-01', 'Oslo', 700)");
  await query(db.sourceUrl, 'UPDATE employees SET salary = 20000 WHERE emp_id = 1');
  await waitFor('the good change of key 1', async () => (await salary(db, 1)) === 20000, 15_000);
  await tunnel.waitForEvents('pgtunnel:dead-lettered', 'two letters', (e) => e.length === 2, 15_000);
  await waitFor('two letters listed', async () => (await letters(strict)).length === 2, 15_000, 200);
  await tunnel.stop();

  const relaxed = rulesConfig(db, 'relaxed', 0, 'continue');
  const snapshot = async () => ({
    dlq: [...(await endOffsets({ kafkaBrokers: [services().brokers] }, [`${db.topicPrefix}.public.employees.dlq`])).values()].map((o) => o.map(String)),
    resolved: await query(db.targetUrl, 'SELECT * FROM pgtunnel.dlq_resolved'),
    lettered: await query(db.targetUrl, 'SELECT topic, key, partition, dead_letters, applied_offset::text FROM pgtunnel.lettered_keys ORDER BY key'),
    rows: await query(db.targetUrl, 'SELECT * FROM employees ORDER BY emp_id'),
  });
  const before = await snapshot();
  assert.equal(before.lettered.length, 2, 'the consumer tracks the keys with letters');
  const dry = await runCli(['dlq', 'replay', '--dry-run'], relaxed);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /would supersede\s+key \{"emp_id":1\}/);
  assert.match(dry.stdout, /would apply\s+key \{"emp_id":2\}/);
  assert.deepEqual(await snapshot(), before, 'a dry run writes nothing to Kafka or the target');
  const strictDry = await runCli(['dlq', 'replay', '--dry-run'], strict);
  assert.match(strictDry.stdout, /would fail\s+key \{"emp_id":2\}/);
  assert.deepEqual(await snapshot(), before, 'a failing dry run re-queues nothing');

  const replay = await runCli(['dlq', 'replay'], relaxed);
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /superseded\s+key \{"emp_id":1\}/);
  assert.match(replay.stdout, /applied\s+key \{"emp_id":2\}/);
  assert.equal(await salary(db, 1), 20000, 'the newer change stays');
  assert.equal(await salary(db, 2), 700);
  assert.deepEqual(await tunnel.differences(), [], 'the target equal to the source');
  assert.deepEqual((await letters(relaxed, ['--all'])).map((l) => `${l.key} ${l.resolved}`).sort(), ['{"emp_id":1} superseded', '{"emp_id":2} applied']);
  assert.deepEqual(await query(db.targetUrl, 'SELECT * FROM pgtunnel.lettered_keys'), [], 'resolved keys leave the guard table');
});

test('dlq discard resolves letters without applying them and releases a parked key', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const strict = rulesConfig(db, 'strict', 10000);
  const tunnel = await InProcessTunnel.start(t, strict);
  await query(db.sourceUrl, "INSERT INTO employees VALUES (1, 'A', 'B', '2010-01-01', 'Oslo', 500), (2, 'C', 'D', '2010-01-01', 'Oslo', 700)");
  await query(db.sourceUrl, "UPDATE employees SET city = 'Bergen' WHERE emp_id = 1");
  await tunnel.waitForEvents('pgtunnel:dead-lettered', 'three letters', (e) => e.length === 3, 15_000);
  await waitFor('three letters listed', async () => (await letters(strict)).length === 3, 15_000, 200);

  const unnamed = await runCli(['dlq', 'discard'], strict);
  assert.equal(unnamed.code, 2);
  assert.match(unnamed.stderr, /--all/);
  const discard = await runCli(['dlq', 'discard', '--key', '1'], strict);
  assert.equal(discard.code, 0, discard.stderr);
  assert.match(discard.stdout, /2 dead letter\(s\) discarded/);
  assert.equal(await salary(db, 1), undefined, 'nothing was applied');
  assert.deepEqual((await letters(strict)).map((l) => l.key), ['{"emp_id":2}']);
  assert.deepEqual((await letters(strict, ['--all', '--key', '1'])).map((l) => l.resolved), ['discarded', 'discarded']);
  const listed = await runCli(['dlq', 'list', '--all'], strict);
  assert.match(listed.stdout, /\[discarded\]/);
  // The key is released: its next change applies at once.
  await query(db.sourceUrl, 'UPDATE employees SET salary = 30000 WHERE emp_id = 1');
  await waitFor('the released key applied', async () => (await salary(db, 1)) === 30000, 15_000);
  await tunnel.stop();
});

test('a dry run on a fresh database and topic prefix installs nothing and creates no topic', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const dry = await runCli(['dlq', 'replay', '--dry-run'], db.env);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /no dead letters to replay/);
  assert.equal((await runCli(['dlq', 'list'], db.env)).code, 0);
  for (const url of [db.sourceUrl, db.targetUrl]) {
    assert.deepEqual(await query(url, "SELECT nspname FROM pg_namespace WHERE nspname = 'pgtunnel'"), [], url);
    assert.deepEqual(await query(url, "SELECT relname FROM pg_class WHERE relname LIKE '%_cdc'"), [], url);
  }
  assert.deepEqual(await prefixTopics(db.topicPrefix), []);
});

test('--table is a filter no header can override; a letter naming another table is not applied', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  for (const url of [db.sourceUrl, db.targetUrl]) await query(url, 'CREATE TABLE other (LIKE employees INCLUDING ALL)');
  const file = path.join(db.home, 'two.yaml');
  writeFileSync(file, 'tables:\n  - name: employees\n  - name: other\n');
  const env = { ...db.env, PGTUNNEL_CONFIG: file };
  assert.equal((await runCli(['install'], env)).code, 0);
  const employees = `${db.topicPrefix}.public.employees`;
  const row = { emp_id: 42, first_name: 'Forged', last_name: 'Header', dob: '2010-01-01', city: 'Oslo', salary: 20000 };
  const value = JSON.stringify({ op: 'c', before: null, after: row, source: { version: '0', connector: 'pgtunnel', name: 'x', ts_ms: 0, snapshot: 'false', db: 'x', schema: 'public', table: 'other', txId: 1, lsn: 1 }, ts_ms: 0 });
  const producer = new EnvelopeProducer({ kafkaBrokers: [services().brokers] }, 'forger');
  onCleanup(t, () => producer.close());
  await producer.publish([deadLetterMessage({
    record: { topic: employees, partition: 0, offset: 0n, key: '{"emp_id":42}', value },
    letter: { errorClass: 'rule', rule: 'r', message: 'forged' },
    original: { topic: `${db.topicPrefix}.public.other`, partition: 0, offset: '0' },
  })]);
  for (const args of [['--table', 'employees'], []]) {
    const replay = await runCli(['dlq', 'replay', ...args], env);
    assert.equal(replay.code, 0, replay.stderr);
    assert.match(replay.stdout, /kept\s+key \{"emp_id":42\} \(rule r\) — its headers name [^ ]+\.public\.other/, args.join(' '));
    for (const table of ['employees', 'other']) assert.deepEqual(await query(db.targetUrl, `SELECT emp_id FROM ${table}`), [], table);
  }
  const unknown = await runCli(['dlq', 'replay', '--table', 'nope'], env);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /not a configured table/);
});

test('concurrent replays are serialised: a second one exits with a clear message', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  assert.equal((await runCli(['install'], db.env)).code, 0);
  // Hold the replay lock as a running replay does, from another session of the same target database.
  const holder = new pg.Client({ connectionString: db.targetUrl });
  await holder.connect();
  onCleanup(t, () => holder.end());
  await holder.query("SELECT pg_advisory_lock(hashtext('pgtunnel.dlq-replay'))");
  for (const args of [['replay'], ['discard', '--all']]) {
    const busy = await runCli(['dlq', ...args], db.env);
    assert.equal(busy.code, 4, busy.stderr);
    assert.match(busy.stderr, /another `pgtunnel dlq replay` or `dlq discard` is running against this target/);
  }
  const dry = await runCli(['dlq', 'replay', '--dry-run'], db.env);
  assert.equal(dry.code, 0, 'a dry run only reads, so it does not wait for the lock');
  await holder.query("SELECT pg_advisory_unlock(hashtext('pgtunnel.dlq-replay'))");
  const free = await runCli(['dlq', 'replay'], db.env);
  assert.equal(free.code, 0, free.stderr);
});
