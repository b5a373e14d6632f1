import type { Envelope, RowImage } from '../contracts/envelope.js';
import { partitionId } from '../names.js';

export interface DecodedRecord {
  topic: string;
  partition: number;
  offset: bigint;
  /** The canonical key (key columns in key order, as the row carries them). */
  key: string;
  /** The record's value as it arrived, for a dead letter */
  value: string;
  envelope: Envelope;
}

export interface TableWrites {
  upserts: RowImage[];
  deletes: RowImage[];
  /** Newest source capture time in the set, for the latency figure. */
  newestSourceMs: number;
  /** Every upsert comes from an insert or a snapshot read (the target is not expected to have its key). */
  creates: boolean;
}

/**
 * Pure: the newest change per key wins within a polled set (records arrive in offset order per
 * partition, and a key lives in one partition), so each key is written once per transaction.
 */
export function newestPerKey(records: DecodedRecord[]): Map<string, TableWrites> {
  const latest = new Map<string, Map<string, Envelope>>();
  for (const r of records) {
    let byKey = latest.get(r.topic);
    if (!byKey) latest.set(r.topic, (byKey = new Map()));
    byKey.delete(r.key); // re-insert so iteration follows the newest change's order
    byKey.set(r.key, r.envelope);
  }
  const out = new Map<string, TableWrites>();
  for (const [topic, byKey] of latest) {
    const writes: TableWrites = { upserts: [], deletes: [], newestSourceMs: 0, creates: true };
    for (const envelope of byKey.values()) {
      if (envelope.op === 'd') writes.deletes.push(envelope.before!);
      else {
        writes.upserts.push(envelope.after!);
        if (envelope.op !== 'c' && envelope.op !== 'r') writes.creates = false;
      }
      writes.newestSourceMs = Math.max(writes.newestSourceMs, envelope.source.tsMs);
    }
    out.set(topic, writes);
  }
  return out;
}

/** Pure: the next offset to store per partition, from the records of a set. */
export function nextOffsets(records: { topic: string; partition: number; offset: bigint }[]): Map<string, { topic: string; partition: number; next: bigint }> {
  const out = new Map<string, { topic: string; partition: number; next: bigint }>();
  let current: { topic: string; partition: number; next: bigint } | undefined;
  for (const r of records) {
    // records come in runs per partition: look the partition up when the run changes; `next` holds the highest offset until the end
    if (current === undefined || current.topic !== r.topic || current.partition !== r.partition) {
      const id = partitionId(r.topic, r.partition);
      current = out.get(id);
      if (!current) out.set(id, (current = { topic: r.topic, partition: r.partition, next: r.offset }));
    }
    if (r.offset > current.next) current.next = r.offset;
  }
  for (const o of out.values()) o.next += 1n;
  return out;
}
