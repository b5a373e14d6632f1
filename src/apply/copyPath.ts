import pg from 'pg';
import { sqlState } from '../errors.js';
import { CopyOut } from '../contracts/byteScan.js';
import { EnvelopeScanner } from '../contracts/envelopeScanner.js';
import { AvroScanner } from '../contracts/avroScanner.js';
import type { AvroPair } from '../contracts/recordDecoder.js';
import type { Op } from '../contracts/envelope.js';
import type { RawRecord } from '../validate/deadLetters.js';
import { anyParked } from './parking.js';
import type { SetOutcome } from './setOutcome.js';
import { copyInBuffer, type Staging } from './staging.js';
import type { TableStatements } from './statements.js';
import type { TableApply } from './targetWriter.js';

/** feature_not_supported (COPY FROM under row-level security), wrong_object_type (a view). */
const noCopy = new Set(['0A000', '42809']);

/**
 * Line buffers kept for reuse: a set's lines are one buffer per table and column subset (nearly always one), and
 * at most one set is scanned while another is written, so a pair. Each kept one is resident for good: more would
 * raise the floor (bench/RESULTS.md buf1). One grown past a full set's lines (one huge record) is not kept.
 */
const keptOuts = 2;
const keptOutBytes = 8 * 1024 * 1024;

/** One table's COPY text of the set, per column subset (nearly always one: every column). */
export interface TableLines {
  table: TableApply;
  statements: TableStatements;
  bySignature: Map<string, LineGroup>;
  creates: number;
  reads: number;
  updates: number;
  deletes: number;
}

/** One COPY's columns, text, and the records of its lines in order (a refused line names its record). */
export interface LineGroup {
  columns: string[];
  out: CopyOut;
  records: RawRecord[];
}

/** A change of a small set, in set order: its key, and its row's line in its group's text (none for a delete). */
export interface SetChange {
  table: TableLines;
  op: Op;
  keyText: string;
  group?: LineGroup;
  start: number;
  end: number;
}

/** Sets up to this many records are scanned with their updates, deletes and repeated keys (the one-statement path's). */
export const smallSetRecords = 256;

/** What the copy path reads of a scanner, JSON's or Avro's. */
type RowScanner = Pick<EnvelopeScanner, 'op' | 'keyText' | 'tsMs' | 'copyable' | 'unknownColumns' | 'signature' | 'lineColumns'> & { writeLine(out: CopyOut): boolean | void };

/** A set's COPY lines, scanned before its transaction (the consumer's decode stage) or in it. */
export interface ScannedSet {
  lines: Map<string, TableLines>;
  keyed: RawRecord[];
  newest: number;
  latencies: number[];
  /** How many records were scanned: the set is used only when every one is still fresh. */
  size: number;
  /** A small set's changes in order (up to smallSetRecords records); undefined for a larger one. */
  changes?: SetChange[];
  /** Whether some record is not a new row of a key new to the set (an update, a delete, a tombstone, a key twice): not for COPY. */
  mixed: boolean;
}

/** The writers' Avro schemas of a deferred record (RecordDecoder.avroPair), when at hand. */
export type AvroPairOf = (r: RawRecord) => AvroPair | undefined;

/**
 * The apply's cheap case: a set of inserts and snapshot reads (op c/r) in JSON, JSON Schema or Avro, of keys the target does not
 * have, goes through the byte scanner straight into COPY of the target tables — no decoded objects, no
 * staging table, no upsert. Anything else about the set (another op, a rule, a parked key, a key twice, a
 * nested value, a column the target lacks, a key the target has) leaves it to the general path, untouched.
 */
export class CopyPath {
  private readonly scanners = new WeakMap<TableStatements, EnvelopeScanner>();
  private readonly avroScanners = new WeakMap<TableStatements, Map<string, AvroScanner>>();
  /** Tables whose COPY the server refuses whatever the rows: they keep the general path. */
  private readonly refusing = new Set<string>();
  /** The record whose COPY line the target refused in the last apply, for the writer to split the set at. */
  private refused: RawRecord | undefined;
  /** Milliseconds the last apply spent scanning (the decode stage). */
  scanMs = 0;
  /** Line buffers of sets written or given up, for the next sets' lines instead of new ones per set. */
  private readonly spareOuts: CopyOut[] = [];
  /** Sets whose lines were given back: a set given back twice would hand one buffer to two sets. */
  private readonly released = new WeakSet<ScannedSet>();

  constructor(private readonly client: pg.Client, private readonly tables: Map<string, TableApply>, private readonly avroPair: AvroPairOf = () => undefined) {}

  /** The record's scanner, having read it as a row; undefined when the byte path does not take it. */
  private scanned(r: RawRecord, statements: TableStatements): RowScanner | undefined {
    if (r.deferred) {
      const pair = this.avroPair(r);
      if (!pair) return undefined;
      let byIds = this.avroScanners.get(statements);
      if (!byIds) this.avroScanners.set(statements, (byIds = new Map()));
      let a = byIds.get(pair.ids);
      if (!a) byIds.set(pair.ids, (a = new AvroScanner(statements.scanTable(), pair.value.type, pair.value.schema, pair.key.type, pair.key.schema)));
      return a.scan(pair.value.payload, pair.key.payload) === 'row' ? a : undefined;
    }
    // JSON, and JSON Schema's payload (its schema id checked by the decoder): the same JSON text
    // the bytes as fetched first: a fetched record's texts are made only when asked for (ApplyConsumer)
    const value = r.valueBytes ?? r.value;
    if (value === undefined || value === null || r.decoded || r.unreadable || (r.wire && r.wire.format !== 'json-schema')) return undefined;
    let s = this.scanners.get(statements);
    if (!s) this.scanners.set(statements, (s = new EnvelopeScanner(statements.scanTable())));
    const key = r.keyBytes ?? (r.key === undefined ? undefined : Buffer.from(r.key));
    return s.scan(typeof value === 'string' ? Buffer.from(value) : value, key) === 'row' ? s : undefined;
  }

  /**
   * Writes the set and counts it in `outcome`, returning the records with their canonical keys; undefined
   * (nothing written, the transaction as it was) when the set needs the general path.
   */
  async apply(fresh: RawRecord[], outcome: SetOutcome, staging: Staging, beforeWrite: () => void, before?: ScannedSet): Promise<RawRecord[] | undefined> {
    this.refused = undefined;
    const own = !(before && this.stillValid(before, fresh));
    const scanned = own ? this.scan(fresh) : before;
    if (!scanned) return undefined;
    if (scanned.mixed) {
      if (own) this.release(scanned);
      return undefined;
    }
    const { lines, keyed, newest, latencies } = scanned;
    // a set scanned here is done with once this returns (its COPY answered); the caller's, when the caller says
    const copied = await this.written(lines, staging, beforeWrite);
    if (own) this.release(scanned);
    if (!copied) return undefined;
    countCopied(keyed, lines, outcome);
    outcome.latencies.push(...latencies);
    outcome.newestSourceMs = Math.max(outcome.newestSourceMs, newest);
    return keyed;
  }

  private async written(lines: Map<string, TableLines>, staging: Staging, beforeWrite: () => void): Promise<boolean> {
    if (await anyParked(this.client, [...lines.keys()])) return false;
    for (const { statements } of lines.values()) if (!staging.tryPlainInsert(statements.name)) return false;
    return this.copy(lines, staging, beforeWrite);
  }

  /**
   * Gives a scanned set's line buffers back for the next sets: only once nothing reads its lines any more (its
   * apply returned; COPY data is copied into the connection's own messages as it is sent).
   */
  release(set: ScannedSet | undefined): void {
    if (!set || this.released.has(set)) return;
    this.released.add(set);
    this.keep(set.lines);
  }

  private keep(lines: Map<string, TableLines>): void {
    for (const t of lines.values()) {
      for (const { out } of t.bySignature.values()) if (this.spareOuts.length < keptOuts && out.buf.length <= keptOutBytes) this.spareOuts.push(out);
    }
  }

  private lineBuffer(): CopyOut {
    const out = this.spareOuts.pop();
    if (!out) return new CopyOut();
    out.clear();
    return out;
  }

  /** A set scanned before its transaction still holds: every record fresh, the tables' shapes and COPY as then. */
  stillValid(set: ScannedSet, fresh: RawRecord[]): boolean {
    this.scanMs = 0;
    if (set.size !== fresh.length) return false;
    for (const t of set.lines.values()) if (t.table.statements !== t.statements || this.refusing.has(t.statements.name)) return false;
    return true;
  }

  /** The set's COPY lines by table, or undefined at the first record the byte path does not take (its time in scanMs). */
  scan(fresh: RawRecord[]): ScannedSet | undefined {
    const scanAt = performance.now();
    const set = this.scanSet(fresh);
    this.scanMs = performance.now() - scanAt;
    return set;
  }

  /**
   * A small set may hold updates, deletes, tombstones and a key more than once (each change kept, in order,
   * for the one-statement path to reduce); a larger one only new rows of distinct keys, for COPY.
   */
  private scanSet(fresh: RawRecord[]): ScannedSet | undefined {
    const lines = new Map<string, TableLines>();
    const set = this.scanInto(fresh, lines);
    // a set the byte path declines: its lines so far are read by no one
    if (!set) this.keep(lines);
    return set;
  }

  private scanInto(fresh: RawRecord[], lines: Map<string, TableLines>): ScannedSet | undefined {
    /** Each table's keys in the set (per table: no topic+key string per record). */
    const seen = new Map<string, Set<string>>();
    const keyed: RawRecord[] = [];
    const changes: SetChange[] | undefined = fresh.length <= smallSetRecords ? [] : undefined;
    let mixed = false;
    let newest = 0;
    const latencies: number[] = [];
    // a set is runs of one topic: its table is looked up once per run, not per record
    let topic: string | undefined;
    let t: TableLines | undefined;
    let keys: Set<string> | undefined;
    for (const r of fresh) {
      if (r.topic !== topic || !t || !keys) {
        const table = this.tables.get(r.topic);
        if (!table || table.rules.length > 0 || this.refusing.has(table.statements.name)) return undefined;
        topic = r.topic;
        t = lines.get(topic);
        if (!t) lines.set(topic, (t = { table, statements: table.statements, bySignature: new Map(), creates: 0, reads: 0, updates: 0, deletes: 0 }));
        keys = seen.get(topic);
        if (!keys) seen.set(topic, (keys = new Set()));
      }
      if (changes && isTombstone(r)) {
        mixed = true; // it only tells compaction to forget the key: no effect on the target
        continue;
      }
      const s = this.scanned(r, t.statements);
      if (!s) return undefined;
      const op = s.op;
      const isNew = op === 'c' || op === 'r';
      // onMissingKey dead-letter asks the target whether an updated key exists: the general path's question
      if (!isNew && (!changes || (op === 'u' && t.table.onMissingKey === 'dead-letter'))) return undefined;
      if (op !== 'd' && (!s.copyable || s.unknownColumns)) return undefined;
      if (keys.has(s.keyText)) {
        if (!changes) return undefined; // newest per key: the general path reduces
        mixed = true;
      } else keys.add(s.keyText);
      if (!isNew) mixed = true;
      if (op === 'd') changes!.push({ table: t, op, keyText: s.keyText, start: 0, end: 0 });
      else {
        let group = t.bySignature.get(s.signature);
        if (!group) t.bySignature.set(s.signature, (group = { columns: s.lineColumns(), out: this.lineBuffer(), records: [] }));
        const start = group.out.length;
        if (s.writeLine(group.out) === false) return undefined;
        group.records.push(r);
        changes?.push({ table: t, op, keyText: s.keyText, group, start, end: group.out.length });
      }
      if (op === 'c') t.creates++;
      else if (op === 'r') t.reads++;
      else if (op === 'u') t.updates++;
      else t.deletes++;
      keyed.push(r.key === s.keyText ? r : { ...r, key: s.keyText });
      newest = Math.max(newest, s.tsMs);
      if (op !== 'r') latencies.push(s.tsMs);
    }
    return lines.size === 0 ? undefined : { lines, keyed, newest, latencies, size: fresh.length, changes, mixed };
  }

  /** COPY of every table under one savepoint: a key the target has rolls it all back (false). */
  private async copy(lines: Map<string, TableLines>, staging: Staging, beforeWrite: () => void): Promise<boolean> {
    await this.client.query('SAVEPOINT pgtunnel_copy');
    let table = '';
    try {
      for (const t of lines.values()) {
        beforeWrite();
        table = t.statements.name;
        for (const group of t.bySignature.values()) {
          try {
            await copyInBuffer(this.client, t.statements.copySql(group.columns), group.out.view());
          } catch (err) {
            this.refused = refusedLine(err, group.records);
            throw err;
          }
        }
      }
      await this.client.query('RELEASE SAVEPOINT pgtunnel_copy');
      return true;
    } catch (err) {
      const state = sqlState(err);
      // unique_violation: a key the target has; a table COPY cannot fill (row-level security, a view): never again
      if (state !== '23505' && !noCopy.has(state ?? '')) throw err;
      await this.client.query('ROLLBACK TO SAVEPOINT pgtunnel_copy');
      if (state === '23505') staging.conflicted(table);
      else this.refusing.add(table);
      return false;
    }
  }

  /**
   * The record whose line the target refused in the last apply (and forgets it): with it, the writer splits
   * the set around that record at once instead of bisecting it down, log2(n) transactions per refusal.
   */
  takeRefused(): RawRecord | undefined {
    const r = this.refused;
    this.refused = undefined;
    return r;
  }
}

/** The record of the COPY line an error names (`COPY t, line 7, column c: …`); undefined when it names none. */
function refusedLine(err: unknown, records: RawRecord[]): RawRecord | undefined {
  if (!(err instanceof pg.DatabaseError) || sqlState(err) === '23505') return undefined;
  const line = /^COPY [^\n]*?, line (\d+)/.exec(err.where ?? '')?.[1];
  return line === undefined ? undefined : records[Number(line) - 1];
}

/** Applied counts by partition run, ops by table. */
export function countCopied(keyed: RawRecord[], lines: Map<string, TableLines>, outcome: SetOutcome): void {
  let run = 0;
  for (let i = 0; i < keyed.length; i++) {
    const r = keyed[i]!;
    run++;
    const next = keyed[i + 1];
    if (next === undefined || next.topic !== r.topic || next.partition !== r.partition) {
      outcome.count(r, 'applied', run);
      run = 0;
    }
  }
  for (const t of lines.values()) {
    if (t.creates > 0) outcome.appliedOp(t.table.table, 'c', t.creates);
    if (t.reads > 0) outcome.appliedOp(t.table.table, 'r', t.reads);
    if (t.updates > 0) outcome.appliedOp(t.table.table, 'u', t.updates);
    if (t.deletes > 0) outcome.appliedOp(t.table.table, 'd', t.deletes);
  }
}

/** A JSON record with no value: a tombstone, which the general path skips (route.ts). */
function isTombstone(r: RawRecord): boolean {
  return !r.deferred && !r.unreadable && !r.decoded && !r.wire && (r.valueBytes ?? r.value) == null;
}
