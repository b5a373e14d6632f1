import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import fc from 'fast-check';
import { Consumer, Producer } from '@platformatic/kafka';
import { dlqTopicOf } from '../../src/names.js';
import { endOffsets } from '../../src/transport/kafka.js';
import { onCleanup, query, services, tunnelDatabases, waitFor } from '../helpers/services.js';
import { InProcessTunnel } from '../helpers/inProcessTunnel.js';
import { registryAnswers, testRegistryUrl, varint } from '../helpers/wireBytes.js';

// scripts/test.mjs starts the suite's registry beside the first files: wait until it answers
before(registryAnswers);

/** Reproduce a failure with PGTUNNEL_FUZZ_SEED=<the printed seed>. */
const seed = Number(process.env.PGTUNNEL_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const forgedCount = 300;



/** A mutation of a real record's value bytes: a byte, a cut, bytes inserted, a huge count, another schema id. */
const mutation = fc.oneof(
  fc.tuple(fc.constant('flip'), fc.nat(), fc.integer({ min: 0, max: 255 })),
  fc.tuple(fc.constant('cut'), fc.nat(), fc.constant(0)),
  fc.tuple(fc.constant('insert'), fc.nat(), fc.integer({ min: 0, max: 255 })),
  fc.tuple(fc.constant('count'), fc.nat(), fc.constantFrom(0, 1, 2)),
  fc.tuple(fc.constant('id'), fc.constantFrom(0, 1, 2, 999_999), fc.constant(0)),
);

function mutate(bytes: Buffer, [kind, n, x]: [string, number, number]): Buffer {
  const at = 5 + (n % Math.max(1, bytes.length - 5));
  if (kind === 'flip') return Buffer.concat([bytes.subarray(0, at), Buffer.from([x]), bytes.subarray(at + 1)]);
  if (kind === 'cut') return bytes.subarray(0, n % bytes.length);
  if (kind === 'insert') return Buffer.concat([bytes.subarray(0, at), Buffer.from([x]), bytes.subarray(at)]);
  if (kind === 'count') return Buffer.concat([bytes.subarray(0, at), Buffer.from(varint([100_000_000n, 2n ** 50n, -(2n ** 50n)][x]!)), bytes.subarray(at + 1)]);
  const out = Buffer.from(bytes);
  out.writeUInt32BE(n, 1);
  return out;
}

async function firstRaw(topic: string): Promise<{ key: Buffer; value: Buffer }> {
  const consumer = new Consumer({ clientId: 'wirefuzz-test', groupId: `wirefuzz-test-${Date.now()}`, bootstrapBrokers: [services().brokers] });
  try {
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', maxWaitTime: 200 });
    for await (const m of stream) {
      await stream.close();
      return { key: m.key as Buffer, value: m.value as Buffer };
    }
    throw new Error(`no record on ${topic}`);
  } finally {
    await consumer.close(true);
  }
}

async function totals(targetUrl: string, topic: string) {
  const [r] = await query<{ applied: string; dead: string; poison: string }>(targetUrl, `SELECT coalesce(sum(applied), 0)::text AS applied, coalesce(sum(dead_lettered), 0)::text AS dead, coalesce(sum(poison), 0)::text AS poison FROM pgtunnel.consumer_offsets WHERE topic = $1`, [topic]);
  return { applied: Number(r!.applied), dead: Number(r!.dead), poison: Number(r!.poison) };
}

test(`avro end to end: ${forgedCount} mutated wire-format records never stop the tunnel; every good change is applied (seed ${seed})`, { timeout: 240_000 }, async (t) => {
  const db = await tunnelDatabases(t);
  // an array column: its block counts are what avsc trusted
  for (const url of [db.sourceUrl, db.targetUrl]) await query(url, 'ALTER TABLE employees ADD COLUMN tags text[]');
  const env = { ...db.env, PGTUNNEL_FORMAT: 'avro', PGTUNNEL_REGISTRY_URL: testRegistryUrl() };
  const tunnel = await InProcessTunnel.start(t, env);
  const topic = `${db.topicPrefix}.public.employees`;
  await query(db.sourceUrl, "INSERT INTO employees (emp_id, first_name, salary, tags) VALUES (1, 'Ada', 1, '{a,b}')");
  await waitFor('the first change in the target', async () => (await query(db.targetUrl, 'SELECT 1 FROM employees WHERE emp_id = 1')).length === 1, 60_000, 50);
  const good = await firstRaw(topic);
  assert.equal(good.value[0], 0, 'the tunnel writes the wire format');

  const producer = new Producer({ clientId: 'wirefuzz-forger', bootstrapBrokers: [services().brokers] });
  onCleanup(t, () => producer.close());
  const forged = fc.sample(mutation, { seed, numRuns: forgedCount }).map((m) => mutate(good.value, m as [string, number, number]));
  for (let i = 0; i < forged.length; i += 50) {
    await producer.send({ messages: forged.slice(i, i + 50).map((value) => ({ topic, partition: 0, key: good.key, value })) });
    // good changes between the forged ones, from the source
    await query(db.sourceUrl, 'INSERT INTO employees (emp_id, first_name, salary, tags) VALUES ($1, $2, 1, $3)', [1000 + i, `good ${i}`, ['x', String(i)]]);
  }
  const goodIds = forged.map((_, i) => i).filter((i) => i % 50 === 0).map((i) => 1000 + i);
  // the first change, the forged records and the good changes (the last may still be on its way to Kafka)
  const expected = 1 + forged.length + goodIds.length;
  const counts = await waitFor('every record applied or dead-lettered', async () => {
    // a tunnel that ends on its own fails this wait at once, with how it ended (the seed is in the test's name)
    const c = await totals(db.targetUrl, topic);
    return c.applied + c.dead + c.poison >= expected ? c : undefined;
  }, 120_000, 100);
  t.diagnostic(`${forged.length} forged and ${goodIds.length + 1} good records: ${JSON.stringify(counts)}`);
  assert.equal(counts.applied + counts.dead + counts.poison, expected, `seed ${seed}`);
  const ends = await endOffsets({ kafkaBrokers: [services().brokers] }, [topic]);
  assert.equal(ends.get(topic)!.reduce((n, o) => n + Number(o), 0), expected, 'the topic holds exactly these records');
  const ends2 = await endOffsets({ kafkaBrokers: [services().brokers] }, [dlqTopicOf(topic)]);
  assert.equal(ends2.get(dlqTopicOf(topic))!.reduce((n, o) => n + Number(o), 0), counts.dead + counts.poison, 'each dead letter is in the DLQ once');
  assert.ok(counts.poison > forgedCount / 2, `most forged records are poison: ${JSON.stringify(counts)}`);
  const applied = await query<{ emp_id: number; tags: string[] }>(db.targetUrl, 'SELECT emp_id, tags FROM employees WHERE emp_id = ANY($1::int[]) ORDER BY emp_id', [goodIds]);
  assert.deepEqual(applied.map((r) => r.emp_id), goodIds, 'every good change is applied');
  assert.deepEqual(applied[0]!.tags, ['x', '0']);
  assert.equal(tunnel.ended(), false, 'the tunnel is still running');
  await tunnel.stop();
});
