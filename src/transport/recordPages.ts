import type { WireMessage } from '../contracts/envelope.js';
import type { PartitionRecords } from './batchSender.js';
import type { RecordBytes } from './recordBatch.js';
import { partitionOf } from './partitions.js';

/** Per-record overhead counted towards a request's size (record header, varints). */
const recordOverhead = 64;

/**
 * Every message placed in its partition (by key as the Java client would, or a copy in every partition),
 * grouped per partition in order and split into produce requests of about `requestBytes`. A message whose
 * key is its JSON text is its own record: no object is made for it.
 */
export function placeRequests(messages: readonly WireMessage[], partitionCounts: ReadonlyMap<string, number>, requestBytes: number): PartitionRecords[][] {
  const out: PartitionRecords[][] = [];
  let parts = new Map<string, PartitionRecords>();
  let size = 0;
  const add = (topic: string, partition: number, record: RecordBytes, bytes: number) => {
    const id = `${partition}:${topic}`;
    let part = parts.get(id);
    if (!part) parts.set(id, (part = { topic, partition, records: [] }));
    part.records.push(record);
    size += bytes;
    if (size >= requestBytes) {
      out.push([...parts.values()]);
      parts = new Map();
      size = 0;
    }
  };
  for (const m of messages) {
    const count = partitionCounts.get(m.topic)!;
    const record: RecordBytes = m.keyBytes ? { key: m.keyBytes, value: m.value, headers: m.headers } : m;
    const bytes = (m.value?.length ?? 0) + (record.key?.length ?? 0) + recordOverhead;
    if (m.partition === 'all') for (let p = 0; p < count; p++) add(m.topic, p, record, bytes);
    // a message with only key bytes (the snapshot's byte path) is placed by the key's JSON text as UTF-8:
    // the key bytes themselves (JSON), or partitionKey beside encoded ones (Avro, JSON Schema)
    else {
      const text = m.key ?? m.partitionKey ?? m.keyBytes;
      add(m.topic, m.partition ?? (text !== undefined ? partitionOf(text, count) : 0), record, bytes);
    }
  }
  if (parts.size > 0) out.push([...parts.values()]);
  return out;
}

/**
 * Sends the requests in order with at most `window` unacknowledged: the next is encoded and on the wire
 * while the broker still writes the previous one, and memory stays bounded to `window` requests. After a
 * failure nothing more is sent; the first error is thrown once every request in flight has settled.
 */
export async function sendInWindow<T>(requests: readonly T[], send: (request: T) => Promise<unknown>, window = 2): Promise<void> {
  const inFlight: Promise<unknown>[] = [];
  let failure: { error: unknown } | undefined;
  const track = (p: Promise<unknown>) => p.catch((error) => (failure ??= { error }));
  for (const request of requests) {
    if (inFlight.length >= window) await inFlight.shift();
    if (failure) break;
    inFlight.push(track(send(request)));
  }
  await Promise.all(inFlight);
  if (failure) throw failure.error;
}
