import { compressionsAlgorithms, crc32c } from './kafkaLib.js';

/** Encoded bytes, or text written as UTF-8 straight into the batch (no Buffer of its own). */
export type Bytes = Buffer | string;

/** One record: what the broker stores, nothing to serialise. */
export interface RecordBytes {
  key: Bytes | undefined;
  value: Bytes | undefined;
  headers?: Map<string, string>;
}

/** Who writes the batch: the broker deduplicates by (producerId, epoch, baseSequence) per partition. */
export interface BatchWriter {
  producerId: bigint;
  producerEpoch: number;
  baseSequence: number;
  transactional: boolean;
  compression: 'lz4' | 'none';
  /** One create time for the whole batch (ms): every record's delta is 0. */
  timestamp: number;
}

/** baseOffset … recordCount: the v2 batch header (KIP-98). */
export const batchHeaderBytes = 61;
/** The CRC covers attributes to the end: from this offset. */
const crcStart = 21;
const lz4Bit = 3;
const transactionalBit = 1 << 4;

/** Bytes of a zigzag varint (32-bit values: lengths, counts, deltas). */
export function varintBytes(n: number): number {
  let v = ((n << 1) ^ (n >> 31)) >>> 0;
  let size = 1;
  while (v >= 0x80) {
    v >>>= 7;
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, offset: number, n: number): number {
  let v = ((n << 1) ^ (n >> 31)) >>> 0;
  while (v >= 0x80) {
    buf[offset++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[offset++] = v;
  return offset;
}

const lengthOf = (b: Bytes | undefined) => (b === undefined ? -1 : typeof b === 'string' ? Buffer.byteLength(b) : b.length);
const fieldBytes = (n: number) => varintBytes(n) + Math.max(n, 0);

/** A record's body (without its own length prefix). */
function bodyBytes(r: RecordBytes, offsetDelta: number): number {
  let size = 1 + 1 + varintBytes(offsetDelta) + fieldBytes(lengthOf(r.key)) + fieldBytes(lengthOf(r.value)) + varintBytes(r.headers?.size ?? 0);
  if (r.headers) for (const [k, v] of r.headers) size += fieldBytes(lengthOf(k)) + fieldBytes(lengthOf(v));
  return size;
}

/** The records section's size; texts are measured, never copied. */
export function recordsBytes(records: readonly RecordBytes[]): number {
  let size = 0;
  for (let i = 0; i < records.length; i++) {
    const body = bodyBytes(records[i]!, i);
    size += varintBytes(body) + body;
  }
  return size;
}

function writeBytes(buf: Buffer, offset: number, b: Bytes | undefined): number {
  offset = writeVarint(buf, offset, lengthOf(b));
  if (b === undefined) return offset;
  return offset + (typeof b === 'string' ? buf.write(b, offset) : b.copy(buf, offset));
}

/** Writes the records section at `offset`; each record costs its bytes' copy and nothing on the heap. */
export function writeRecords(buf: Buffer, offset: number, records: readonly RecordBytes[]): number {
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    offset = writeVarint(buf, offset, bodyBytes(r, i));
    buf[offset++] = 0; // record attributes: unused
    buf[offset++] = 0; // timestamp delta 0 (zigzag)
    offset = writeVarint(buf, offset, i);
    offset = writeBytes(buf, offset, r.key);
    offset = writeBytes(buf, offset, r.value);
    offset = writeVarint(buf, offset, r.headers?.size ?? 0);
    if (r.headers) {
      for (const [k, v] of r.headers) {
        offset = writeBytes(buf, offset, k);
        offset = writeBytes(buf, offset, v);
      }
    }
  }
  return offset;
}

function writeHeader(buf: Buffer, count: number, writer: BatchWriter, attributes: number): void {
  buf.writeBigInt64BE(0n, 0); // base offset: the broker assigns it
  buf.writeInt32BE(buf.length - 12, 8);
  buf.writeInt32BE(-1, 12); // partition leader epoch: the broker's to set
  buf[16] = 2; // magic
  buf.writeInt16BE(attributes, 21);
  buf.writeInt32BE(count - 1, 23);
  buf.writeBigInt64BE(BigInt(writer.timestamp), 27);
  buf.writeBigInt64BE(BigInt(writer.timestamp), 35);
  buf.writeBigInt64BE(writer.producerId, 43);
  buf.writeInt16BE(writer.producerEpoch, 51);
  buf.writeInt32BE(writer.baseSequence, 53);
  buf.writeInt32BE(count, 57);
  buf.writeUInt32BE(crc32c(buf.subarray(crcStart)), 17);
}

/**
 * Builds one v2 record batch for one partition. Uncompressed, the records are written in place after the
 * header (one allocation per batch); with lz4 they go to a scratch buffer kept between batches, and only
 * the compressed frame is copied behind the header.
 */
export class RecordBatchEncoder {
  private scratch = Buffer.allocUnsafe(0);

  encode(records: readonly RecordBytes[], writer: BatchWriter): Buffer {
    if (records.length === 0) throw new RangeError('a record batch holds at least one record');
    const size = recordsBytes(records);
    const attributes = (writer.transactional ? transactionalBit : 0) | (writer.compression === 'lz4' ? lz4Bit : 0);
    if (writer.compression === 'none') {
      const buf = Buffer.allocUnsafe(batchHeaderBytes + size);
      writeRecords(buf, batchHeaderBytes, records);
      writeHeader(buf, records.length, writer, attributes);
      return buf;
    }
    if (this.scratch.length < size) this.scratch = Buffer.allocUnsafe(Math.max(size, this.scratch.length * 2));
    writeRecords(this.scratch, 0, records);
    const compressed = compressionsAlgorithms.lz4.compressSync(this.scratch.subarray(0, size));
    const buf = Buffer.allocUnsafe(batchHeaderBytes + compressed.length);
    compressed.copy(buf, batchHeaderBytes);
    writeHeader(buf, records.length, writer, attributes);
    return buf;
  }
}
