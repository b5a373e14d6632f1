// A consumer written for Debezium reads pgtunnel's Avro topic unchanged: Debezium's own JDBC sink connector
// (on Kafka Connect, with Apicurio's Avro converter in the Confluent wire format) applies it into a third
// database, and `pgtunnel verify` finds that database equal to the source.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { employeesDdl } from '../../src/stack/demo.js';
import { apicurioAvroConverter, ConnectWorker } from '../../testkit/connect.js';
import { onCleanup, query, services, tunnelDatabases, uniqueName, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';
import { registryAnswers } from '../helpers/wireBytes.js';

// scripts/test.mjs starts the suite's registry beside the first files: wait until it answers
before(registryAnswers);

const home = path.resolve(process.env.PGTUNNEL_HOME ?? '.pgtunnel');
let connect: ConnectWorker | undefined;

before(async () => {
  connect = await ConnectWorker.start(home, path.join(home, 'test-connect'), services().brokers);
});
after(async () => {
  await connect?.stop();
});

function registryUrl(): string {
  const url = process.env.PGTUNNEL_TEST_REGISTRY_URL;
  if (!url) throw new Error('this test needs the test stack\'s schema registry: run it through scripts/test.mjs (it starts one for files named *debezium*)');
  return url;
}

// Types Debezium's sink maps to PostgreSQL columns, each as pgtunnel's Avro describes it (connect.name).
const typesDdl = `CREATE TABLE interop_types (
  id bigint PRIMARY KEY, amount numeric(12,2), ratio double precision, active boolean, born date,
  seen timestamp, seen_tz timestamptz, note text, ref uuid, small smallint)`;

const row = (i: number) => [i, `${i}.25`, i / 3, i % 2 === 0, `19${String(50 + (i % 50)).padStart(2, '0')}-0${1 + (i % 9)}-1${i % 9}`,
  `2026-11-26 01:02:03.${String(i).padStart(6, '0')}`, `2026-11-26 01:02:03.5+0${i % 9}`, `note ${i} ünïcødé`, `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, i % 100];

test('Debezium\'s JDBC sink applies pgtunnel\'s Avro topics (snapshot, inserts, updates, deletes, a key change) into a third database equal to the source', { timeout: 300_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  const s = services();
  const third = uniqueName('db3');
  await query(`${s.targetServer}/postgres`, `CREATE DATABASE ${third}`);
  onCleanup(t, () => query(`${s.targetServer}/postgres`, `DROP DATABASE IF EXISTS ${third} WITH (FORCE)`));
  const db3 = `${s.targetServer}/${third}`;
  for (const url of [db.sourceUrl, db.targetUrl, db3]) await query(url, typesDdl);
  await query(db3, employeesDdl);

  // rows before the tunnel starts arrive as snapshot reads (op r)
  await query(db.sourceUrl, `INSERT INTO employees (first_name, last_name, dob, city, salary)
    SELECT 'first' || i, 'last' || i, DATE '1970-01-01' + i, 'city' || i % 7, i * 100 FROM generate_series(1, 40) i`);
  for (let i = 1; i <= 20; i++) await query(db.sourceUrl, 'INSERT INTO interop_types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)', row(i));

  const env = { ...db.env, PGTUNNEL_TABLES: 'employees,interop_types', PGTUNNEL_REGISTRY_URL: registryUrl(), PGTUNNEL_FORMAT: 'avro' };
  await InProcessTunnel.start(t, env);

  const sink = `${db.topicPrefix}-jdbc-sink`;
  await connect!.addConnector(sink, {
    'connector.class': 'io.debezium.connector.jdbc.JdbcSinkConnector',
    'connection.url': `jdbc:postgresql://${new URL(db3).host}/${third}`,
    'connection.username': 'postgres',
    'connection.password': process.env.PGPASSWORD ?? '', // the test stack asks for one (testkit/testStack.ts exports it)
    topics: `${db.topicPrefix}.public.employees,${db.topicPrefix}.public.interop_types`,
    'insert.mode': 'upsert',
    'delete.enabled': true,
    'primary.key.mode': 'record_key',
    'schema.evolution': 'none',
    // the topic's last part is the table name
    'collection.name.format': '${source.table}',
    'consumer.override.auto.offset.reset': 'earliest',
    // Confluent's AvroConverter is not on Maven Central; Apicurio's reads the same wire format
    ...apicurioAvroConverter('key', registryUrl()),
    ...apicurioAvroConverter('value', registryUrl()),
  });
  onCleanup(t, () => connect!.removeConnector(sink).catch(() => {}));

  // streaming changes of every kind
  await query(db.sourceUrl, "INSERT INTO employees (first_name, last_name, dob, city, salary) VALUES ('new', 'hire', '2000-02-29', NULL, 1)");
  await query(db.sourceUrl, "UPDATE employees SET city = 'moved', salary = salary + 1 WHERE emp_id % 5 = 0");
  await query(db.sourceUrl, 'DELETE FROM employees WHERE emp_id IN (3, 4, 7)');
  await query(db.sourceUrl, 'UPDATE employees SET emp_id = 1000 WHERE emp_id = 8');
  for (let i = 21; i <= 25; i++) await query(db.sourceUrl, 'INSERT INTO interop_types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)', row(i));
  await query(db.sourceUrl, "UPDATE interop_types SET amount = -amount, note = NULL, seen_tz = seen_tz + interval '1 day' WHERE id % 4 = 0");
  await query(db.sourceUrl, 'DELETE FROM interop_types WHERE id IN (2, 22)');

  const verify = { ...env, PGTUNNEL_TARGET_URL: db3 };
  let last = '';
  await waitFor('the third database equal to the source (pgtunnel verify)', async () => {
    const trace = await connect!.failure(sink);
    if (trace) throw new Error(`Debezium's JDBC sink failed: ${trace.slice(0, 4000)}`);
    const result = await runCli(['verify'], verify);
    last = result.stdout;
    return result.code === 0;
  }, 180_000, 500).catch((err: Error) => {
    throw new Error(`${err.message}\nlast verify output:\n${last}`);
  });
  assert.match(last, /employees: equal \(38 rows\)/);
  assert.match(last, /interop_types: equal \(23 rows\)/);
  assert.deepEqual(await query(db3, 'SELECT emp_id FROM employees WHERE emp_id IN (3, 4, 7, 8, 1000) ORDER BY 1'), [{ emp_id: 1000 }]);
});
