import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CommittedReader } from '../../src/transport/committedReader.js';
import { sendWindow } from '../../src/transport/batchSender.js';
import { EnvelopeProducer, ensureTopics } from '../../src/transport/kafka.js';
import { onCleanup, services, uniqueName } from '../helpers/services.js';

/**
 * Six tables' producers publishing at once hold at most two produce sends unacknowledged between them
 * (each send's encoded batches live until its ack), and every table's records arrive, in order per table.
 */
test('produce sends of many tables at once: at most two unacknowledged in the process, every record delivered in order', { timeout: 120_000 }, async (t) => {
  const kafka = { kafkaBrokers: [services().brokers] };
  const topics = Array.from({ length: 6 }, (_, i) => uniqueName(`send_window_${i}`));
  await ensureTopics(kafka, topics, 1);
  const producers = topics.map((topic) => new EnvelopeProducer(kafka, `pgtunnel-send-window-${topic}`));
  for (const p of producers) onCleanup(t, () => p.close());
  // each table publishes pages one after another, as a table's BatchPublisher does; the tables run side by side
  const pages = 5;
  const perPage = 400;
  sendWindow.peak = 0;
  await Promise.all(producers.map(async (producer, i) => {
    for (let page = 0; page < pages; page++) {
      await producer.publish(Array.from({ length: perPage }, (_, n) => ({ topic: topics[i]!, key: `{"id":${n}}`, value: `{"table":${i},"n":${page * perPage + n},"pad":"${'x'.repeat(200)}"}` })));
    }
  }));
  assert.equal(sendWindow.peak, 2, 'the tables overlapped, and never more than two sends were unacknowledged');
  const reader = new CommittedReader(kafka);
  onCleanup(t, () => reader.close());
  for (const [i, topic] of topics.entries()) {
    const records = await reader.read(topic, 0, 0n);
    assert.deepEqual(records.map((r) => (JSON.parse(r.value!.toString()) as { n: number }).n), Array.from({ length: pages * perPage }, (_, n) => n), `table ${i}`);
  }
});
