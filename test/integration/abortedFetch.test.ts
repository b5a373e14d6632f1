import assert from 'node:assert/strict';
import { test } from 'node:test';
import { stringDeserializer } from '@platformatic/kafka';
import { CommittedConsumer } from '../../src/transport/abortedBatches.js';
import { closeConsumer, ensureTopics } from '../../src/transport/kafka.js';
import { employeeIdOf, employeesPage, transactionalProducer } from '../helpers/kafkaWriters.js';
import { onCleanup, services, uniqueName, waitFor } from '../helpers/services.js';

const deserializers = { key: (b?: Buffer) => b, value: (b?: Buffer) => b, headerKey: stringDeserializer, headerValue: stringDeserializer };

// exactlyOnce's promise on the consumer side: a page whose Kafka transaction aborted is never read, even when the
// fetch's byte limit cuts the transaction before its abort marker (@platformatic/kafka 2.12 delivered those records).
test('a read_committed consumer never delivers an aborted transaction, whatever the fetch limit cuts', { timeout: 120_000 }, async (t) => {
  const kafka = { kafkaBrokers: [services().brokers] };
  const topic = uniqueName('aborted');
  await ensureTopics(kafka, [topic], 1);
  const page = (from: number, to: number) => employeesPage(topic, from, to);
  const producer = await transactionalProducer(t, kafka, uniqueName('aborting_tx'));
  // committed, aborted (negative ids, each page many fetch limits long), committed, aborted, committed
  let expected = 0;
  for (let round = 0; round < 5; round++) {
    const tx = await producer.begin();
    if (round % 2 === 1) {
      await tx.publish(page(-2000 * round, -2000 * round + 1500));
      await tx.abort();
    } else {
      await tx.publish(page(1000 * round + 1, 1000 * round + 201));
      await tx.commit();
      expected += 200;
    }
  }
  const consumer = new CommittedConsumer({ clientId: uniqueName('reader'), groupId: uniqueName('reader_group'), bootstrapBrokers: kafka.kafkaBrokers, autocommit: false, deserializers });
  onCleanup(t, () => closeConsumer(consumer));
  // 16 kB per fetch: an aborted page of ~400 kB spans many fetches, most without its marker
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', maxBytes: 16 * 1024, maxWaitTime: 100 });
  onCleanup(t, () => stream.close());
  const ids: number[] = [];
  stream.on('data', (m) => ids.push(employeeIdOf(m.key)));
  await waitFor('every committed record', async () => ids.filter((id) => id > 0).length >= expected, 60_000, 20);
  // the stream has stepped over the last aborted page to reach the last committed one: nothing aborted came through
  assert.deepEqual(ids.filter((id) => id <= 0), [], 'records of aborted transactions delivered');
  assert.equal(ids.length, expected);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'committed records in order');
});
