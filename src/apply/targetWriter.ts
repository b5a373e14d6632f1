import pg from 'pg';
import { classify, coerceError, decide, isRefusedChange, isTableLevel } from '../errors.js';
import { inTransaction } from '../pg.js';
import type { CompiledRule } from '../validate/rules.js';
import type { DeadLetterWriter, RawRecord } from '../validate/deadLetters.js';
import { recordLetteredKeys } from '../validate/letteredKeys.js';
import { nextOffsets } from './reduce.js';
import { TableStatements } from './statements.js';
import { reportOutcome, SetOutcome } from './setOutcome.js';
import { ChangeWriter } from './changeWriter.js';
import { CopyPath, type AvroPairOf, type ScannedSet } from './copyPath.js';
import { OneStatementPath } from './oneStatement.js';
import { advanceOffsets, freshRecords, lockOffsets } from './offsets.js';
import { parkedKeys, recordParked } from './parking.js';
import { decodeRecord, route, type Decoded } from './route.js';
import type { TableShape } from '../capture/catalog.js';
import { telemetry } from '../instruments/telemetry.js';
import { replayedTruncate } from './truncateOnce.js';
import { truncatePartitionKeys } from './partitionTruncate.js';

/** How one target table is written: its statements and the table's rules and policies. */
export interface TableApply {
  /** schema.table, for metrics */
  table: string;
  statements: TableStatements;
  /**
   * autoCreate: adds source columns the target lacks, inside the apply transaction, and returns the
   * target's new shape; undefined when the target's columns are left as they are.
   */
  evolve?: (target: pg.Client, columns: string[]) => Promise<TableShape>;
  /**
   * Whether the source's capture recorded this truncate (pgtunnel.truncates): a truncate is honoured only
   * from the table's own capture, never from whoever else can write the topic.
   */
  truncateRecorded?: (txid: string | null, changeId: string | null) => Promise<boolean>;
  /** The topic's format: a record in the wire format is read only when it is avro or json-schema. */
  format?: 'json' | 'avro' | 'json-schema';
  /** autoCreate: changes target column types to the source's (after ALTER COLUMN TYPE on the source). */
  followTypes?: (target: pg.Client) => Promise<TableShape | undefined>;
  rules: CompiledRule[];
  onMissingKey: 'upsert' | 'dead-letter';
  orderPolicy: 'park' | 'continue';
}

export interface ApplyResult {
  applied: number;
  deadLettered: number;
  /** Records already applied by an earlier transaction (their offset is below the stored one). */
  skipped: number;
}

/** How the writer reads wire records it was handed undecoded (RawRecord.deferred): the consumer's decoder. */
export interface DeferredRecords {
  avroPair: AvroPairOf;
  /** The record decoded as the general path reads it (or its poison). */
  decode(r: RawRecord): Promise<RawRecord>;
}

/**
 * Applies a polled set in ONE target transaction together with its offsets. Partition rows are locked
 * first, and records below the stored offsets dropped, so a record takes effect exactly once even when
 * Kafka redelivers it. Dead letters are in Kafka before the transaction commits, so none is lost.
 */
export class TargetWriter {
  private readonly changes: ChangeWriter;
  private readonly copyPath: CopyPath;
  private readonly oneStatement: OneStatementPath;
  /** Sets applied as one statement (oneStatement.ts), for tests and the bench. */
  setsAsOne = 0;

  constructor(
    private readonly client: pg.Client,
    private readonly tables: Map<string, TableApply>,
    private readonly partitionCount: (topic: string) => Promise<number>,
    private readonly deadLetters: DeadLetterWriter,
    /** Called before each table's rows are written, inside the transaction (a test's fault point). */
    private readonly beforeWrite: () => void = () => {},
    /** false: every set takes the general path (the bench's baseline); else new inserts and snapshot reads go by copyPath.ts. */
    private readonly byCopy = true,
    private readonly deferred?: DeferredRecords,
  ) {
    this.changes = new ChangeWriter(client, tables, beforeWrite);
    this.copyPath = new CopyPath(client, tables, deferred?.avroPair);
    this.oneStatement = new OneStatementPath(client, this.copyPath);
  }

  /**
   * The byte path's scan of a set, outside its transaction (the consumer decodes set N+1 while set N is
   * written): its COPY lines, or undefined when the set needs the general path (the caller times it as decode).
   */
  scan(records: RawRecord[]): ScannedSet | undefined {
    return this.byCopy ? this.copyPath.scan(records) : undefined;
  }

  /** A set scanned by `scan` and applied: its line buffers serve the next sets. */
  release(scanned: ScannedSet | undefined): void {
    this.copyPath.release(scanned);
  }

  /** Deferred records decoded (the general path reads their texts); the others as they are. */
  async undeferred(records: RawRecord[]): Promise<RawRecord[]> {
    if (!records.some((r) => r.deferred)) return records;
    if (!this.deferred) throw new Error('a deferred wire record reached a writer without a decoder');
    return Promise.all(records.map((r) => (r.deferred ? this.deferred!.decode(r) : r)));
  }

  /** Milliseconds the caller spent decoding the next set's records (the wire format): the decode stage of its apply. */
  private decodedBefore = 0;

  noteDecoded(ms: number): void {
    this.decodedBefore += ms;
  }

  /**
   * A record the target refuses (the error policy's dead-letter decision) is found by splitting the set
   * and becomes a dead letter; the rest of the set is applied. Every other error leaves the set unapplied:
   * transient ones are retried, table-wide ones and bugs stop the consumer.
   */
  async apply(records: RawRecord[], scanned?: ScannedSet): Promise<ApplyResult> {
    return (scanned && (await this.applyAsOne(records, scanned))) || this.applySplitting(records, false, scanned);
  }

  /** A small set as one statement (oneStatement.ts); undefined leaves it to the transaction below. */
  private async applyAsOne(records: RawRecord[], scanned: ScannedSet): Promise<ApplyResult | undefined> {
    const startedAt = performance.now();
    let outcome: SetOutcome | undefined;
    try {
      outcome = await this.oneStatement.apply(records, scanned, this.beforeWrite);
    } catch (err) {
      // a bug stops the consumer; anything else the general path meets again (retry, refused value to split, table stop)
      if (decide(err) === 'stop-process') throw err;
      return undefined;
    }
    if (!outcome) return undefined;
    const decode = this.decodedBefore;
    this.decodedBefore = 0;
    this.setsAsOne++;
    this.report(outcome);
    // the statement carries its commit: apply is the whole round trip
    telemetry.stages({ decode, apply: performance.now() - startedAt, commit: 0 });
    return { applied: appliedCount(outcome), deadLettered: 0, skipped: 0 };
  }

  private async applySplitting(records: RawRecord[], typesFollowed: boolean, scanned?: ScannedSet): Promise<ApplyResult> {
    try {
      return await this.applyOnce(records, undefined, scanned);
    } catch (err) {
      if (!isRecordLevel(err)) throw err;
      // a value the target's column type cannot hold may follow a type change on the source
      if (isRefusedChange(err) && !typesFollowed && (await this.followTypes(records))) return this.applySplitting(records, true);
      if (records.length === 1) return this.applyOnce(records, err);
      const at = this.refusedAt(records);
      if (at >= 0) return this.applyParts([records.slice(0, at), [records[at]!], records.slice(at + 1)]);
      const mid = Math.ceil(records.length / 2);
      // the halves need not follow the source's types again: that was tried for the whole set
      return this.applyParts([records.slice(0, mid), records.slice(mid)]);
    }
  }

  /** The parts of a refused set, in order; the types were followed for the whole set already. */
  private async applyParts(parts: RawRecord[][]): Promise<ApplyResult> {
    const sum: ApplyResult = { applied: 0, deadLettered: 0, skipped: 0 };
    for (const part of parts) {
      const r = await this.applySplitting(part, true);
      sum.applied += r.applied;
      sum.deadLettered += r.deadLettered;
      sum.skipped += r.skipped;
    }
    return sum;
  }

  /** Where the byte path's COPY named the refused record (its line), -1 when it did not. */
  private refusedAt(records: RawRecord[]): number {
    const refused = this.copyPath.takeRefused();
    return refused === undefined ? -1 : records.indexOf(refused);
  }

  /** True when a table of the set changed column types to follow the source. */
  private async followTypes(records: RawRecord[]): Promise<boolean> {
    let changed = false;
    for (const topic of new Set(records.map((r) => r.topic))) {
      const table = this.tables.get(topic);
      if (!table?.followTypes) continue;
      try {
        const shape = await table.followTypes(this.client);
        if (shape) {
          table.statements = new TableStatements(shape);
          changed = true;
        }
      } catch (err) {
        // the target's values do not convert: the refused changes become dead letters with the reason
        if (!isRefusedChange(err) && !isTableLevel(err)) throw err;
      }
    }
    return changed;
  }

  private async applyOnce(records: RawRecord[], refused?: unknown, scanned?: ScannedSet): Promise<ApplyResult> {
    if (records.length === 0) return { applied: 0, deadLettered: 0, skipped: 0 };
    const advanced = [...nextOffsets(records).values()];
    const topics = advanced.map((o) => o.topic);
    const partitions = advanced.map((o) => o.partition);
    // decode inside the transaction; the caller's decoding of the records before it counts as decode too
    const timing = { before: this.decodedBefore, decode: 0, startedAt: performance.now(), writtenAt: 0 };
    this.decodedBefore = 0;
    return inTransaction(this.client, async () => {
      const stored = await lockOffsets(this.client, topics, partitions);
      let fresh = freshRecords(records, stored);
      const outcome = new SetOutcome();
      outcome.fresh = fresh.length;
      const copied = refused || !this.byCopy ? undefined : await this.copyPath.apply(fresh, outcome, this.changes.staging, this.beforeWrite, scanned);
      if (!refused && this.byCopy) timing.decode += this.copyPath.scanMs;
      if (copied) {
        // no letters, nothing parked: the guard's probe and the offsets remain
        await recordLetteredKeys(this.client, copied, []);
        await advanceOffsets(this.client, advanced, outcome);
        timing.writtenAt = performance.now();
        return outcome;
      }
      // Keys are canonical from here on (parked keys, letters, the supersede guard): a key spelled another
      // way, or binary garbage in a poison record's key, must neither miss its parked key nor break a query.
      const decodeAt = performance.now();
      fresh = await this.undeferred(fresh);
      const decoded = new Map(fresh.filter((r) => r.value !== undefined && r.value !== null).map((r) => [r, this.decode(r)] as const));
      timing.decode += performance.now() - decodeAt;
      if (refused && fresh.length === 1) {
        const only = fresh[0]!;
        const d = decoded.get(only);
        const db = refused instanceof pg.DatabaseError ? refused : undefined;
        if (d && 'poison' in d) outcome.dead(only, d.poison, false);
        else if (d) outcome.dead({ ...only, key: d.key }, {
          errorClass: 'target',
          code: db?.code ?? classify(refused).code,
          message: `${isRefusedChange(refused) ? 'the target refused the change' : 'applying the change failed'}: ${coerceError(refused).message}`,
          details: { constraint: db?.constraint, table: db?.table, column: db?.column, detail: db?.detail },
        }, this.changes.table(only.topic).orderPolicy === 'park');
      } else {
        await this.routeAndWrite(fresh, decoded, outcome);
      }
      // Durably in the DLQ before the offsets that skip past them commit.
      await this.deadLetters.send(outcome.letters);
      await recordParked(this.client, outcome);
      // dlq replay's supersede guard (src/validate/letteredKeys.ts); touches only keys with dead letters.
      // Poison has no key to guard: its raw key may be anything (a NUL, 20 kB), so it stays out.
      const keyed = fresh.flatMap((r) => {
        const d = decoded.get(r);
        if (d && 'poison' in d) return [];
        return [d ? { ...r, key: d.envelope.op === 't' ? undefined : d.key } : r];
      });
      await recordLetteredKeys(this.client, keyed, outcome.letters.filter((l) => l.letter.errorClass !== 'poison'));
      await advanceOffsets(this.client, advanced, outcome);
      timing.writtenAt = performance.now();
      return outcome;
    }).then((outcome) => {
      this.changes.ended(outcome);
      this.report(outcome);
      const now = performance.now();
      telemetry.stages({ decode: timing.before + timing.decode, apply: timing.writtenAt - timing.startedAt - timing.decode, commit: now - timing.writtenAt });
      return {
        applied: appliedCount(outcome),
        deadLettered: outcome.letters.length,
        skipped: records.length - outcome.fresh,
      };
    }, (err) => {
      this.changes.ended(undefined);
      throw err;
    });
  }

  /** After the commit: what the set did, for metrics and the dashboard. */
  private report(outcome: SetOutcome): void {
    reportOutcome(outcome, (topic) => this.tables.get(topic)?.table);
  }

  private decode(r: RawRecord): Decoded {
    return decodeRecord(r, this.changes.routeTable(r.topic));
  }

  /** Takes the routed steps in order: a dead letter parks its key before the next record is routed. */
  private async routeAndWrite(fresh: RawRecord[], decoded: Map<RawRecord, Decoded>, outcome: SetOutcome): Promise<void> {
    const parked = await parkedKeys(this.client, [...decoded].flatMap(([r, d]) => ('key' in d && d.envelope.op !== 't' ? [{ topic: r.topic, key: d.key }] : [])));
    const unrecorded = new Set<RawRecord>();
    for (const [r, d] of decoded) {
      const truncateRecorded = this.tables.get(r.topic)?.truncateRecorded;
      if ('envelope' in d && d.envelope.op === 't' && truncateRecorded && !(await truncateRecorded(d.envelope.source.txId, d.envelope.source.lsn))) unrecorded.add(r);
    }
    const isParked = { has: (id: string) => parked.has(id) || outcome.parkedKeys.has(id) };
    for (const step of route(fresh, decoded, (topic) => this.changes.routeTable(topic), isParked, unrecorded)) {
      if (step.kind === 'dead') outcome.dead(step.record, step.letter, step.park);
      else if (step.kind === 'write') await this.changes.write(step.records, outcome);
      else {
        const r = step.record;
        const replayed = await replayedTruncate(this.client, r, decoded.get(r));
        if (replayed) outcome.dead(r, replayed, false);
        if (replayed) continue;
        await this.truncatePartition(r.topic, r.partition);
        if (r.partition === 0) {
          outcome.count(r, 'applied'); // one truncate change, however many partitions carry it
          outcome.appliedOp(step.table, 't');
        }
      }
    }
  }

  /** A source TRUNCATE arrives once per partition; each copy clears the target keys of its partition. */
  private async truncatePartition(topic: string, partition: number): Promise<void> {
    await truncatePartitionKeys(this.client, this.changes.table(topic).statements, await this.partitionCount(topic), partition);
  }

}

/**
 * An apply error caused by the records of the set (found by bisecting): only what the error policy allows
 * (a refused change). Anything else, an unexpected error (a bug) above all, stops the consumer with its
 * stack instead of draining the topic into the DLQ record by record.
 */
function isRecordLevel(err: unknown): boolean {
  return decide(err) === 'dead-letter';
}


/** The records of a set that took effect (a tombstone does not). */
function appliedCount(outcome: SetOutcome): number {
  return [...outcome.counts.values()].reduce((n, c) => n + c.applied, 0);
}
