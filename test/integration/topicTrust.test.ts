import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { query, services, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { runCli } from '../helpers/tunnelProcess.js';

const count = async (url: string) => (await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM employees'))[0]!.n;

test('a truncate written to the topic by anyone but the table\'s capture is a dead letter; a real TRUNCATE still empties the target', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  await query(db.sourceUrl, "INSERT INTO employees (first_name) SELECT 'r' || i FROM generate_series(1, 50) i");
  const tunnel = await InProcessTunnel.start(t, db.env);
  await waitFor('the snapshot in the target', async () => (await count(db.targetUrl)) === 50);

  const topic = `${db.topicPrefix}.public.employees`;
  const producer = new Producer({ clientId: 'forger', bootstrapBrokers: [services().brokers], serializers: stringSerializers });
  const source = '{"version":"0","connector":"pgtunnel","name":"x","ts_ms":1,"snapshot":"false","db":"db1","schema":"public","table":"employees","txId":999999,"lsn":1,"schema_version":1}';
  const forged = [`{"op":"t"}`, `{"before":null,"after":null,"source":${source},"op":"t","ts_ms":1}`];
  await producer.send({ messages: [0, 1, 2].flatMap((partition) => forged.map((value) => ({ topic, partition, value }))) });
  await producer.close();
  await query(db.sourceUrl, "INSERT INTO employees (first_name) VALUES ('after the forgery')");
  await waitFor('the change after the forged truncates', async () => (await count(db.targetUrl)) === 51);
  // the forgeries sit in all three partitions, the change in one: wait for every partition's letters
  const dlqList = async () => JSON.parse((await runCli(['dlq', 'list', '--json'], db.env)).stdout) as { errorClass: string; message: string }[];
  const letters = await waitFor('a dead letter for each of the 6 forged truncates', async () => {
    const l = await dlqList();
    return l.length >= 6 ? l : undefined;
  }, 20_000, 250);
  assert.equal(letters.length, 6, 'each forged copy is a dead letter, once');
  assert.equal(await count(db.targetUrl), 51, 'no forged truncate emptied the target');
  assert.ok(letters.every((l) => l.errorClass === 'poison'));
  assert.ok(letters.some((l) => /did not record/.test(l.message)));

  await query(db.sourceUrl, 'TRUNCATE employees');
  await waitFor('the real truncate applied', async () => (await count(db.targetUrl)) === 0);
  await tunnel.stop();
});

test('excluded columns never reach Kafka; masked columns arrive as salted hashes', { timeout: 90_000 }, async (t) => {
  const db = await tunnelDatabases(t, { createTables: false });
  await query(db.sourceUrl, 'CREATE TABLE people (id int PRIMARY KEY, name text, ssn text, email text)');
  await query(db.sourceUrl, "INSERT INTO people VALUES (1, 'Ada', '123-45-6789', 'ada@example.com')");
  const salt = 'a-secret-salt-of-16+';
  const file = `${db.home}/pgtunnel.yaml`;
  writeFileSync(file, `maskSalt: ${salt}\ntables:\n  - { name: people, exclude: [ssn], mask: { email: sha256 } }\n`);
  const env = { ...db.env, PGTUNNEL_CONFIG: file };
  const tunnel = await InProcessTunnel.start(t, env);
  await query(db.sourceUrl, "INSERT INTO people VALUES (2, 'Grace', '987-65-4321', 'grace@example.com')");
  const hash = (v: string) => createHash('sha256').update(salt + v).digest('hex');
  await waitFor('both rows in the target', async () => (await query(db.targetUrl, 'SELECT 1 FROM people')).length === 2);
  const rows = await query<{ id: number; email: string }>(db.targetUrl, 'SELECT id, email FROM people ORDER BY id');
  assert.deepEqual(rows.map((r) => r.email), [hash('ada@example.com'), hash('grace@example.com')]);
  const targetColumns = await query<{ c: string }>(db.targetUrl, "SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'people' ORDER BY ordinal_position");
  assert.deepEqual(targetColumns.map((r) => r.c), ['id', 'name', 'email'], 'the excluded column is not created in the target');
  const changeColumns = await query<{ c: string }>(db.sourceUrl, "SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'people_cdc'");
  assert.ok(!changeColumns.some((r) => r.c === 'ssn'), 'the change table has no excluded column');

  // the raw topic: no ssn anywhere, no clear email
  const consumer = new Consumer({ clientId: 'reader', groupId: `${db.topicPrefix}-reader`, bootstrapBrokers: [services().brokers], deserializers: stringDeserializers });
  const stream = await consumer.consume({ topics: [`${db.topicPrefix}.public.people`], mode: 'earliest' });
  const seen: string[] = [];
  stream.on('data', (m) => seen.push(`${m.key} ${m.value}`));
  await waitFor('both records read from the topic', async () => seen.length >= 2, 20_000);
  const raw = seen.join('\n');
  assert.doesNotMatch(raw, /ssn|123-45-6789|987-65-4321/);
  assert.doesNotMatch(raw, /@example\.com/);
  assert.match(raw, new RegExp(hash('ada@example.com')));
  await stream.close();
  await new Promise<void>((resolve) => consumer.close(true, () => resolve()));
  assert.deepEqual(await tunnel.differences(), []);
  await tunnel.stop();
});
