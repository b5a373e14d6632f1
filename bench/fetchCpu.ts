// node dist/bench/fetchCpu.js [--rows 200000] [--rounds 2] [--transactional] [--brokers host:port]
// What the consumer's own fetch reader saves (issue 21 item 4): the same topic of snapshot envelopes (as the
// producer writes them, 3 partitions, read_committed) read into sets as the apply consumer takes them, two ways:
//   client — @platformatic/kafka's consume stream (a message object per record) and compactSet, as ApplyConsumer did;
//   own    — transport/fetchReader.ts, as ApplyConsumer reads now: the record batches walked in the response bytes
//            (CRC32C checked, lz4 through the client's codec) straight into the set layout.
// Each topic is written lz4 and uncompressed; --transactional instead writes one lz4 topic in Kafka transactions
// (exactlyOnce), one page in six aborted. Every round of every way runs in its own child process under
// --trace-gc-nvp (V8 bytes allocated and GCs between the markers); turns alternate. CPU µs per record is the process's
// (all threads: GC helpers included), so on a loaded machine only same-run ratios compare.
import { spawnSync } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Consumer, crc32c } from '../src/transport/kafkaLib.js';
import { EnvelopeProducer, ensureTopics } from '../src/transport/kafka.js';
import type { FetchedBytes } from '../src/transport/setBytes.js';
import { FetchReader, maxFetchBytes } from '../src/transport/fetchReader.js';
import { maxSetBytes } from '../src/pipeline/applyConsumer.js';
import { snapshotRowToMessage } from '../src/contracts/envelope.js';
import { startTestStack } from '../testkit/testStack.js';
import { Backoff } from '../src/retry.js';
import { TunnelError } from '../src/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({ options: {
  rows: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '2' }, brokers: { type: 'string' },
  round: { type: 'string' }, topic: { type: 'string' }, warm: { type: 'string' }, digest: { type: 'boolean', default: false }, transactional: { type: 'boolean', default: false },
} });
const rows = Number(values.rows);
const warmRows = 20_000;
const partitions = 3;
const setRecords = 8000; // batchSize 2000 × 4, as ApplyConsumer's PolledSets
const marker = 'fetch-cpu-bench';
const table = { db: 'db1', schema: 'public', name: 'employees', key: ['emp_id'], topic: '', topicPrefix: 'bench' };
const pageRows = 5000;

/**
 * Snapshot envelopes of the bench's employees rows, written by the producer as the tunnel writes them: `n` rows
 * that a read_committed reader sees. Transactional (exactlyOnce's way): each page in a Kafka transaction, and
 * before every fifth page one page more that is aborted, so the readers meet aborted batches and markers.
 */
async function fill(brokers: string, topic: string, n: number, compression: 'lz4' | 'none', transactional: boolean): Promise<void> {
  const kafka = { kafkaBrokers: [brokers], kafkaCompression: compression };
  const options = transactional ? { transactionalId: `bench-fetch-${topic}` } : {};
  // a fresh broker makes the transaction coordinator on the first transactions: until then it answers "retry",
  // and the client keeps a failed begin as its open transaction, so each try is a new producer
  const backoff = new Backoff();
  for (let tries = 0; transactional; tries++) {
    const probe = new EnvelopeProducer(kafka, 'bench-fetch-probe', options);
    try {
      await probe.fence();
      break;
    } catch (err) {
      if (!(err instanceof TunnelError) || err.errorClass !== 'retryable' || tries === 20) throw err;
      await delay(backoff.next());
    } finally {
      await probe.close();
    }
  }
  const producer = new EnvelopeProducer(kafka, 'bench-fetch-fill', options);
  const page = (from: number, to: number) => {
    const out = [];
    for (let id = from; id < to; id++) {
      const row = `{"emp_id":${id},"first_name":"First${id % 977}","last_name":"Last${id % 1013}","dob":"19${String(id % 90 + 10)}-0${id % 9 + 1}-1${id % 9}","city":"City ${id % 101}","salary":${30000 + (id % 70000)}}`;
      out.push(snapshotRowToMessage({ ...table, topic }, { row, key: `{"emp_id":${id}}` }, 1, 1_700_000_000_000));
    }
    return out;
  };
  try {
    for (let from = 1; from <= n; from += pageRows) {
      const rows = page(from, Math.min(n + 1, from + pageRows));
      if (!transactional) {
        await producer.publish(rows);
        continue;
      }
      if ((from - 1) / pageRows % 5 === 0) {
        const aborted = await producer.begin();
        await aborted.publish(page(-pageRows, 0));
        await aborted.abort();
      }
      const tx = await producer.begin();
      await tx.publish(rows);
      await tx.commit();
    }
  } finally {
    await producer.close();
  }
}

/** What was read: records, their key and value bytes, sets (each dropped once made, as after its apply). */
interface Read {
  records: number;
  bytes: number;
  sets: number;
  /** With --digest: an order-free sum over the records of their partition, offset, key and value. */
  digest?: number;
  /** With --digest: records of the fill's aborted pages (negative ids) that reached a set. */
  abortedRead?: number;
}

const abortedKey = Buffer.from('{"emp_id":-');
const isAborted = (key: Buffer | undefined) => !!key && key.subarray(0, abortedKey.length).equals(abortedKey);

/** One record's share of the digest: the same for both ways when they read the same records into sets. */
function recordDigest(partition: number, offset: number, key: Buffer, value: Buffer): number {
  return (crc32c(key) + 3 * crc32c(value) + 5 * offset + 7 * partition) % 2 ** 48;
}

/**
 * What the apply consumer did before its own reader: the set's keys and values copied out of the client's messages
 * (views of the fetch responses) into one buffer of their size.
 */
function compactSet(messages: FetchedBytes[]): FetchedBytes[] {
  let size = 0;
  for (const m of messages) size += (m.key?.length ?? 0) + (m.value?.length ?? 0);
  const bytes = Buffer.allocUnsafeSlow(size);
  let at = 0;
  const copied = (b: Buffer | null | undefined): Buffer | undefined => {
    if (b === undefined || b === null) return undefined;
    b.copy(bytes, at);
    at += b.length;
    return bytes.subarray(at - b.length, at);
  };
  return messages.map((m) => ({ topic: m.topic, partition: m.partition, offset: m.offset, key: copied(m.key), value: copied(m.value) }));
}

/** The client's way: the consume stream's messages, cut into sets and copied by compactSet. */
async function clientWay(brokers: string, topic: string, expected: number, digest: boolean): Promise<Read> {
  const consumer = new Consumer({ clientId: 'bench-fetch-client', bootstrapBrokers: [brokers], groupId: `bench-fetch-${process.pid}-${topic}`, autocommit: false, deserializers: { key: (b?: Buffer) => b, value: (b?: Buffer) => b, headerKey: (b?: Buffer) => b?.toString(), headerValue: (b?: Buffer) => b?.toString() } });
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', maxBytes: maxFetchBytes });
  const read: Read = { records: 0, bytes: 0, sets: 0, ...(digest ? { digest: 0, abortedRead: 0 } : {}) };
  let pending: FetchedBytes[] = [];
  let pendingBytes = 0;
  let seen = 0;
  const cut = () => {
    const set = compactSet(pending);
    if (read.digest !== undefined) {
      for (const r of set) {
        read.digest = (read.digest + recordDigest(r.partition, Number(r.offset), r.key ?? Buffer.alloc(0), r.value ?? Buffer.alloc(0))) % 2 ** 48;
        if (isAborted(r.key)) read.abortedRead!++;
      }
    }
    read.records += set.length;
    read.bytes += pendingBytes;
    read.sets++;
    pending = [];
    pendingBytes = 0;
  };
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (m: FetchedBytes) => {
      pending.push(m);
      pendingBytes += (m.key?.length ?? 0) + (m.value?.length ?? 0);
      seen++;
      if (pending.length >= setRecords || pendingBytes >= maxSetBytes || seen === expected) cut();
      if (seen === expected) resolve();
    });
    stream.on('error', reject);
  });
  await stream.close();
  await consumer.close(true);
  return read;
}

/**
 * The own way: the consumer's FetchReader (transport/fetchReader.ts) in a group of its own, sets taken as the apply
 * consumer takes them (into a buffer of their size); the records' digest read from the set's views.
 */
async function ownWay(brokers: string, topic: string, expected: number, digest: boolean): Promise<Read> {
  const consumer = new Consumer({ clientId: 'bench-fetch-own', bootstrapBrokers: [brokers], groupId: `bench-fetch-own-${process.pid}-${topic}`, autocommit: false });
  const reader = new FetchReader(consumer, [topic], [brokers], setRecords, maxSetBytes);
  await reader.start();
  const read: Read = { records: 0, bytes: 0, sets: 0, ...(digest ? { digest: 0, abortedRead: 0 } : {}) };
  const never = new AbortController().signal;
  while (read.records < expected) {
    const set = (await reader.take(never))!;
    if (read.digest !== undefined) {
      for (const r of set.records) {
        read.digest = (read.digest + recordDigest(r.partition, Number(r.offset), r.key ?? Buffer.alloc(0), r.value ?? Buffer.alloc(0))) % 2 ** 48;
        if (isAborted(r.key)) read.abortedRead!++;
      }
    }
    read.records += set.records.length;
    read.bytes += set.bytes.length;
    read.sets++;
  }
  await reader.close();
  await consumer.close(true);
  return read;
}

/** One measured round in this process: a warm-up read of the small topic, then the measured read between markers. */
async function round(way: 'client' | 'own', brokers: string, topic: string, warm: string, digest: boolean): Promise<void> {
  const read = way === 'client' ? clientWay : ownWay;
  if (digest) {
    console.log(`${marker} ${JSON.stringify({ way, ...(await read(brokers, topic, rows, true)) })}`);
    return;
  }
  await read(brokers, warm, warmRows, false);
  const gc = (globalThis as { gc?: () => void }).gc!;
  gc();
  console.log(`${marker} start`);
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  const figures = await read(brokers, topic, rows, false);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const used = process.cpuUsage(cpu);
  const heapUsedMb = process.memoryUsage().heapUsed / 2 ** 20;
  gc();
  console.log(`${marker} end`);
  console.log(`${marker} ${JSON.stringify({ way, ...figures, ms, cpuUs: used.user + used.system, heapUsedMb })}`);
}

function child(way: string, brokers: string, topic: string, warm: string, digest = false) {
  const r = spawnSync(process.execPath, ['--trace-gc-nvp', '--expose-gc', fileURLToPath(import.meta.url), '--rows', String(rows), '--round', way, '--brokers', brokers, '--topic', topic, '--warm', warm, ...(digest ? ['--digest'] : [])], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`bench: ${way} round failed: ${r.stderr}`);
  const lines = r.stdout.split('\n');
  const measured = lines.slice(lines.indexOf(`${marker} start`), lines.indexOf(`${marker} end`));
  let allocated = 0;
  let gcs = 0;
  for (const line of measured) {
    // a whole line of the main isolate (a worker's GC line can interleave with it)
    const a = /^\[\d+:0x[0-9a-f]+:0\] .* allocated=(\d+) promoted=/.exec(line);
    if (!a) continue;
    // V8 prints a negative count (a correction) as its unsigned 64-bit form
    allocated += Number(BigInt.asIntN(64, BigInt(a[1]!)));
    gcs++;
  }
  const figures = JSON.parse(lines.find((l) => l.startsWith(`${marker} {`))!.slice(marker.length + 1));
  if (figures.records !== rows && !digest) throw new Error(`bench: ${way} read ${figures.records} records, not ${rows}`);
  return { ...figures, allocated, gcs };
}

async function main(): Promise<void> {
  if (values.round) return round(values.round as 'client' | 'own', values.brokers!, values.topic!, values.warm!, values.digest!);
  let stack;
  let brokers = values.brokers;
  if (!brokers) {
    const started = await startTestStack(path.join(root, '.pgtunnel'), 'bench-fetch-cpu');
    stack = started.stack;
    brokers = started.env.PGTUNNEL_TEST_BROKERS!;
  }
  try {
    const topics = [];
    const kinds = values.transactional ? [{ compression: 'lz4' as const, transactional: true }] : (['lz4', 'none'] as const).map((compression) => ({ compression, transactional: false }));
    for (const { compression, transactional } of kinds) {
      const topic = `bench-fetch-${compression}${transactional ? '-tx' : ''}-${Date.now()}`;
      const warm = `${topic}-warm`;
      await ensureTopics({ kafkaBrokers: [brokers] }, [topic, warm], partitions);
      await fill(brokers, warm, warmRows, compression, transactional);
      await fill(brokers, topic, rows, compression, transactional);
      topics.push({ compression: `${compression}${transactional ? ', transactional' : ''}`, topic, warm });
    }
    // both ways must read the same records into sets (count, bytes, digest) before anything is timed; the own way
    // must be right, and where the client is not (aborted records delivered), there is nothing to time against
    const comparable = [];
    for (const t of topics) {
      const [a, b] = ['client', 'own'].map((way) => child(way, brokers, t.topic, t.warm, true));
      if (b.records !== rows || b.abortedRead) throw new Error(`bench: the own reader read ${b.records} records of ${t.topic}, ${b.abortedRead} of them aborted`);
      if (a.digest === b.digest && a.bytes === b.bytes && a.records === rows && !a.abortedRead) {
        console.log(`${t.compression}: both ways read ${a.records} records, ${a.bytes} bytes, digest ${a.digest}`);
        comparable.push(t);
      } else {
        console.log(`${t.compression}: the own reader read the ${rows} committed records; the client's stream delivered ${a.abortedRead} records of aborted transactions among its first ${a.records} (not timed)`);
      }
    }
    const results = [];
    for (let r = 0; r < Number(values.rounds); r++) {
      const ways = r % 2 === 0 ? ['client', 'own'] : ['own', 'client'];
      for (const t of comparable) for (const way of ways) results.push({ compression: t.compression, round: r + 1, ...child(way, brokers, t.topic, t.warm) });
    }
    console.log(`\n${rows} snapshot envelopes, ${partitions} partitions, read_committed, sets of ≤ ${setRecords} records / ${maxSetBytes / 2 ** 20} MB\n`);
    console.log('| compression | way | round | CPU µs/record | V8 bytes allocated/record | GCs | heap used at end MB | wall s | set bytes |\n|---|---|---|---|---|---|---|---|---|');
    for (const r of results) console.log(`| ${r.compression} | ${r.way} | ${r.round} | ${(r.cpuUs / r.records).toFixed(2)} | ${Math.round(r.allocated / r.records)} | ${r.gcs} | ${r.heapUsedMb.toFixed(1)} | ${(r.ms / 1000).toFixed(2)} | ${r.bytes} |`);
  } finally {
    await stack?.down();
  }
}

await main();
