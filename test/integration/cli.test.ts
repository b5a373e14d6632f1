import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { query, services, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';

test('--help lists every command and each command has an example', async () => {
  const help = await runCli(['--help']);
  assert.equal(help.code, 0);
  for (const command of ['run', 'install', 'uninstall', 'snapshot', 'status', 'verify', 'stack']) assert.match(help.stdout, new RegExp(`\\n  ${command}\\b`));
  assert.match(help.stdout, /Exit codes: 0 ok, 1 verify/);
  const status = await runCli(['status', '--help']);
  assert.match(status.stdout, /--json/);
  assert.match(status.stdout, /Example:/);
});

test('an unknown command or flag is a usage error with a suggestion', async () => {
  const unknown = await runCli(['stauts']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /Did you mean status\?/);
  const flag = await runCli(['status', '--jsno']);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /Did you mean --json\?/);
});

test('configuration errors are all reported at once and exit 2', async () => {
  const result = await runCli(['status'], { PGTUNNEL_SOURCE_URL: 'mysql://x', PGTUNNEL_PARTITIONS: 'many' });
  assert.equal(result.code, 2);
  assert.match(result.stderr, /sourceUrl: must be a URL/);
  assert.match(result.stderr, /partitions: Expected number/);
  assert.match(result.stderr, /must be given together/);
});

test('an unreachable database or broker exits 3 and names the service and the fix', async (t) => {
  const db = await tunnelDatabases(t);
  const noDb = await runCli(['install'], { ...db.env, PGTUNNEL_SOURCE_URL: 'postgres://app:secret@127.0.0.1:1/db1' });
  assert.equal(noDb.code, 3);
  assert.match(noDb.stderr, /cannot connect to the source database postgres:\/\/app:\*\*\*@127\.0\.0\.1:1\/db1/);
  assert.match(noDb.stderr, /fix: start PostgreSQL there, or fix PGTUNNEL_SOURCE_URL/);
  assert.doesNotMatch(noDb.stderr, /secret/);
  const noBroker = await runCli(['install'], { ...db.env, PGTUNNEL_KAFKA_BROKERS: '127.0.0.1:1' });
  assert.equal(noBroker.code, 3);
  assert.match(noBroker.stderr, /cannot reach Kafka at 127\.0\.0\.1:1/);
  assert.match(noBroker.stderr, /fix: start the broker/);
});

test('a missing table on either side and a table without a primary key are clear errors', async (t) => {
  const db = await tunnelDatabases(t);
  const missing = await runCli(['install'], { ...db.env, PGTUNNEL_TABLES: 'nosuch' });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /table public\.nosuch does not exist in the source database/);
  await query(db.targetUrl, 'DROP TABLE employees');
  const targetMissing = await runCli(['install'], { ...db.env, PGTUNNEL_AUTO_CREATE: 'false' });
  assert.equal(targetMissing.code, 2);
  assert.match(targetMissing.stderr, /does not exist in the target database/);
  const created = await runCli(['install'], db.env);
  assert.equal(created.code, 0, 'autoCreate (the default) creates the missing target table');
  assert.equal((await query(db.targetUrl, "SELECT to_regclass('employees')::text AS t"))[0]!.t, 'employees');
  await query(db.sourceUrl, 'CREATE TABLE nokey (a int, b text)');
  const noKey = await runCli(['install'], { ...db.env, PGTUNNEL_TABLES: 'nokey' });
  assert.equal(noKey.code, 2);
  assert.match(noKey.stderr, /has no primary key in the source database, and no key is configured/);
  assert.match(noKey.stderr, /fix: add a primary key/);
});

test('a read-only source or target (a standby, or default_transaction_read_only) is a clear error before anything is installed', async (t) => {
  const db = await tunnelDatabases(t);
  // each database's setting is changed from the server's postgres database (a read-only one cannot reset itself)
  const readOnly = (url: string, on: boolean) => query(`${url.slice(0, url.lastIndexOf('/'))}/postgres`, `ALTER DATABASE ${url.slice(url.lastIndexOf('/') + 1)} ${on ? 'SET default_transaction_read_only = on' : 'RESET default_transaction_read_only'}`);
  await readOnly(db.targetUrl, true);
  const target = await runCli(['install'], db.env);
  assert.equal(target.code, 2);
  assert.match(target.stderr, /the target database \S+ is read-only for this role \(default_transaction_read_only = on\)/);
  assert.match(target.stderr, /fix: ALTER ROLE … SET default_transaction_read_only = off/);
  assert.equal((await query(db.sourceUrl, "SELECT to_regnamespace('pgtunnel')::text AS s"))[0]!.s, null, 'nothing installed in the source');
  await readOnly(db.targetUrl, false);
  await readOnly(db.sourceUrl, true);
  const source = await runCli(['install'], db.env);
  assert.equal(source.code, 2);
  assert.match(source.stderr, /the source database \S+ is read-only for this role/);
  await readOnly(db.sourceUrl, false);
  assert.equal((await runCli(['install'], db.env)).code, 0, 'installs once the source is writable');
});

test('status names a configured table that is missing or not installed, with the fix, and exits 2', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const notInstalled = await runCli(['status'], db.env);
  assert.equal(notInstalled.code, 2, notInstalled.stdout + notInstalled.stderr);
  assert.match(notInstalled.stdout, /^phase: not installed/);
  assert.match(notInstalled.stdout, /problem: table public\.employees is configured but capture is not installed for it in the source\n  fix: run `pgtunnel install`/);
  assert.equal((await runCli(['install'], db.env)).code, 0);
  const missing = await runCli(['status', '--json'], { ...db.env, PGTUNNEL_TABLES: 'employees,nosuch' });
  assert.equal(missing.code, 2, missing.stdout + missing.stderr);
  const report = JSON.parse(missing.stdout) as { phase: string; problems: string[]; tables: { table: string }[] };
  assert.equal(report.phase, 'not installed');
  assert.deepEqual(report.tables.map((x) => x.table), ['public.employees'], 'the installed table is still reported');
  assert.equal(report.problems.length, 1);
  assert.match(report.problems[0]!, /table public\.nosuch is configured but does not exist in the source database\n  fix: create it in the source, or remove public\.nosuch from tables/);
  const installed = await runCli(['status'], db.env);
  assert.equal(installed.code, 0, installed.stdout + installed.stderr);
  assert.match(installed.stdout, /^phase: snapshot/);
  assert.doesNotMatch(installed.stdout, /problem:/);
});

test('npx pgtunnel under the system node prints its output and no npm engine warning', { timeout: 120_000 }, (t) => {
  // As a user types it: the system's node and npx first on PATH, not the pinned node the tests run under.
  const pinned = path.dirname(process.execPath);
  const PATH = (process.env.PATH ?? '').split(path.delimiter).filter((d) => d && d !== pinned).join(path.delimiter);
  if (!PATH.split(path.delimiter).some((d) => spawnSync('test', ['-x', path.join(d, 'npx')]).status === 0)) return t.skip('no npx on the system PATH');
  // npm checks engines when npx first links the project into its cache: a fresh cache, as on a new clone.
  const cache = mkdtempSync(path.join(tmpdir(), 'npm-cache-'));
  t.after(() => rmSync(cache, { recursive: true, force: true }));
  const env: NodeJS.ProcessEnv = { ...process.env, PATH, npm_config_cache: cache };
  delete env.PGTUNNEL_HOME;
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const result = spawnSync('npx', ['--no-install', 'pgtunnel', '--version'], { cwd: root, env, encoding: 'utf8' });
  assert.equal(result.status, 0, result.stdout + result.stderr);
  assert.doesNotMatch(result.stderr, /EBADENGINE|Unsupported engine/);
  assert.match(result.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('a poisoned message goes to the DLQ with its reason and the tunnel keeps streaming', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const tunnel = await TunnelProcess.start(t, db.env);
  const topic = `${db.topicPrefix}.public.employees`;
  const brokers = [services().brokers];
  const producer = new Producer({ clientId: 'poisoner', bootstrapBrokers: brokers, serializers: stringSerializers });
  await producer.send({ messages: [{ topic, key: '{"emp_id":1}', value: 'this is not json' }, { topic, key: '{"emp_id":2}', value: '{"op":"z"}' }] });
  await producer.close();
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name) VALUES (3, 'after the poison')");
  await waitFor('the good change after the poison', async () => (await query(db.targetUrl, 'SELECT 1 FROM employees WHERE emp_id = 3')).length === 1, 10_000);

  const consumer = new Consumer({ clientId: 'dlq-reader', groupId: `${db.topicPrefix}-dlq-reader`, bootstrapBrokers: brokers, deserializers: stringDeserializers });
  t.after(() => consumer.close(true));
  const stream = await consumer.consume({ topics: [`${topic}.dlq`], mode: 'earliest', maxWaitTime: 200 });
  const letters: { value: string; reason: string; cls: string }[] = [];
  for await (const m of stream) {
    letters.push({ value: String(m.value), reason: String(m.headers.get('pgtunnel.error.message')), cls: String(m.headers.get('pgtunnel.error.class')) });
    if (letters.length === 2) break;
  }
  assert.deepEqual(letters.map((l) => [l.value, l.cls]), [['this is not json', 'poison'], ['{"op":"z"}', 'poison']]);
  assert.match(letters[0]!.reason, /not a valid envelope/);
  assert.match(letters[1]!.reason, /unknown op/);
  await tunnel.stop();
});

test('verify finds a tampered, a missing and an extra target row and exits 1', { timeout: 60_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, i FROM generate_series(1, 5000) i");
  await query(db.targetUrl, "INSERT INTO employees (first_name, salary) SELECT 'n' || i, i FROM generate_series(1, 5000) i");
  const equal = await runCli(['verify'], db.env);
  assert.equal(equal.code, 0, equal.stderr);
  await query(db.targetUrl, 'UPDATE employees SET salary = -1 WHERE emp_id = 4321');
  await query(db.targetUrl, 'DELETE FROM employees WHERE emp_id = 17');
  await query(db.targetUrl, "INSERT INTO employees (emp_id, first_name) VALUES (99999, 'extra')");
  const diff = await runCli(['verify'], db.env);
  assert.equal(diff.code, 1);
  assert.match(diff.stdout, /DIFFERENT — source 5000 rows, target 5000 rows/);
  const keys = diff.stdout.split('\n').filter((l) => l.startsWith('  {')).map((l) => l.trim());
  assert.deepEqual(keys, ['{"emp_id": 17}', '{"emp_id": 4321}', '{"emp_id": 99999}']);
});
