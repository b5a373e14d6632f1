import type pg from 'pg';
import { coerceError, isRefusedChange, TunnelError } from '../errors.js';
import { inTransaction } from '../pg.js';
import { compositeKey, partitionId } from '../names.js';
import type { DeadLetter, DeadLetterWriter, RawRecord } from '../validate/deadLetters.js';
import { recordLetteredKeys } from '../validate/letteredKeys.js';
import { ChangeWriter } from './changeWriter.js';
import { parkedKeys, recordParked } from './parking.js';
import { truncatePartitionKeys } from './partitionTruncate.js';
import type { DecodedRecord } from './reduce.js';
import { decodeRecord, route, type Decoded } from './route.js';
import { reportOutcome, SetOutcome } from './setOutcome.js';
import type { TableApply } from './targetWriter.js';
import type { HeldRecord, Unit } from './transactionBuffer.js';
import { replayedTruncate } from './truncateOnce.js';
import { letterUnit, targetLetter } from './unitLetters.js';

/** Records decoded, routed and written at a time: a huge transaction is applied in pieces of one target transaction. */
const chunkRecords = 5000;

/**
 * How long a transaction the target refuses for a foreign key waits for the source transaction that makes it
 * valid (its parent's insert, its children's delete) to arrive, before it becomes dead letters.
 */
const foreignKeyWaitMs = 30_000;

/** A unit of the set has a dead letter: the set is applied again unit by unit, so that unit goes whole. */
class LetterInSet extends Error {}

/**
 * Applies whole source transactions (units of a TransactionBuffer), several in ONE target transaction, in
 * the order given, with the stored offsets and the units applied ahead of them. Not a replica session:
 * foreign keys and triggers of the target fire. Deletes go child tables first and upserts parent tables
 * first (`topics`, parents first), so a parent and its children written in one transaction satisfy
 * non-deferrable keys; deferrable ones are checked at commit. A transaction with a dead letter (a rule, a
 * refused value, a parked key) is never applied in part: all its records go to the DLQ (`unitLetters.ts`).
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
    /** unit id → when a foreign key first refused it; kept by the caller across restarts of the applier */
    private readonly foreignKeyWaits = new Map<string, number>(),
  ) {
    this.changes = new ChangeWriter(client, tables, beforeWrite);
  }

  /** Applies the units and stores `offsets`; returns the records applied. */
  async apply(units: Unit[], offsets: { topic: string; partition: number; next: bigint }[]): Promise<number> {
    let outcome: SetOutcome;
    try {
      outcome = await this.attempt(units, offsets, (o) => this.together(units, o));
    } catch (err) {
      if (!(err instanceof LetterInSet) && !isRefusedChange(err)) throw err;
      outcome = await this.attempt(units, offsets, (o) => this.apart(units, o));
    }
    this.changes.ended(outcome);
    reportOutcome(outcome, (topic) => this.tables.get(topic)?.table);
    return [...outcome.counts.values()].reduce((n, c) => n + c.applied, 0);
  }

  /** One target transaction: `body` writes, then the dead letters, parked keys and offsets are stored. */
  private async attempt(units: Unit[], offsets: { topic: string; partition: number; next: bigint }[], body: (outcome: SetOutcome) => Promise<void>): Promise<SetOutcome> {
    return inTransaction(this.client, async () => {
      const outcome = new SetOutcome();
      await body(outcome);
      await this.deadLetters.send(outcome.letters);
      await recordParked(this.client, outcome);
      await this.store(units, offsets, outcome);
      return outcome;
    }).catch((err) => {
      this.changes.ended(undefined);
      throw err;
    });
  }

  /** The fast way: every unit's records in set-based pieces; any dead letter sends the set the slow way. */
  private async together(units: Unit[], outcome: SetOutcome): Promise<void> {
    await this.client.query('SET CONSTRAINTS ALL DEFERRED');
    await this.writeUnits(units, outcome);
    if (outcome.letters.length > 0) throw new LetterInSet();
  }

  private async writeUnits(units: Unit[], outcome: SetOutcome): Promise<void> {
    let chunk: HeldRecord[] = [];
    for (const unit of units) {
      for await (const piece of this.recordsOf(unit)) {
        // at most chunkRecords per write: a spilled piece and the records in memory after it are not one write
        for (const r of piece) {
          chunk.push(r);
          if (chunk.length >= chunkRecords) chunk = await this.flush(chunk, outcome);
        }
      }
    }
    await this.flush(chunk, outcome);
  }

  /**
   * The slow way, still one target transaction: halves of the set under savepoints, down to the units with a
   * dead letter or a refusal, which go to the DLQ whole. A unit a foreign key refused is tried again after the
   * set's others (one of them may be the parent it needs), then waited for (`foreignKeyWaitMs`): its partner
   * may still be on its way.
   */
  private async apart(units: Unit[], outcome: SetOutcome): Promise<void> {
    const later = { units: [] as Unit[], ids: new Set<string>() };
    await this.halves(units, outcome, later);
    for (const unit of later.units) await this.alone(unit, outcome, true);
  }

  /** `later`: units put after the set's others (a foreign key refused them), and their ids. */
  private async halves(units: Unit[], outcome: SetOutcome, later: { units: Unit[]; ids: Set<string> }): Promise<void> {
    // a unit that goes after one put later (it wrote one of its keys) goes later too: a key's writers stay in order
    const behind = (u: Unit) => [...u.after].some((id) => later.ids.has(id));
    if (units.length === 1) {
      const unit = units[0]!;
      if (behind(unit) || !(await this.alone(unit, outcome, false))) {
        later.units.push(unit);
        later.ids.add(unit.id);
      }
      return;
    }
    if (!units.some(behind)) {
      await this.client.query('SAVEPOINT pgtunnel_units');
      const own = new SetOutcome();
      try {
        await this.client.query('SET CONSTRAINTS ALL DEFERRED');
        await this.writeUnits(units, own);
        await this.client.query('SET CONSTRAINTS ALL IMMEDIATE');
        if (own.letters.length === 0) {
          await this.client.query('RELEASE SAVEPOINT pgtunnel_units');
          outcome.absorb(own);
          return;
        }
      } catch (err) {
        if (!isRefusedChange(err)) throw err;
      }
      await this.undo('pgtunnel_units');
    }
    const mid = units.length >> 1;
    await this.halves(units.slice(0, mid), outcome, later);
    await this.halves(units.slice(mid), outcome, later);
  }

  /** Back to the savepoint, which then goes (no subtransactions pile up); the staging tables are as it found them. */
  private async undo(savepoint: string): Promise<void> {
    await this.client.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
    await this.client.query(`RELEASE SAVEPOINT ${savepoint}`);
    this.changes.staging.ended(false);
  }

  /** One unit under a savepoint; false when a foreign key refused it and `last` is not set (try it later). */
  private async alone(unit: Unit, outcome: SetOutcome, last: boolean): Promise<boolean> {
    await this.client.query('SAVEPOINT pgtunnel_unit');
    const own = new SetOutcome();
    let refused: DeadLetter | undefined;
    try {
      await this.client.query('SET CONSTRAINTS ALL DEFERRED');
      for await (const piece of this.recordsOf(unit)) {
        for (let i = 0; i < piece.length; i += chunkRecords) await this.flush(piece.slice(i, i + chunkRecords), own);
      }
      // deferred keys are checked here, where the unit can still be told apart
      await this.client.query('SET CONSTRAINTS ALL IMMEDIATE');
    } catch (err) {
      if (!isRefusedChange(err)) throw err;
      refused = targetLetter(err);
      if (refused.code === '23503' && !(await this.foreignKeyWaited(unit, err, last))) return false;
    }
    if (refused === undefined && own.letters.length === 0) {
      await this.client.query('RELEASE SAVEPOINT pgtunnel_unit');
      this.foreignKeyWaits.delete(unit.id);
      outcome.absorb(own);
      return true;
    }
    if (refused?.code !== '23503') await this.undo('pgtunnel_unit');
    this.foreignKeyWaits.delete(unit.id);
    await letterUnit(this.client, unit.id, this.recordsOf(unit), own.letters, refused, (topic) => this.changes.routeTable(topic), outcome);
    return true;
  }

  /**
   * A unit a foreign key refused: false to try it after the set's others; throws (retryable: the applier
   * reads again from its stored offsets) while its partner may still arrive; true once it waited long enough.
   */
  private async foreignKeyWaited(unit: Unit, err: unknown, last: boolean): Promise<boolean> {
    await this.undo('pgtunnel_unit');
    if (!last) return false;
    const since = this.foreignKeyWaits.get(unit.id) ?? Date.now();
    this.foreignKeyWaits.set(unit.id, since);
    if (Date.now() - since >= foreignKeyWaitMs) return true;
    throw new TunnelError('PGT_APPLY_WAITING', `source transaction ${unit.id} is refused by a foreign key of the target (${coerceError(err).message}); waiting up to ${foreignKeyWaitMs / 1000} s for the transaction it depends on`, {
      errorClass: 'retryable',
      hint: 'nothing to do if it passes; if it becomes dead letters, the target has a foreign key the source lacks',
      cause: err,
    });
  }

  /** A unit's records in arrival order: the spilled ones back from the target in pieces, then those in memory. */
  private async *recordsOf(unit: Unit): AsyncGenerator<HeldRecord[]> {
    yield* this.spilledOf(unit);
    yield unit.records;
  }

  /** A spilled unit's records, back from the target in pieces, in arrival order; then gone from the target. */
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
