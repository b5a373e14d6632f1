import assert from 'node:assert/strict';
import { before, test, type TestContext } from 'node:test';
import { Consumer, Producer } from '@platformatic/kafka';
import { SchemaRegistry } from '../../src/contracts/registry.js';
import { RecordDecoder } from '../../src/contracts/recordDecoder.js';
import { decodeEnvelope } from '../../src/contracts/envelope.js';
import { query, services, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';
import { families, runFamily } from '../helpers/typeFamilies.js';
import { registryAnswers } from '../helpers/wireBytes.js';

// scripts/test.mjs starts the suite's registry beside the first files: wait until it answers
before(registryAnswers);

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

/** The records of a topic as bytes, up to `count`. */
async function rawRecords(topic: string, count: number): Promise<{ key?: Buffer; value?: Buffer }[]> {
  const consumer = new Consumer({ clientId: 'avro-test', groupId: `avro-test-${Date.now()}`, bootstrapBrokers: [services().brokers] });
  const out: { key?: Buffer; value?: Buffer }[] = [];
  try {
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', maxWaitTime: 200 });
    for await (const m of stream) {
      out.push({ key: (m.key as Buffer | undefined) ?? undefined, value: (m.value as Buffer | undefined) ?? undefined });
      if (out.length >= count) break;
    }
    await stream.close();
    return out;
  } finally {
    await consumer.close(true);
  }
}

/** The first record of a topic, decoded by its schema id the way the consumer does. */
async function firstRecord(topic: string, registry: SchemaRegistry): Promise<{ key?: string; value?: string; raw: Buffer }> {
  const [m] = await rawRecords(topic, 1);
  const d = await new RecordDecoder(registry).decode(topic, m!.key, m!.value);
  assert.ok(!('poison' in d), JSON.stringify(d));
  return { key: d.key, value: d.value, raw: m!.value! };
}

for (const capture of ['trigger', 'logical'] as const) {
  test(`${capture === 'logical' ? 'capture: logical, ' : ''}avro: a source column added is a new registered version; a change BACKWARD refuses stops only its table`, { timeout: 240_000 }, (t) => avroVersions(t, capture));
}

async function avroVersions(t: TestContext, capture: 'trigger' | 'logical'): Promise<void> {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, 'CREATE TABLE items (id integer PRIMARY KEY, name text)');
  const env = { ...db.env, PGTUNNEL_TABLES: 'employees,items', PGTUNNEL_FORMAT: 'avro', PGTUNNEL_REGISTRY_URL: registryUrl(), PGTUNNEL_CAPTURE: capture };
  const registry = new SchemaRegistry({ url: registryUrl() });
  const topic = `${db.topicPrefix}.public.employees`;
  const subject = `${topic}-value`;
  await query(db.sourceUrl, "INSERT INTO employees (first_name, city, salary) VALUES ('Ada', 'London', 1)");
  const tunnel = await InProcessTunnel.start(t, env);
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
  assert.match(status, /producer public\.employees: degraded — publishing stopped: the schema registry refused the new schema of \S+employees-value/);
  assert.match(tunnel.logLines.join('\n'), /producer of public\.employees stopped[^\n]*fix:/, 'the log names the fix');
  assert.deepEqual(await registry.versions(subject), [1, 2], 'the refused schema is not registered');

  // the other table goes on
  await query(db.sourceUrl, "INSERT INTO items VALUES (1, 'still streaming')");
  await waitFor('a row of the other table in the target', async () => (await count('items')) === 1);
  assert.equal(await count('employees', "first_name = 'Refused'"), 0, 'the refused table published nothing after the change');
  assert.equal(tunnel.ended(), false, 'the tunnel keeps running');
  await tunnel.stop();
}

test('avro: dead letters keep the original bytes and dlq list reads them through the registry; unreadable records are poison', { timeout: 120_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.targetUrl, 'ALTER TABLE employees ADD CONSTRAINT small_salary CHECK (salary < 1000000)');
  const env = { ...db.env, PGTUNNEL_FORMAT: 'avro', PGTUNNEL_REGISTRY_URL: registryUrl() };
  const tunnel = await InProcessTunnel.start(t, env);
  const topic = `${db.topicPrefix}.public.employees`;
  await query(db.sourceUrl, "INSERT INTO employees (first_name, salary) VALUES ('Rich', 2000000)");
  // forged: the magic byte with an id no registry has
  const producer = new Producer({ clientId: 'forger', bootstrapBrokers: [services().brokers] });
  await producer.send({ messages: [{ topic, partition: 0, key: Buffer.from('{"emp_id":424242}'), value: Buffer.from([0, 0, 0x0f, 0x42, 0x3f, 1, 2, 3]) }] });
  await producer.close();
  type Letter = { errorClass: string; message: string; value?: string; headers: Record<string, string> };
  await tunnel.waitForEvents('pgtunnel:dead-lettered', 'two dead letters', (e) => e.length === 2, 30_000);
  const letters = await waitFor('two dead letters listed', async () => {
    const l = JSON.parse((await runCli(['dlq', 'list', '--json'], env)).stdout) as Letter[];
    return l.length === 2 ? l : undefined;
  }, 30_000, 250);
  const refused = letters.find((l) => l.errorClass === 'target')!;
  assert.ok(refused, JSON.stringify(letters));
  assert.match(refused.value!, /"after":\{"emp_id":\d+,"first_name":"Rich"/, 'dlq list shows the Avro letter decoded');
  assert.equal(refused.headers['pgtunnel.original.format'], 'avro');
  const forged = letters.find((l) => l.errorClass === 'poison')!;
  assert.match(forged.message, /schema id 999999 is not registered under \S+employees-value/);
  const raw = await rawRecords(`${topic}.dlq`, 2);
  assert.ok(raw.every((r) => r.value![0] === 0), 'the letters keep the original wire-format bytes');
  assert.ok(raw.some((r) => r.value!.equals(Buffer.from([0, 0, 0x0f, 0x42, 0x3f, 1, 2, 3]))));
  await tunnel.stop();
});

// logical capture: pgoutput's relation message after the DDL registers the new version
for (const capture of ['trigger', 'logical'] as const) {
  test(`${capture === 'logical' ? 'capture: logical, ' : ''}json-schema: a source column added is a new compatible version, and its values arrive`, { timeout: 120_000 }, (t) => newVersion(t, capture));
}

async function newVersion(t: TestContext, capture: 'trigger' | 'logical'): Promise<void> {
  const db = await tunnelDatabases(t);
  const env = { ...db.env, PGTUNNEL_FORMAT: 'json-schema', PGTUNNEL_REGISTRY_URL: registryUrl(), PGTUNNEL_CAPTURE: capture };
  const registry = new SchemaRegistry({ url: registryUrl() });
  const subject = `${db.topicPrefix}.public.employees-value`;
  await query(db.sourceUrl, "INSERT INTO employees (first_name) VALUES ('Ada')");
  const tunnel = await InProcessTunnel.start(t, env);
  assert.deepEqual(await registry.versions(subject), [1]);
  assert.equal((await registry.latest(subject))!.schemaType, 'JSON');
  await query(db.sourceUrl, 'ALTER TABLE employees ADD COLUMN email text');
  await query(db.sourceUrl, "INSERT INTO employees (first_name, email) VALUES ('Grace', 'g@h.i')");
  await waitFor('the new column\'s value in the target', async () => (await query<{ email: string }>(db.targetUrl, "SELECT email FROM employees WHERE first_name = 'Grace'"))[0]?.email === 'g@h.i');
  assert.deepEqual(await registry.versions(subject), [1, 2]);
  const raw = await rawRecords(`${db.topicPrefix}.public.employees`, 2);
  assert.ok(raw.every((r) => r.value![0] === 0 && r.value!.subarray(5).toString().startsWith('{"before":')), 'the wire format around the JSON envelope');
  await tunnel.stop();
}
