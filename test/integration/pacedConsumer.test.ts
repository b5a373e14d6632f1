import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Consumer, Producer } from '@platformatic/kafka';
import { FetchReader, idleWaitMs } from '../../src/transport/fetchReader.js';
import { closeConsumer, ensureTopics } from '../../src/transport/kafka.js';
import { onCleanup, services, uniqueName, waitFor } from '../helpers/services.js';

// An idle consumer's long poll must not delay a partition it gains: the rebalance after a peer leaves is the case.
test('a partition gained while an idle consumer long-polls is delivered within 1 s of its write', { timeout: 120_000 }, async (t) => {
  const brokers = [services().brokers];
  const topic = uniqueName('paced');
  await ensureTopics({ kafkaBrokers: brokers }, [topic], 2);
  const groupId = uniqueName('paced_group');
  const member = (clientId: string) => {
    const consumer = new Consumer({ clientId, groupId, bootstrapBrokers: brokers, protocols: [{ name: 'cooperative-sticky', version: 3 }], autocommit: false, sessionTimeout: 20_000, heartbeatInterval: 1000 });
    return { consumer, reader: new FetchReader(consumer, [topic], brokers, 100, 1024 * 1024) };
  };
  const stay = member('stays');
  const leave = member('leaves');
  onCleanup(t, async () => {
    for (const m of [stay, leave]) {
      await m.reader.close();
      await closeConsumer(m.consumer);
    }
  });
  const arrived = new Map<string, number>();
  const stopped = new AbortController();
  onCleanup(t, () => stopped.abort());
  const read = async (reader: FetchReader) => {
    for (;;) {
      const set = await reader.take(stopped.signal);
      if (!set) return;
      for (const r of set.records) arrived.set(r.value!.toString(), performance.now());
    }
  };
  await stay.reader.start();
  await leave.reader.start();
  const reading = read(stay.reader);
  const held = (c: Consumer) => (c.assignments ?? []).flatMap((a) => a.partitions);
  await waitFor('one partition on each consumer', async () => held(stay.consumer).length === 1 && held(leave.consumer).length === 1, 60_000, 50);
  const gained = held(leave.consumer)[0]!;
  // idle: the polls grow to their longest, and the peer leaves while one is in flight
  await waitFor('the staying consumer idle in its longest poll', async () => stay.reader.longestPollMs === idleWaitMs, 30_000, 20);
  const sent = stay.reader.fetches;
  await waitFor('its next long poll sent', async () => stay.reader.fetches > sent && stay.reader.longestPollMs === idleWaitMs, 30_000, 2);
  await leave.reader.close();
  await closeConsumer(leave.consumer);
  await waitFor('the staying consumer to hold both partitions', async () => held(stay.consumer).length === 2, 60_000, 20);
  const producer = new Producer({ clientId: 'paced-writer', bootstrapBrokers: brokers });
  onCleanup(t, () => producer.close());
  const sentAt = performance.now();
  await producer.send({ messages: [{ topic, partition: gained, key: Buffer.from('k'), value: Buffer.from('gained') }] });
  const at = await waitFor('the record of the gained partition', async () => arrived.get('gained'), 30_000, 5);
  t.diagnostic(`the gained partition's record delivered ${Math.round(at - sentAt)} ms after its write`);
  assert.ok(at - sentAt < 1000, `delivered ${Math.round(at - sentAt)} ms after its write`);
  stopped.abort();
  await reading;
});
