import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { CommittedReader } from '../../src/transport/committedReader.js';
import { sendWindow } from '../../src/transport/batchSender.js';
import { EnvelopeProducer, ensureTopics } from '../../src/transport/kafka.js';
import { onCleanup, services, uniqueName } from '../helpers/services.js';

/**
 * Two pages in flight: page N fails (here the broker refuses it as too large) while page N+1 waits for its
 * window place. N+1 must not be sent then — it would land before N's re-send from the checkpoint, out of order
 * per key — and a publish called after the failure goes out normally.
 */
test('a send that waited while an earlier send to its topic failed is not sent; later publishes are', { timeout: 60_000 }, async (t) => {
  const kafka = { kafkaBrokers: [services().brokers] };
  const topic = uniqueName('send_order');
  await ensureTopics(kafka, [topic], 1, [{ name: 'max.message.bytes', value: '10000' }]);
  const producer = new EnvelopeProducer(kafka, `pgtunnel-send-order-${topic}`);
  onCleanup(t, () => producer.close());
  const record = (value: string) => ({ topic, key: '{"id":1}', value });
  await producer.publish([record('{"n":0}')]);

  // hold both window places, so page N+1 is still waiting for one when page N fails
  await sendWindow.acquire();
  await sendWindow.acquire();
  let held = 2;
  onCleanup(t, () => { while (held-- > 0) sendWindow.release(); });
  const pageN = producer.publish([record(JSON.stringify({ n: 1, pad: randomBytes(30_000).toString('base64') }))]);
  const pageNext = producer.publish([record('{"n":2}')]);
  held--;
  sendWindow.release();
  const [n, next] = await Promise.allSettled([pageN, pageNext]);
  assert.equal(n.status, 'rejected', 'the broker refused page N');
  assert.equal(next.status, 'rejected', 'page N+1 was not sent after page N failed');
  assert.equal((next as PromiseRejectedResult).reason.code, 'PGT_KAFKA_SEND_ORDER');
  held--;
  sendWindow.release();

  await producer.publish([record('{"n":3}')]);
  const reader = new CommittedReader(kafka);
  onCleanup(t, () => reader.close());
  const values = (await reader.read(topic, 0, 0n)).map((r) => (JSON.parse(r.value!.toString()) as { n: number }).n);
  assert.deepEqual(values, [0, 3], 'nothing of pages N and N+1 on the topic; the publish after the failure is');
});
