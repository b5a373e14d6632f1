import type pg from 'pg';
import { inTransaction } from '../pg.js';
import { compositeKey, partitionId } from '../names.js';
import type { DeadLetterWriter, RawRecord } from '../validate/deadLetters.js';
import { recordLetteredKeys } from '../validate/letteredKeys.js';
import { telemetry } from '../instruments/telemetry.js';
import { ChangeWriter } from './changeWriter.js';
import { parkedKeys, recordParked } from './parking.js';
import { truncatePartitionKeys } from './partitionTruncate.js';
import type { DecodedRecord } from './reduce.js';
import { decodeRecord, route, type Decoded } from './route.js';
import { SetOutcome } from './setOutcome.js';
import type { TableApply } from './targetWriter.js';
import type { HeldRecord, Unit } from './transactionBuffer.js';
import { replayedTruncate } from './truncateOnce.js';

/** Records decoded, routed and written at a time: a huge transaction is applied in pieces of one target transaction. */
const chunkRecords = 5000;

/**
 * Applies whole source transactions (units of a TransactionBuffer), several in ONE target transaction, in
 * the order given, with the stored offsets and the units applied ahead of them. Not a replica session:
 * foreign keys and triggers of the target fire. Deletes go child tables first and upserts parent tables
 * first (`topics`, parents first), so a parent and its children written in one transaction satisfy
 * non-deferrable keys; deferrable ones are checked at commit.
 */
export class TransactionApply {
  private readonly changes: ChangeWriter;

  constructor(
    private readonly client: pg.Client,
    private readonly tables: Map<string, TableApply>,
    private readonly partitionCount: (topic: string) => number,
    private readonly deadLetters: DeadLetterWriter,
    /** The tunnel's topics, parent tables before the tables referencing them. */
    private readonly topics: string[],
    beforeWrite: () => void = () => {},
  ) {
    this.changes = new ChangeWriter(client, tables, beforeWrite);
  }

  /** Applies the units and stores `offsets`; returns the records applied. */
  async apply(units: Unit[], offsets: { topic: string; partition: number; next: bigint }[]): Promise<number> {
    const outcome = await inTransaction(this.client, async () => {
      const outcome = new SetOutcome();
      await this.client.query('SET CONSTRAINTS ALL DEFERRED');
      let chunk: HeldRecord[] = [];
      for (const unit of units) {
        for await (const spilled of this.spilledOf(unit)) {
          chunk.push(...spilled);
          if (chunk.length >= chunkRecords) chunk = await this.flush(chunk, outcome);
        }
        chunk.push(...unit.records);
        if (chunk.length >= chunkRecords) chunk = await this.flush(chunk, outcome);
      }
      await this.flush(chunk, outcome);
      await this.deadLetters.send(outcome.letters);
      await recordParked(this.client, outcome);
      await this.store(units, offsets, outcome);
      return outcome;
    }).catch((err) => {
      this.changes.ended(undefined);
      throw err;
    });
    this.changes.ended(outcome);
    for (const [table, byOp] of outcome.ops) for (const [op, n] of byOp) telemetry.applied(table, op, n);
    const now = Date.now();
    telemetry.observeLatencies(outcome.latencies.map((sourceMs) => now - sourceMs));
    return [...outcome.counts.values()].reduce((n, c) => n + c.applied, 0);
  }

  /** A spilled unit's records, back from the target in pieces, in arrival order. */
  private async *spilledOf(unit: Unit): AsyncGenerator<HeldRecord[]> {
    for (let seq = 0; seq < unit.spilled; seq += chunkRecords) {
      const { rows } = await this.client.query<{ topic: string; partition: number; kafka_offset: string; record_key: string | null; record_value: string | null }>(
        `SELECT topic, partition, kafka_offset::text, record_key, record_value FROM pgtunnel.held_records
         WHERE unit_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq`,
        [unit.id, seq, seq + chunkRecords],
      );
      yield rows.map((r) => ({ topic: r.topic, partition: r.partition, offset: BigInt(r.kafka_offset), key: r.record_key ?? undefined, value: r.record_value ?? undefined }));
    }
    if (unit.spilled > 0) await this.client.query('DELETE FROM pgtunnel.held_records WHERE unit_id = $1', [unit.id]);
  }

  /** Decodes, routes and writes a piece; returns an empty piece. */
  private async flush(records: HeldRecord[], outcome: SetOutcome): Promise<HeldRecord[]> {
    if (records.length === 0) return records;
    const raw: RawRecord[] = records;
    const decoded = new Map<RawRecord, Decoded>();
    for (const r of raw) if (r.value !== undefined) decoded.set(r, decodeRecord(r, this.changes.routeTable(r.topic)));
    const parked = await parkedKeys(this.client, [...decoded].flatMap(([r, d]) => ('key' in d && d.envelope.op !== 't' ? [{ topic: r.topic, key: d.key }] : [])));
    const isParked = { has: (id: string) => parked.has(id) || outcome.parkedKeys.has(id) };
    const unrecorded = new Set<RawRecord>();
    for (const [r, d] of decoded) {
      const recorded = this.tables.get(r.topic)?.truncateRecorded;
      if ('envelope' in d && d.envelope.op === 't' && recorded && !(await recorded(d.envelope.source.txId, d.envelope.source.lsn))) unrecorded.add(r);
    }
    for (const step of route(raw, decoded, (topic) => this.changes.routeTable(topic), isParked, unrecorded)) {
      if (step.kind === 'dead') outcome.dead(step.record, step.letter, step.park);
      else if (step.kind === 'write') await this.writeOrdered(step.records, outcome);
      else {
        const replayed = await replayedTruncate(this.client, step.record, decoded.get(step.record));
        if (replayed) {
          outcome.dead(step.record, replayed, false);
          continue;
        }
        const { topic, partition } = step.record;
        await truncatePartitionKeys(this.client, this.changes.table(topic).statements, this.partitionCount(topic), partition);
        if (partition === 0) {
          outcome.count(step.record, 'applied');
          outcome.appliedOp(step.table, 't');
        }
      }
    }
    await recordLetteredKeys(this.client, raw.filter((r) => decoded.get(r) && !('poison' in decoded.get(r)!)), outcome.letters.filter((l) => l.letter.errorClass !== 'poison'));
    return [];
  }

  /** Keys that end deleted go first, child tables first; then upserts, parent tables first. */
  private async writeOrdered(records: DecodedRecord[], outcome: SetOutcome): Promise<void> {
    const lastOp = new Map<string, string>();
    for (const r of records) lastOp.set(compositeKey(r.topic, r.key), r.envelope.op);
    const deletes = new Map<string, DecodedRecord[]>();
    const upserts = new Map<string, DecodedRecord[]>();
    for (const r of records) {
      const into = lastOp.get(compositeKey(r.topic, r.key)) === 'd' ? deletes : upserts;
      const list = into.get(r.topic);
      if (list) list.push(r);
      else into.set(r.topic, [r]);
    }
    for (const topic of [...this.topics].reverse()) if (deletes.has(topic)) await this.changes.write(deletes.get(topic)!, outcome);
    for (const topic of this.topics) if (upserts.has(topic)) await this.changes.write(upserts.get(topic)!, outcome);
  }

  /**
   * The stored offsets move to each partition's lowest record still held; a unit with records at or past
   * that offset is remembered as applied (a restart reads those records again and skips them).
   */
  private async store(units: Unit[], offsets: { topic: string; partition: number; next: bigint }[], outcome: SetOutcome): Promise<void> {
    const next = new Map(offsets.map((o) => [partitionId(o.topic, o.partition), o.next]));
    const ahead = units.flatMap((u) => [...u.marks.values()].filter((m) => m.last >= (next.get(partitionId(m.topic, m.partition)) ?? 0n)).map((m) => ({ id: u.id, ...m })));
    const counts = offsets.map((o) => outcome.counts.get(partitionId(o.topic, o.partition)) ?? { applied: 0, dead: 0, poison: 0 });
    await this.client.query(
      `INSERT INTO pgtunnel.consumer_offsets AS o (topic, partition, next_offset, applied, dead_lettered, poison, last_latency_ms)
       SELECT p.topic, p.partition, p.next_offset, p.applied, p.dead, p.poison, $7::float8
       FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) AS p(topic, partition, next_offset, applied, dead, poison)
       ON CONFLICT (topic, partition) DO UPDATE SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset), applied_at = now(),
         last_latency_ms = COALESCE(EXCLUDED.last_latency_ms, o.last_latency_ms),
         applied = o.applied + EXCLUDED.applied, dead_lettered = o.dead_lettered + EXCLUDED.dead_lettered, poison = o.poison + EXCLUDED.poison`,
      [
        offsets.map((o) => o.topic),
        offsets.map((o) => o.partition),
        offsets.map((o) => o.next.toString()),
        counts.map((c) => c.applied),
        counts.map((c) => c.dead),
        counts.map((c) => c.poison),
        outcome.newestSourceMs > 0 ? Date.now() - outcome.newestSourceMs : null,
      ],
    );
    if (ahead.length > 0) {
      await this.client.query(
        `INSERT INTO pgtunnel.applied_ahead (unit_id, topic, partition, last_offset)
         SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) ON CONFLICT DO NOTHING`,
        [ahead.map((a) => a.id), ahead.map((a) => a.topic), ahead.map((a) => a.partition), ahead.map((a) => a.last.toString())],
      );
    }
    await this.client.query(
      `DELETE FROM pgtunnel.applied_ahead a USING pgtunnel.consumer_offsets o
       WHERE a.topic = o.topic AND a.partition = o.partition AND a.last_offset < o.next_offset AND a.topic = ANY ($1::text[])`,
      [[...new Set(offsets.map((o) => o.topic))]],
    );
  }
}

/**
 * Pure: the topics in foreign-key order, parents first (Kahn's order; a cycle keeps the configured order
 * for its tables: declare such keys DEFERRABLE). `references`: table id → the table ids it references.
 */
export function parentsFirst(topics: { topic: string; table: string }[], references: Map<string, Set<string>>): string[] {
  const out: string[] = [];
  const done = new Set<string>();
  const tables = new Set(topics.map((t) => t.table));
  let left = [...topics];
  while (left.length > 0) {
    const free = left.filter((t) => [...(references.get(t.table) ?? [])].every((p) => p === t.table || done.has(p) || !tables.has(p)));
    const next = free.length > 0 ? free : [left[0]!];
    for (const t of next) {
      out.push(t.topic);
      done.add(t.table);
    }
    left = left.filter((t) => !next.includes(t));
  }
  return out;
}

/** Which of the target's tables reference which (foreign keys), as table ids. */
export async function foreignKeys(client: pg.Client): Promise<Map<string, Set<string>>> {
  const { rows } = await client.query<{ child: string; parent: string }>(
    `SELECT cn.nspname || '.' || cr.relname AS child, pn.nspname || '.' || pr.relname AS parent
     FROM pg_constraint c
     JOIN pg_class cr ON cr.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cr.relnamespace
     JOIN pg_class pr ON pr.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pr.relnamespace
     WHERE c.contype = 'f'`,
  );
  const out = new Map<string, Set<string>>();
  for (const r of rows) out.set(r.child, (out.get(r.child) ?? new Set()).add(r.parent));
  return out;
}
