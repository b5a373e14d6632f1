import type pg from 'pg';
import { TunnelError } from '../errors.js';
import { inTransaction } from '../pg.js';
import { keyOf } from '../transport/envelope.js';
import { partitionOf } from '../transport/partitions.js';
import { newestPerKey, nextOffsets, type DecodedRecord } from './reduce.js';
import type { TableStatements } from './statements.js';

export interface ApplyResult {
  applied: number;
  /** Records already applied by an earlier transaction (their offset is below the stored one). */
  skipped: number;
}

/** Stored next offsets per partition; the truth about what the target contains. */
export async function readStoredOffsets(client: pg.Client, topics: string[]): Promise<Map<string, bigint>> {
  const { rows } = await client.query<{ topic: string; partition: number; next_offset: string }>(
    'SELECT topic, partition, next_offset::text FROM pgtunnel.consumer_offsets WHERE topic = ANY($1::text[])',
    [topics],
  );
  return new Map(rows.map((r) => [`${r.topic}\u0000${r.partition}`, BigInt(r.next_offset)]));
}

/**
 * Applies a polled set in ONE target transaction together with its offsets. Partition rows are locked
 * first, and records below the stored offsets dropped, so a record takes effect exactly once even when
 * Kafka redelivers it after a crash or a rebalance.
 */
export class TargetWriter {
  constructor(
    private readonly client: pg.Client,
    private readonly statementsByTopic: Map<string, TableStatements>,
    private readonly partitionCount: (topic: string) => Promise<number>,
  ) {}

  async apply(records: DecodedRecord[], offsetsOnly: { topic: string; partition: number; offset: bigint }[]): Promise<ApplyResult> {
    const all = [...records, ...offsetsOnly];
    if (all.length === 0) return { applied: 0, skipped: 0 };
    const advanced = [...nextOffsets(all).values()];
    const topics = advanced.map((o) => o.topic);
    const partitions = advanced.map((o) => o.partition);
    return inTransaction(this.client, async () => {
      await this.client.query(
        `INSERT INTO pgtunnel.consumer_offsets (topic, partition, next_offset)
         SELECT * FROM unnest($1::text[], $2::int[], array_fill(0::bigint, ARRAY[cardinality($1::text[])])) ON CONFLICT DO NOTHING`,
        [topics, partitions],
      );
      const { rows } = await this.client.query<{ topic: string; partition: number; next_offset: string }>(
        `SELECT o.topic, o.partition, o.next_offset::text FROM pgtunnel.consumer_offsets o
         JOIN unnest($1::text[], $2::int[]) AS p(topic, partition) USING (topic, partition)
         ORDER BY o.topic, o.partition FOR UPDATE OF o`,
        [topics, partitions],
      );
      const stored = new Map(rows.map((r) => [`${r.topic}\u0000${r.partition}`, BigInt(r.next_offset)]));
      const fresh = records.filter((r) => r.offset >= (stored.get(`${r.topic}\u0000${r.partition}`) ?? 0n));
      // A truncate is a barrier: what came before it in the set is written first, then its partition cleared.
      let newestSourceMs = 0;
      let segment: DecodedRecord[] = [];
      for (const r of fresh) {
        if (r.envelope.op !== 't') {
          segment.push(r);
          continue;
        }
        newestSourceMs = Math.max(newestSourceMs, await this.write(segment));
        segment = [];
        await this.truncatePartition(r.topic, r.partition);
      }
      newestSourceMs = Math.max(newestSourceMs, await this.write(segment));
      await this.client.query(
        `UPDATE pgtunnel.consumer_offsets o SET next_offset = GREATEST(o.next_offset, p.next_offset), applied_at = now(),
                last_latency_ms = COALESCE($4::float8, o.last_latency_ms)
         FROM unnest($1::text[], $2::int[], $3::bigint[]) AS p(topic, partition, next_offset)
         WHERE o.topic = p.topic AND o.partition = p.partition`,
        [topics, partitions, advanced.map((o) => o.next.toString()), newestSourceMs > 0 ? Date.now() - newestSourceMs : null],
      );
      return { applied: fresh.length, skipped: records.length - fresh.length };
    });
  }

  private statements(topic: string): TableStatements {
    const statements = this.statementsByTopic.get(topic);
    if (!statements) throw new TunnelError('PGT_UNKNOWN_TOPIC', `no target table is configured for topic ${topic}`);
    return statements;
  }

  /** One DELETE and one upsert per table for the newest change of each key; returns the newest source time. */
  private async write(records: DecodedRecord[]): Promise<number> {
    let newestSourceMs = 0;
    for (const [topic, writes] of newestPerKey(records)) {
      const statements = this.statements(topic);
      if (writes.deletes.length > 0) await this.client.query(statements.deleteSql, [JSON.stringify(writes.deletes)]);
      if (writes.upserts.length > 0) await this.client.query(statements.upsertSql, [JSON.stringify(writes.upserts)]);
      newestSourceMs = Math.max(newestSourceMs, writes.newestSourceMs);
    }
    return newestSourceMs;
  }

  /** A source TRUNCATE arrives once per partition; each copy clears the target keys of its partition. */
  private async truncatePartition(topic: string, partition: number): Promise<void> {
    const statements = this.statements(topic);
    const count = await this.partitionCount(topic);
    const { rows } = await this.client.query<{ k: Record<string, unknown> }>(statements.keysSql);
    const mine = rows.map((r) => r.k).filter((k) => partitionOf(keyOf(k, statements.key), count) === partition);
    if (mine.length > 0) await this.client.query(statements.deleteSql, [JSON.stringify(mine)]);
  }
}
