import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Producer, stringDeserializer, type MessagesStream } from '@platformatic/kafka';
import { PacedConsumer } from '../../src/transport/pacedConsumer.js';
import { closeConsumer, ensureTopics } from '../../src/transport/kafka.js';
import { onCleanup, services, uniqueName, waitFor } from '../helpers/services.js';

const deserializers = { key: (b?: Buffer) => b, value: (b?: Buffer) => b, headerKey: stringDeserializer, headerValue: stringDeserializer };

// An idle consumer's long poll must not delay a partition it gains: the rebalance after a peer leaves is the case.
test('a partition gained while an idle consumer long-polls is delivered within 1 s of its write', { timeout: 120_000 }, async (t) => {
  const brokers = [services().brokers];
  const topic = uniqueName('paced');
  await ensureTopics({ kafkaBrokers: brokers }, [topic], 2);
  const groupId = uniqueName('paced_group');
  const consumer = (clientId: string) =>
    new PacedConsumer({ clientId, groupId, bootstrapBrokers: brokers, protocols: [{ name: 'cooperative-sticky', version: 3 }], autocommit: false, deserializers, sessionTimeout: 20_000, heartbeatInterval: 1000 });
  const stay = consumer('stays');
  const leave = consumer('leaves');
  const streams: MessagesStream<Buffer, Buffer, string, string>[] = [];
  onCleanup(t, async () => {
    for (const s of streams) await s.close().catch(() => {});
    await closeConsumer(stay);
    await closeConsumer(leave);
  });
  const arrived = new Map<string, number>();
  const consume = async (c: PacedConsumer) => {
    const stream = await c.consume({ topics: [topic], mode: 'committed', fallbackMode: 'earliest' });
    streams.push(stream);
    stream.on('data', (m) => arrived.set(m.value!.toString(), performance.now()));
    return stream;
  };
  const staying = await consume(stay);
  const leaving = await consume(leave);
  const held = (c: PacedConsumer) => (c.assignments ?? []).flatMap((a) => a.partitions);
  await waitFor('one partition on each consumer', async () => held(stay).length === 1 && held(leave).length === 1, 60_000, 50);
  const gained = held(leave)[0]!;
  await waitFor('the staying consumer idle in a long poll', async () => stay.longPolling, 30_000, 20);
  // the peer leaves just as the next long poll starts: the whole rebalance happens inside it
  await once(staying, 'fetch');
  await leaving.close();
  await closeConsumer(leave);
  await waitFor('the staying consumer to hold both partitions', async () => held(stay).length === 2, 60_000, 20);
  const producer = new Producer({ clientId: 'paced-writer', bootstrapBrokers: brokers });
  onCleanup(t, () => producer.close());
  const sentAt = performance.now();
  await producer.send({ messages: [{ topic, partition: gained, key: Buffer.from('k'), value: Buffer.from('gained') }] });
  const at = await waitFor('the record of the gained partition', async () => arrived.get('gained'), 30_000, 5);
  t.diagnostic(`the gained partition's record delivered ${Math.round(at - sentAt)} ms after its write`);
  assert.ok(at - sentAt < 1000, `delivered ${Math.round(at - sentAt)} ms after its write`);
});
