import { TunnelError } from '../errors.js';
import { compressionsAlgorithms, crc32c } from './kafkaLib.js';
import type { FetchedBytes } from './setBytes.js';
import { AbortedRanges } from './abortedBatches.js';

/** A transaction a read_committed Fetch response lists as aborted: its producer and first offset. */
export interface AbortedTransaction {
  producerId: number;
  firstOffset: number;
}

/**
 * The records walked out of Fetch responses, as spans in typed arrays reused set after set: no object per record
 * until a set is taken. A source is one batch's records bytes (the response itself, or a decompressed batch),
 * with its topic and partition.
 */
export class RecordSpans {
  count = 0;
  bytes = 0;
  private sources: { buffer: Buffer; topic: string; partition: number }[] = [];
  private source = new Int32Array(16_384);
  private keyAt = new Int32Array(16_384);
  private keyLength = new Int32Array(16_384);
  private valueAt = new Int32Array(16_384);
  private valueLength = new Int32Array(16_384);
  private offset = new Float64Array(16_384);

  /** Starts a batch's records; `add` appends to the last one started. */
  addSource(buffer: Buffer, topic: string, partition: number): void {
    this.sources.push({ buffer, topic, partition });
  }

  add(keyAt: number, keyLength: number, valueAt: number, valueLength: number, offset: number): void {
    if (this.count === this.offset.length) this.grow();
    const i = this.count++;
    this.source[i] = this.sources.length - 1;
    this.keyAt[i] = keyAt;
    this.keyLength[i] = keyLength;
    this.valueAt[i] = valueAt;
    this.valueLength[i] = valueLength;
    this.offset[i] = offset;
    this.bytes += Math.max(keyLength, 0) + Math.max(valueLength, 0);
  }

  /** The bytes of the first `count` records, and how many of them fit in `maxBytes` (at least one). */
  fitting(max: number, maxBytes: number): { count: number; bytes: number } {
    let count = 0;
    let bytes = 0;
    while (count < this.count && count < max) {
      const size = Math.max(this.keyLength[count]!, 0) + Math.max(this.valueLength[count]!, 0);
      if (count > 0 && bytes + size > maxBytes) break;
      bytes += size;
      count++;
    }
    return { count, bytes };
  }

  /**
   * The first `count` records copied into `into` (compactSet's layout: each key then its value, records in
   * order), each record a view of it; the rest move to the front. The responses are referenced no more once
   * their records are taken.
   */
  take(count: number, into: Buffer): FetchedBytes[] {
    const out = new Array<FetchedBytes>(count);
    let at = 0;
    for (let i = 0; i < count; i++) {
      const s = this.sources[this.source[i]!]!;
      const key = this.keyLength[i]! < 0 ? undefined : into.subarray(at, (at = copySpan(s.buffer, this.keyAt[i]!, this.keyLength[i]!, into, at)));
      const value = this.valueLength[i]! < 0 ? undefined : into.subarray(at, (at = copySpan(s.buffer, this.valueAt[i]!, this.valueLength[i]!, into, at)));
      out[i] = { topic: s.topic, partition: s.partition, offset: BigInt(this.offset[i]!), key, value };
    }
    const firstKept = count < this.count ? this.source[count]! : this.sources.length;
    for (let i = count; i < this.count; i++) {
      this.move(i, i - count);
      this.source[i - count] = this.source[i - count]! - firstKept;
    }
    this.count -= count;
    this.bytes -= at;
    this.sources = this.sources.slice(firstKept);
    return out;
  }

  private move(from: number, to: number): void {
    if (from === to) return;
    this.source[to] = this.source[from]!;
    this.keyAt[to] = this.keyAt[from]!;
    this.keyLength[to] = this.keyLength[from]!;
    this.valueAt[to] = this.valueAt[from]!;
    this.valueLength[to] = this.valueLength[from]!;
    this.offset[to] = this.offset[from]!;
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
    this.offset = bigger(this.offset);
  }
}

/** Short spans by a loop: Buffer.copy's call costs more than it copies under ~32 bytes. */
function copySpan(from: Buffer, start: number, length: number, to: Buffer, at: number): number {
  if (length <= 0) return at;
  if (length < 32) for (let j = 0; j < length; j++) to[at + j] = from[start + j]!;
  else from.copy(to, at, start, start + length);
  return at + length;
}

/** A read position in a buffer, advanced by the readers below. */
interface Cursor {
  at: number;
}

/** A zigzag varint (a record's fields). */
function varint(b: Buffer, c: Cursor): number {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = b[c.at++]!;
    value |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) break;
    shift += 7;
    if (shift > 28) throw corrupt('a record field longer than 32 bits');
  }
  return (value >>> 1) ^ -(value & 1);
}

/** Past a varint or varlong whose value is not needed (a record's timestamp delta). */
function skipVarint(b: Buffer, c: Cursor): void {
  while (b[c.at++]! & 0x80);
}

/** An unsigned varint (the protocol's compact lengths). */
function uvarint(b: Buffer, c: Cursor): number {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = b[c.at++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return value;
    shift += 7;
  }
}

function skipTaggedFields(b: Buffer, c: Cursor): void {
  for (let n = uvarint(b, c); n > 0; n--) {
    uvarint(b, c);
    c.at += uvarint(b, c);
  }
}

// offsets and producer ids as doubles: exact below 2^53, which a partition's offsets never reach
const int64 = (b: Buffer, at: number): number => b.readInt32BE(at) * 2 ** 32 + b.readUInt32BE(at + 4);

const batchHeaderBytes = 61;
const controlBit = 0x20;
const transactionalBit = 0x10;
const codecBits = 0x07;
const codecNames = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];

function corrupt(what: string): TunnelError {
  return new TunnelError('PGT_KAFKA_CORRUPT', `a fetched record batch is corrupt: ${what}`, {
    errorClass: 'retryable',
    hint: 'fetched again; if it persists, the partition holds a damaged segment (check the broker log)',
  });
}

/**
 * A batch's records bytes: in place, or decompressed. Every codec Kafka defines is read (lz4 and none are what
 * pgtunnel writes; gzip, snappy and zstd can come from another producer on the topic), through the client's codecs.
 */
function recordsOf(response: Buffer, batchAt: number, batchEnd: number, attributes: number): { b: Buffer; at: number } {
  const codec = attributes & codecBits;
  if (codec === 0) return { b: response, at: batchAt + batchHeaderBytes };
  const name = codecNames[codec];
  const algorithm = name && compressionsAlgorithms[name as keyof typeof compressionsAlgorithms];
  if (!algorithm) {
    throw new TunnelError('PGT_KAFKA_CODEC', `a record batch on the topic is compressed with codec ${codec}, which no Kafka version defines`, {
      errorClass: 'fatal',
      hint: 'the topic holds records of a producer pgtunnel cannot read: remove that producer, or its records',
    });
  }
  try {
    return { b: algorithm.decompressSync(response.subarray(batchAt + batchHeaderBytes, batchEnd)) as Buffer, at: 0 };
  } catch (err) {
    throw new TunnelError('PGT_KAFKA_CORRUPT', `a fetched record batch does not decompress (${name}): ${(err as Error).message}`, { errorClass: 'retryable', cause: err });
  }
}

/**
 * One partition's records bytes of a Fetch response walked into `spans`, as Kafka's Java consumer reads them
 * read_committed: whole v2 batches only (one cut at the byte limit is left for the next fetch), each batch's
 * CRC32C checked, control batches skipped, and a transactional batch skipped while its producer has a transaction
 * the response lists as aborted from at or before the batch's last offset and no abort marker since. Records
 * below `fetchOffset` (a batch starting before it) are skipped. Returns the offset to fetch next: past every
 * whole batch, so compacted gaps and markers are stepped over; `fetchOffset` when no whole batch came.
 */
export function walkPartition(response: Buffer, start: number, end: number, aborted: readonly AbortedTransaction[], fetchOffset: number, topic: string, partition: number, spans: RecordSpans): number {
  let next = fetchOffset;
  const ranges = new AbortedRanges(aborted);
  let at = start;
  while (end - at >= batchHeaderBytes) {
    const baseOffset = int64(response, at);
    const batchEnd = at + 12 + response.readInt32BE(at + 8);
    if (batchEnd > end) break;
    if (response[at + 16] !== 2) throw corrupt(`magic ${response[at + 16]} at offset ${baseOffset} (only v2 batches are read)`);
    if (crc32c(response.subarray(at + 21, batchEnd)) !== response.readUInt32BE(at + 17)) throw corrupt(`CRC32C mismatch at offset ${baseOffset} of ${topic}/${partition}`);
    const attributes = response.readInt16BE(at + 21);
    const lastOffset = baseOffset + response.readInt32BE(at + 23);
    const producerId = int64(response, at + 43);
    const count = response.readInt32BE(at + 57);
    ranges.reach(lastOffset);
    const batchAt = at;
    at = batchEnd;
    if (lastOffset + 1 > next) next = lastOffset + 1;
    if (attributes & controlBit) {
      // the control record's key: version int16, type int16 (0 abort, 1 commit)
      const body = recordsOf(response, batchAt, batchEnd, attributes);
      const c = { at: body.at };
      varint(body.b, c);
      c.at++;
      skipVarint(body.b, c);
      varint(body.b, c);
      const keyLength = varint(body.b, c);
      if (keyLength >= 4 && body.b.readInt16BE(c.at + 2) === 0) ranges.abortMarker(producerId);
      continue;
    }
    if (attributes & transactionalBit && ranges.aborted(producerId)) continue;
    if (lastOffset < fetchOffset) continue;
    const body = recordsOf(response, batchAt, batchEnd, attributes);
    spans.addSource(body.b, topic, partition);
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
      c.at = recordEnd; // headers: the apply reads none
      if (offset >= fetchOffset) spans.add(keyAt, keyLength, valueAt, valueLength, offset);
    }
  }
  return next;
}

/** One partition's answer in a Fetch response. */
export interface PartitionAnswer {
  topicId: string;
  partition: number;
  errorCode: number;
  logStartOffset: number;
  aborted: AbortedTransaction[];
  /** Where its records bytes lie in the response. */
  recordsAt: number;
  recordsEnd: number;
}

/**
 * A Fetch v15–v17 response (after its header): each partition's error, log start, aborted transactions and the
 * place of its records. Topic ids as 32 hex digits. A top-level error is the caller's (`errorCode`).
 */
export function fetchAnswers(b: Buffer, position: number): { errorCode: number; partitions: PartitionAnswer[] } {
  const c = { at: position + 4 }; // throttle time
  const errorCode = b.readInt16BE(c.at);
  c.at += 6; // error code, session id
  const partitions: PartitionAnswer[] = [];
  for (let topics = uvarint(b, c) - 1; topics > 0; topics--) {
    const topicId = b.toString('hex', c.at, c.at + 16);
    c.at += 16;
    for (let parts = uvarint(b, c) - 1; parts > 0; parts--) {
      const partition = b.readInt32BE(c.at);
      const partitionError = b.readInt16BE(c.at + 4);
      const logStartOffset = int64(b, c.at + 22);
      c.at += 30; // index, error, high watermark, last stable offset, log start offset
      const aborted: AbortedTransaction[] = [];
      for (let n = uvarint(b, c) - 1; n > 0; n--) {
        aborted.push({ producerId: int64(b, c.at), firstOffset: int64(b, c.at + 8) });
        c.at += 16;
        skipTaggedFields(b, c);
      }
      aborted.sort((x, y) => x.firstOffset - y.firstOffset);
      c.at += 4; // preferred read replica
      const size = uvarint(b, c) - 1;
      const recordsAt = c.at;
      c.at += Math.max(size, 0);
      partitions.push({ topicId, partition, errorCode: partitionError, logStartOffset, aborted, recordsAt, recordsEnd: c.at });
      skipTaggedFields(b, c);
    }
    skipTaggedFields(b, c);
  }
  return { errorCode, partitions };
}
