// node dist/bench/fetchCpu.js [--rows 200000] [--rounds 2] [--transactional] [--brokers host:port]
// What an own fetch reader would save the consumer (issue 21 item 4): the same topic of snapshot envelopes (as the
// producer writes them, 3 partitions, read_committed) read into sets as the apply consumer takes them, two ways:
//   client — @platformatic/kafka's consume stream (a message object per record) and compactSet, as ApplyConsumer does;
//   own    — Fetch requests sent on the client's connection, the record batches walked in the response bytes (CRC32C
//            checked, lz4 through the client's codec) straight into the set layout, no object per record.
// Each topic is written lz4 and uncompressed; --transactional instead writes one lz4 topic in Kafka transactions
// (exactlyOnce), one page in six aborted. Every round of every way runs in its own child process under
// --trace-gc-nvp (V8 bytes allocated and GCs between the markers); turns alternate. CPU µs per record is the process's
// (all threads: GC helpers included), so on a loaded machine only same-run ratios compare.
import { spawnSync } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Consumer, Writer, compressionsAlgorithms, crc32c, kGetApi, kGetConnection, kMetadata, type ClusterMetadata, type Connection } from '../src/transport/kafkaLib.js';
import { EnvelopeProducer, ensureTopics } from '../src/transport/kafka.js';
import { compactSet, type FetchedBytes } from '../src/transport/setBytes.js';
import { fetchOptions, maxFetchBytes, maxSetBytes } from '../src/pipeline/applyConsumer.js';
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

/** The client's way: the consume stream's messages, cut into sets and copied by compactSet. */
async function clientWay(brokers: string, topic: string, expected: number, digest: boolean): Promise<Read> {
  const consumer = new Consumer({ clientId: 'bench-fetch-client', bootstrapBrokers: [brokers], groupId: `bench-fetch-${process.pid}-${topic}`, autocommit: false, deserializers: { key: (b?: Buffer) => b, value: (b?: Buffer) => b, headerKey: (b?: Buffer) => b?.toString(), headerValue: (b?: Buffer) => b?.toString() } });
  const stream = await consumer.consume({ ...fetchOptions([topic]), mode: 'earliest' });
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

const call = <T>(fn: (cb: (error: Error | null | undefined, result?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((error, result) => (error ? reject(error) : resolve(result as T))));

/** A partition's place in the fetch, and what its last response said. */
interface PartitionCursor { partition: number; next: number }

/**
 * Spans of the records walked out of fetch responses, in typed arrays reused set after set: each record's source
 * buffer (a response, or a decompressed batch), its key and value ranges, its partition and offset.
 */
class Spans {
  count = 0;
  bytes = 0;
  sources: Buffer[] = [];
  source = new Int32Array(16_384);
  keyAt = new Int32Array(16_384);
  keyLength = new Int32Array(16_384);
  valueAt = new Int32Array(16_384);
  valueLength = new Int32Array(16_384);
  partition = new Int32Array(16_384);
  offset = new Float64Array(16_384);

  add(source: number, keyAt: number, keyLength: number, valueAt: number, valueLength: number, partition: number, offset: number): void {
    if (this.count === this.offset.length) this.grow();
    const i = this.count++;
    this.source[i] = source;
    this.keyAt[i] = keyAt;
    this.keyLength[i] = keyLength;
    this.valueAt[i] = valueAt;
    this.valueLength[i] = valueLength;
    this.partition[i] = partition;
    this.offset[i] = offset;
    this.bytes += Math.max(keyLength, 0) + Math.max(valueLength, 0);
  }

  private grow(): void {
    const bigger = <T extends Int32Array | Float64Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(a.length * 2);
      b.set(a);
      return b;
    };
    this.source = bigger(this.source);
    this.keyAt = bigger(this.keyAt);
    this.keyLength = bigger(this.keyLength);
    this.valueAt = bigger(this.valueAt);
    this.valueLength = bigger(this.valueLength);
    this.partition = bigger(this.partition);
    this.offset = bigger(this.offset);
  }

  /**
   * The set's keys and values copied into one buffer of their size, as compactSet lays them out; the spans are
   * reset. The apply would read the records through these arrays (a reader over the layout, not built here).
   */
  take(read: Read): Buffer {
    const bytes = Buffer.allocUnsafeSlow(this.bytes);
    let at = 0;
    for (let i = 0; i < this.count; i++) {
      const from = this.sources[this.source[i]!]!;
      const keyAt = at;
      at = copySpan(from, this.keyAt[i]!, this.keyLength[i]!, bytes, at);
      const valueAt = at;
      at = copySpan(from, this.valueAt[i]!, this.valueLength[i]!, bytes, at);
      if (read.digest !== undefined) {
        read.digest = (read.digest + recordDigest(this.partition[i]!, this.offset[i]!, bytes.subarray(keyAt, valueAt), bytes.subarray(valueAt, at))) % 2 ** 48;
        if (isAborted(bytes.subarray(keyAt, valueAt))) read.abortedRead!++;
      }
    }
    read.records += this.count;
    read.bytes += this.bytes;
    read.sets++;
    this.count = 0;
    this.bytes = 0;
    this.sources = [];
    return bytes;
  }
}

/** Short spans by a loop: Buffer.copy's call costs more than it copies under ~32 bytes. */
function copySpan(from: Buffer, start: number, length: number, to: Buffer, at: number): number {
  if (length <= 0) return at;
  if (length < 32) for (let j = 0; j < length; j++) to[at + j] = from[start + j]!;
  else from.copy(to, at, start, start + length);
  return at + length;
}

/** A zigzag varint (Kafka's record fields) read at `cursor.at`, which it advances. */
function varint(b: Buffer, cursor: { at: number }): number {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = b[cursor.at++]!;
    value |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) break;
    shift += 7;
    if (shift > 28) throw new Error('varint longer than 32 bits');
  }
  return (value >>> 1) ^ -(value & 1);
}

/** Past a varint or varlong whose value is not needed (a record's timestamp delta). */
function skipVarint(b: Buffer, cursor: { at: number }): void {
  while (b[cursor.at++]! & 0x80);
}

/** An unsigned varint (the protocol's compact lengths). */
function uvarint(b: Buffer, cursor: { at: number }): number {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = b[cursor.at++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return value;
    shift += 7;
  }
}

function skipTaggedFields(b: Buffer, cursor: { at: number }): void {
  for (let n = uvarint(b, cursor); n > 0; n--) {
    uvarint(b, cursor);
    cursor.at += uvarint(b, cursor);
  }
}

const int64 = (b: Buffer, at: number): number => b.readInt32BE(at) * 2 ** 32 + b.readUInt32BE(at + 4);
const controlBit = 0x20;
const transactionalBit = 0x10;
const compressionBits = 0x07;

/**
 * One partition's records bytes of a Fetch response walked into the spans: whole v2 batches only (one cut at the
 * byte limit is left for the next fetch), each batch's CRC32C checked, control batches and aborted transactions'
 * batches skipped (read_committed: the response's aborted list, as the Java consumer reads it), records below the
 * fetch offset skipped (a batch starts before it). Returns the offset to fetch next.
 */
function walkRecords(response: Buffer, start: number, end: number, aborted: { producerId: number; firstOffset: number }[], cursor: PartitionCursor, spans: Spans): number {
  let next = cursor.next;
  const abortedOpen = new Set<number>();
  let abortIndex = 0;
  let at = start;
  while (end - at >= 61) {
    const baseOffset = int64(response, at);
    const batchEnd = at + 12 + response.readInt32BE(at + 8);
    if (batchEnd > end) break;
    if (response[at + 16] !== 2) throw new Error(`record batch of magic ${response[at + 16]}`);
    if (crc32c(response.subarray(at + 21, batchEnd)) !== response.readUInt32BE(at + 17)) throw new Error(`record batch at offset ${baseOffset}: CRC32C mismatch`);
    const attributes = response.readInt16BE(at + 21);
    const lastOffset = baseOffset + response.readInt32BE(at + 23);
    const producerId = int64(response, at + 43);
    const count = response.readInt32BE(at + 57);
    while (abortIndex < aborted.length && aborted[abortIndex]!.firstOffset <= lastOffset) abortedOpen.add(aborted[abortIndex++]!.producerId);
    const batchAt = at;
    at = batchEnd;
    next = Math.max(next, lastOffset + 1);
    if (attributes & controlBit) {
      // an abort marker closes its producer's aborted transaction
      const body = decompressed(response, batchAt, batchEnd, attributes);
      const c = { at: body.at };
      varint(body.b, c);
      c.at++;
      skipVarint(body.b, c);
      varint(body.b, c);
      const keyLength = varint(body.b, c);
      if (keyLength >= 4 && body.b.readInt16BE(c.at + 2) === 0) abortedOpen.delete(producerId);
      continue;
    }
    if (attributes & transactionalBit && abortedOpen.has(producerId)) continue;
    const body = decompressed(response, batchAt, batchEnd, attributes);
    spans.sources.push(body.b);
    const source = spans.sources.length - 1;
    const c = { at: body.at };
    for (let i = 0; i < count; i++) {
      const length = varint(body.b, c);
      const recordEnd = c.at + length;
      c.at++; // attributes
      skipVarint(body.b, c); // timestamp delta
      const offset = baseOffset + varint(body.b, c);
      const keyLength = varint(body.b, c);
      const keyAt = c.at;
      c.at += Math.max(keyLength, 0);
      const valueLength = varint(body.b, c);
      const valueAt = c.at;
      c.at = recordEnd; // headers unread
      if (offset >= cursor.next) spans.add(source, keyAt, keyLength, valueAt, valueLength, cursor.partition, offset);
    }
  }
  return next;
}

/** The records of a batch: in place, or lz4 (or another codec) decompressed through the client's algorithms. */
function decompressed(response: Buffer, batchAt: number, batchEnd: number, attributes: number): { b: Buffer; at: number } {
  const codec = attributes & compressionBits;
  if (codec === 0) return { b: response, at: batchAt + 61 };
  const algorithm = Object.values(compressionsAlgorithms).find((a) => a.bitmask === codec);
  if (!algorithm) throw new Error(`record batch compressed with codec ${codec}`);
  return { b: algorithm.decompressSync(response.subarray(batchAt + 61, batchEnd)) as Buffer, at: 0 };
}

/**
 * The own way: Fetch v15–v17 (flexible, topic ids, no replica id) on the client's connection to the partitions'
 * leader, sessionless (full requests), read_committed, maxBytes as the consumer asks; the response parsed by us.
 */
async function ownWay(brokers: string, topic: string, expected: number, digest: boolean): Promise<Read> {
  const client = new Consumer({ clientId: 'bench-fetch-own', bootstrapBrokers: [brokers], groupId: `bench-fetch-own-${process.pid}` });
  const metadata = await call<ClusterMetadata>((cb) => client[kMetadata]({ topics: [topic] }, cb as never));
  const t = metadata.topics.get(topic)!;
  const leader = metadata.brokers.get(t.partitions[0]!.leader)!;
  const connection = await call<Connection>((cb) => client[kGetConnection](leader, cb as never));
  const api = await call<{ version: number }>((cb) => client[kGetApi]('Fetch', cb as never));
  if (api.version < 15) throw new Error(`the broker's Fetch v${api.version} is older than this bench writes (15)`);
  const version = Math.min(api.version, 17);
  const cursors: PartitionCursor[] = Array.from({ length: t.partitionsCount }, (_, partition) => ({ partition, next: 0 }));
  const spans = new Spans();
  const read: Read = { records: 0, bytes: 0, sets: 0, ...(digest ? { digest: 0, abortedRead: 0 } : {}) };
  let seen = 0;
  while (seen < expected) {
    const before = spans.count;
    const request = () => Writer.create()
      .appendInt32(500).appendInt32(1).appendInt32(maxFetchBytes).appendInt8(1).appendInt32(0).appendInt32(-1)
      .appendArray([t.id], (w, id) => w.appendUUID(id).appendArray(cursors, (w, p) => {
        w.appendInt32(p.partition).appendInt32(-1).appendInt64(BigInt(p.next)).appendInt32(-1).appendInt64(-1n).appendInt32(maxFetchBytes);
      }))
      .appendArray([], () => {})
      .appendString('')
      .appendTaggedFields();
    await call<void>((cb) => connection.send(1, version, request as never, ((_c: number, _k: number, _v: number, reader: { buffer: { buffer: Buffer }; position: number }) => {
      parseFetch(reader.buffer.buffer, reader.position, cursors, spans);
    }) as never, true, true, cb as never));
    seen += spans.count - before;
    if (spans.count >= setRecords || spans.bytes >= maxSetBytes || (seen === expected && spans.count > 0)) spans.take(read);
  }
  await client.close(true);
  return read;
}

/** A Fetch v15–v17 response: per partition its error, aborted transactions and records, walked into the spans. */
function parseFetch(b: Buffer, position: number, cursors: PartitionCursor[], spans: Spans): void {
  const c = { at: position + 4 };
  const error = b.readInt16BE(c.at);
  if (error !== 0) throw new Error(`fetch error ${error}`);
  c.at += 6; // error code, session id
  for (let topics = uvarint(b, c) - 1; topics > 0; topics--) {
    c.at += 16;
    for (let parts = uvarint(b, c) - 1; parts > 0; parts--) {
      const partition = b.readInt32BE(c.at);
      const partitionError = b.readInt16BE(c.at + 4);
      if (partitionError !== 0) throw new Error(`fetch of partition ${partition}: error ${partitionError}`);
      c.at += 30; // index, error, high watermark, last stable offset, log start offset
      const aborted: { producerId: number; firstOffset: number }[] = [];
      for (let n = uvarint(b, c) - 1; n > 0; n--) {
        aborted.push({ producerId: int64(b, c.at), firstOffset: int64(b, c.at + 8) });
        c.at += 16;
        skipTaggedFields(b, c);
      }
      aborted.sort((x, y) => x.firstOffset - y.firstOffset);
      c.at += 4; // preferred read replica
      const size = uvarint(b, c) - 1;
      const cursor = cursors[partition]!;
      if (size > 0) cursor.next = walkRecords(b, c.at, c.at + size, aborted, cursor, spans);
      c.at += Math.max(size, 0);
      skipTaggedFields(b, c);
    }
    skipTaggedFields(b, c);
  }
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
