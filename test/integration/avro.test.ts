import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Consumer } from '@platformatic/kafka';
import { SchemaRegistry } from '../../src/contracts/registry.js';
import { RecordDecoder } from '../../src/contracts/recordDecoder.js';
import { decodeEnvelope } from '../../src/transport/envelope.js';
import { query, services, tunnelDatabases, waitFor } from '../helpers/services.js';
import { runCli, TunnelProcess } from '../helpers/tunnelProcess.js';
import { families, runFamily } from '../helpers/typeFamilies.js';

/** The test stack starts Apicurio for this file (its name says avro) and exports where it is. */
function registryUrl(): string {
  const url = process.env.PGTUNNEL_TEST_REGISTRY_URL;
  assert.ok(url, 'the test stack exports PGTUNNEL_TEST_REGISTRY_URL for avro tests');
  return url;
}

/**
 * Timestamps after 294247-01-10 have no microseconds-since-1970 long: in Avro they are dead letters (unit
 * tested), so the time family moves its last timestamp into range; every other value is the same as in JSON.
 */
const avroFamilies = families.map((f) => (f.name === 'time' ? { ...f, rows: f.rows.map((r) => r.replace("'294276-12-31 23:59:59.999999'", "'294246-12-31 23:59:59.999999'")) } : f));

for (const format of ['avro', 'json-schema'] as const) {
  for (const f of format === 'avro' ? avroFamilies : families) {
    test(`${format}: every value exact: ${f.name} (snapshot, then streamed updates, through the registry)`, { timeout: 150_000 }, (t) =>
      runFamily(t, f, { PGTUNNEL_FORMAT: format, PGTUNNEL_REGISTRY_URL: registryUrl() }));
  }
}

/** The first record of a topic, decoded by its schema id the way the consumer does. */
async function firstRecord(topic: string, registry: SchemaRegistry): Promise<{ key?: string; value?: string; raw: Buffer }> {
  const consumer = new Consumer({ clientId: 'avro-test', groupId: `avro-test-${Date.now()}`, bootstrapBrokers: [services().brokers] });
  try {
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', maxWaitTime: 200 });
    for await (const m of stream) {
      const d = await new RecordDecoder(registry).decode(m.key as Buffer, m.value as Buffer);
      await stream.close();
      assert.ok(!('poison' in d), JSON.stringify(d));
      return { key: d.key, value: d.value, raw: m.value as Buffer };
    }
    throw new Error('no record');
  } finally {
    await consumer.close(true);
  }
}

test('avro: a source column added is a new registered version; a change BACKWARD refuses stops only its table', { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, 'CREATE TABLE items (id integer PRIMARY KEY, name text)');
  const env = { ...db.env, PGTUNNEL_TABLES: 'employees,items', PGTUNNEL_FORMAT: 'avro', PGTUNNEL_REGISTRY_URL: registryUrl() };
  const registry = new SchemaRegistry({ url: registryUrl() });
  const topic = `${db.topicPrefix}.public.employees`;
  const subject = `${topic}-value`;
  await query(db.sourceUrl, "INSERT INTO employees (first_name, city, salary) VALUES ('Ada', 'London', 1)");
  const tunnel = await TunnelProcess.start(t, env);
  const count = async (table: string, where = 'true') => Number((await query<{ n: string }>(db.targetUrl, `SELECT count(*) AS n FROM ${table} WHERE ${where}`))[0]!.n);
  await waitFor('the snapshot row in the target', async () => (await count('employees')) === 1);

  // what other consumers see: the wire format, Debezium's envelope, the registered subjects
  const first = await firstRecord(topic, registry);
  assert.equal(first.raw[0], 0, 'magic byte');
  const e = decodeEnvelope(first.key, first.value!, ['emp_id']);
  assert.equal(e.op, 'r');
  assert.equal(e.source.connector, 'pgtunnel');
  assert.equal(e.source.snapshot, 'last');
  assert.deepEqual(await registry.versions(subject), [1]);
  assert.deepEqual(await registry.versions(`${topic}-key`), [1]);
  assert.equal(await registry.compatibility(subject), 'BACKWARD');

  await query(db.sourceUrl, 'ALTER TABLE employees ADD COLUMN email text NOT NULL DEFAULT \'\'');
  await query(db.sourceUrl, "INSERT INTO employees (first_name, email) VALUES ('Grace', 'g@h.i')");
  await waitFor('the new column\'s value in the target', async () => (await count('employees', "first_name = 'Grace'")) === 1 && (await query<{ email: string }>(db.targetUrl, "SELECT email FROM employees WHERE first_name = 'Grace'"))[0]?.email === 'g@h.i');
  assert.deepEqual(await registry.versions(subject), [1, 2], 'ADD COLUMN registered a second version');
  assert.match((await registry.latest(subject))!.schema, /"email"/);

  // string → int: no Avro reader of int reads the old strings, so BACKWARD refuses it
  await query(db.sourceUrl, 'ALTER TABLE employees ALTER COLUMN city TYPE integer USING length(city)');
  await query(db.sourceUrl, "INSERT INTO employees (first_name, city) VALUES ('Refused', 7)");
  const status = await waitFor('status saying the employees producer stopped', async () => {
    const s = await runCli(['status'], env);
    return /publishing stopped/.test(s.stdout) ? s.stdout : undefined;
  }, 30_000, 250);
  assert.match(status, /employees/);
  assert.match(status, /fix:/);
  assert.deepEqual(await registry.versions(subject), [1, 2], 'the refused schema is not registered');

  // the other table goes on
  await query(db.sourceUrl, "INSERT INTO items VALUES (1, 'still streaming')");
  await waitFor('a row of the other table in the target', async () => (await count('items')) === 1);
  assert.equal(await count('employees', "first_name = 'Refused'"), 0, 'the refused table published nothing after the change');
  assert.equal(tunnel.child.exitCode, null, 'the tunnel keeps running');
  await tunnel.stop();
});
