import type pg from 'pg';
import type { SetOutcome } from './setOutcome.js';
import { partitionId } from '../names.js';

/**
 * The consumed offsets stored in the target (pgtunnel.consumer_offsets), written in the same transaction as
 * the rows they carried: a record below the stored offset has already taken effect.
 */
/**
 * Pure: the records of a set that have not taken effect yet, in set order. After a rebalance the stream
 * fetches again from the group's committed offset, which trails the target's: a set can then hold a run of
 * a partition twice (…, 150..200, 150..170). Only a record at or past the partition's next offset counts,
 * and the next offset moves past each record kept, so a repeat is dropped and never overwrites a newer row.
 */
export function freshRecords<R extends { topic: string; partition: number; offset: bigint }>(records: R[], stored: Map<string, bigint>): R[] {
  // highest offset taken per partition (stored next offset - 1 until one is); records come in runs per partition
  const last = new Map<string, bigint>();
  let topic: string | undefined;
  let partition = -1;
  let lastTaken = -1n;
  const out: R[] = [];
  for (const r of records) {
    if (r.topic !== topic || r.partition !== partition) {
      if (topic !== undefined) last.set(partitionId(topic, partition), lastTaken);
      topic = r.topic;
      partition = r.partition;
      const id = partitionId(topic, partition);
      lastTaken = last.get(id) ?? (stored.get(id) ?? 0n) - 1n;
    }
    if (r.offset <= lastTaken) continue;
    lastTaken = r.offset;
    out.push(r);
  }
  return out;
}

/** Locks the set's partition rows (creating missing ones) and returns their stored next offsets. */
export async function lockOffsets(client: pg.Client, topics: string[], partitions: number[]): Promise<Map<string, bigint>> {
  await client.query(
    `INSERT INTO pgtunnel.consumer_offsets (topic, partition, next_offset)
     SELECT * FROM unnest($1::text[], $2::int[], array_fill(0::bigint, ARRAY[cardinality($1::text[])])) ON CONFLICT DO NOTHING`,
    [topics, partitions],
  );
  const { rows } = await client.query<{ topic: string; partition: number; next_offset: string }>(
    `SELECT o.topic, o.partition, o.next_offset::text FROM pgtunnel.consumer_offsets o
     JOIN unnest($1::text[], $2::int[]) AS p(topic, partition) USING (topic, partition)
     ORDER BY o.topic, o.partition FOR UPDATE OF o`,
    [topics, partitions],
  );
  return new Map(rows.map((r) => [partitionId(r.topic, r.partition), BigInt(r.next_offset)]));
}

/** Moves the stored offsets past the set and adds its counts, in the set's transaction. */
export async function advanceOffsets(client: pg.Client, advanced: { topic: string; partition: number; next: bigint }[], outcome: SetOutcome): Promise<void> {
  const counts = advanced.map((o) => outcome.counts.get(partitionId(o.topic, o.partition)) ?? { applied: 0, dead: 0, poison: 0 });
  await client.query(
    `UPDATE pgtunnel.consumer_offsets o SET next_offset = GREATEST(o.next_offset, p.next_offset), applied_at = now(),
            last_latency_ms = COALESCE($4::float8, o.last_latency_ms),
            applied = o.applied + p.applied, dead_lettered = o.dead_lettered + p.dead, poison = o.poison + p.poison
     FROM unnest($1::text[], $2::int[], $3::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) AS p(topic, partition, next_offset, applied, dead, poison)
     WHERE o.topic = p.topic AND o.partition = p.partition`,
    [
      advanced.map((o) => o.topic),
      advanced.map((o) => o.partition),
      advanced.map((o) => o.next.toString()),
      outcome.newestSourceMs > 0 ? Date.now() - outcome.newestSourceMs : null,
      counts.map((c) => c.applied),
      counts.map((c) => c.dead),
      counts.map((c) => c.poison),
    ],
  );
}

/** The stored next offsets of the topics' partitions (a partition never applied has no row). */
export async function storedOffsets(client: pg.Client, topics: string[]): Promise<Map<string, bigint>> {
  const { rows } = await client.query<{ topic: string; partition: number; next_offset: string }>(
    'SELECT topic, partition, next_offset::text FROM pgtunnel.consumer_offsets WHERE topic = ANY($1::text[])',
    [topics],
  );
  return new Map(rows.map((r) => [partitionId(r.topic, r.partition), BigInt(r.next_offset)]));
}
