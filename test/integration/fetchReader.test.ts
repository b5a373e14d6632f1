import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { ConnectionPool, Consumer, Producer } from '@platformatic/kafka';
import { FetchReader, fetchResponse } from '../../src/transport/fetchReader.js';
import { RecordSpans, fetchAnswers, walkPartition } from '../../src/transport/recordWalk.js';
import { EnvelopeProducer, closeConsumer, ensureTopics } from '../../src/transport/kafka.js';
import { onCleanup, services, uniqueName } from '../helpers/services.js';
import { employeeIdOf, employeesPage, transactionalProducer } from '../helpers/kafkaWriters.js';

const brokers = () => [services().brokers];

const page = employeesPage;
const idOf = employeeIdOf;

/** A FetchReader in a group of its own, its sets of at most `max` records; closed after the test. */
async function groupReader(t: TestContext, topic: string, max: number): Promise<FetchReader> {
  const consumer = new Consumer({ clientId: uniqueName('reader'), groupId: uniqueName('reader_group'), bootstrapBrokers: brokers(), autocommit: false });
  const reader = new FetchReader(consumer, [topic], brokers(), max, 1024 * 1024);
  onCleanup(t, async () => {
    await reader.close();
    await closeConsumer(consumer);
  });
  await reader.start();
  return reader;
}

/** Raw Fetch answers of one partition through the reader's request, walked by the reader's walk. */
async function rawFetcher(t: TestContext, topic: string) {
  const consumer = new Consumer({ clientId: uniqueName('walker'), groupId: uniqueName('walker'), bootstrapBrokers: brokers() });
  const pool = new ConnectionPool(uniqueName('walker'));
  onCleanup(t, async () => {
    await pool.close();
    await closeConsumer(consumer);
  });
  const metadata = await consumer.metadata({ topics: [topic] });
  const t0 = metadata.topics.get(topic)!;
  const broker = metadata.brokers.get(t0.partitions[0]!.leader)!;
  return async (offset: number, maxBytes: number, cutBytes = 0) => {
    const answer = await fetchResponse(consumer, pool, broker, 0, maxBytes, [{ topicId: t0.id, partitions: [{ partition: 0, offset }] }]);
    const [p] = fetchAnswers(answer.buffer, answer.position).partitions;
    assert.equal(p!.errorCode, 0);
    const spans = new RecordSpans();
    const next = walkPartition(answer.buffer, p!.recordsAt, p!.recordsEnd - cutBytes, p!.aborted, offset, topic, 0, spans);
    return { next, size: p!.recordsEnd - p!.recordsAt, records: spans.take(spans.count, Buffer.alloc(spans.bytes)) };
  };
}

/** Every record from offset 0 to `end`, fetch after fetch of `maxBytes`. */
async function walkAll(fetch: Awaited<ReturnType<typeof rawFetcher>>, end: number, maxBytes: number) {
  const ids: number[] = [];
  let offset = 0;
  let cut = 0;
  while (offset < end) {
    const r = await fetch(offset, maxBytes);
    assert.ok(r.next > offset, `a fetch at ${offset} moved on`);
    if (r.size === maxBytes) cut++;
    ids.push(...r.records.map((m) => idOf(m.key)));
    offset = r.next;
  }
  return { ids, cut };
}

test('the walk reads the records the client writes, once and in order, a batch cut at the end of a response left for the next fetch', { timeout: 120_000 }, async (t) => {
  const kafka = { kafkaBrokers: brokers() };
  const topic = uniqueName('walk_plain');
  await ensureTopics(kafka, [topic], 1);
  const producer = new EnvelopeProducer(kafka, uniqueName('walk_writer'));
  onCleanup(t, () => producer.close());
  for (let from = 1; from <= 3000; from += 500) await producer.publish(page(topic, from, from + 500));
  const fetch = await rawFetcher(t, topic);
  const whole = await fetch(0, 64 * 1024 * 1024);
  assert.deepEqual(whole.records.map((r) => idOf(r.key)), Array.from({ length: 3000 }, (_, i) => i + 1));
  assert.equal(whole.next, 3000);

  // the same response cut inside its last batch: that batch is left whole for the next fetch
  const cut = await fetch(0, 64 * 1024 * 1024, 1);
  assert.ok(cut.records.length > 0 && cut.records.length < 3000, 'the cut batch is not walked');
  assert.equal(cut.next, cut.records.length, 'the next fetch starts at the cut batch');
  const rest = await fetch(cut.next, 64 * 1024 * 1024);
  assert.deepEqual([...cut.records, ...rest.records].map((r) => idOf(r.key)), whole.records.map((r) => idOf(r.key)));

  // the broker's own cuts: responses of 10 kB end inside a batch (each batch of 500 here is ~7.5 kB)
  const small = await walkAll(fetch, 3000, 10_000);
  assert.ok(small.cut > 0, 'some responses were cut at the byte limit');
  assert.deepEqual(small.ids, Array.from({ length: 3000 }, (_, i) => i + 1));

  // a first batch larger than the limit still comes whole
  const big = await fetch(0, 100);
  assert.ok(big.records.length > 0 && big.next > 0, 'a batch larger than the fetch limit is read');
});

test('the walk skips aborted transactions, whatever the fetch limit cuts, and FetchReader reads what the walk reads', { timeout: 120_000 }, async (t) => {
  const kafka = { kafkaBrokers: brokers() };
  const topic = uniqueName('walk_aborted');
  await ensureTopics(kafka, [topic], 1);
  const producer = await transactionalProducer(t, kafka, uniqueName('walk_tx'));
  const expected: number[] = [];
  for (let round = 0; round < 6; round++) {
    const tx = await producer.begin();
    if (round % 2 === 1) {
      await tx.publish(page(topic, -2000 * round, -2000 * round + 800));
      await tx.abort();
    } else {
      await tx.publish(page(topic, 1000 * round + 1, 1000 * round + 301));
      await tx.commit();
      for (let id = 1000 * round + 1; id < 1000 * round + 301; id++) expected.push(id);
    }
  }
  // a plain write after the last marker, so the walk's end is a record's offset + 1
  const plain = new Producer({ clientId: uniqueName('walk_plain'), bootstrapBrokers: kafka.kafkaBrokers });
  onCleanup(t, () => plain.close());
  await plain.send({ messages: [{ topic, partition: 0, key: Buffer.from('{"emp_id":99999}'), value: Buffer.from('{}') }] });
  expected.push(99999);
  const end = await endOf(topic);
  const fetch = await rawFetcher(t, topic);
  for (const maxBytes of [16 * 1024, 64 * 1024 * 1024]) {
    const { ids, cut } = await walkAll(fetch, end, maxBytes);
    assert.deepEqual(ids, expected, `fetches of ${maxBytes} bytes: exactly the committed records, in order`);
    if (maxBytes === 16 * 1024) assert.ok(cut > 0, 'aborted transactions cut by the byte limit, their markers in later responses');
  }

  const reader = await groupReader(t, topic, 500);
  const read: number[] = [];
  const signal = AbortSignal.timeout(60_000);
  while (read.length < expected.length) {
    const set = await reader.take(signal);
    assert.ok(set, 'every committed record within a minute');
    assert.ok(set.records.length <= 500);
    read.push(...set.records.map((r) => idOf(r.key)));
  }
  assert.deepEqual(read, expected);
});

test('FetchReader reads batches of every codec another producer may write', { timeout: 120_000 }, async (t) => {
  const kafka = { kafkaBrokers: brokers() };
  const topic = uniqueName('walk_codecs');
  await ensureTopics(kafka, [topic], 1);
  const codecs = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;
  for (const [i, compression] of codecs.entries()) {
    const producer = new Producer({ clientId: uniqueName(`walk_${compression}`), bootstrapBrokers: kafka.kafkaBrokers, compression });
    onCleanup(t, () => producer.close());
    await producer.send({ messages: Array.from({ length: 50 }, (_, j) => ({ topic, partition: 0, key: Buffer.from(`{"emp_id":${i * 100 + j}}`), value: Buffer.from(`{"codec":"${compression}"}`) })) });
  }
  const reader = await groupReader(t, topic, 1000);
  const values: string[] = [];
  const signal = AbortSignal.timeout(60_000);
  while (values.length < 250) values.push(...(await reader.take(signal))!.records.map((r) => r.value!.toString()));
  assert.deepEqual(values, codecs.flatMap((c) => Array.from({ length: 50 }, () => `{"codec":"${c}"}`)));
});

/** The partition's end offset (read_uncommitted: past the last marker). */
async function endOf(topic: string): Promise<number> {
  const consumer = new Consumer({ clientId: uniqueName('walk_end'), groupId: uniqueName('walk_end'), bootstrapBrokers: brokers() });
  try {
    return Number((await consumer.listOffsets({ topics: [topic], isolationLevel: 0 })).get(topic)![0]!);
  } finally {
    await closeConsumer(consumer);
  }
}
