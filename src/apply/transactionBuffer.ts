import { compositeKey, partitionId } from '../names.js';
import { KeySummary } from './keySummary.js';
import { PartitionMark, type OffsetRun } from './partitionMark.js';
import type { EnvelopeTail } from './envelopeTail.js';

/** A record held for transactional apply, as it arrived. */
export interface HeldRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: string | undefined;
  value: string | undefined;
}

/** The last offset a unit has in a partition: what `applied_ahead` remembers. */
export interface UnitMark {
  topic: string;
  partition: number;
  last: bigint;
}

/** A unit of apply: one source transaction, or one record that belongs to none (a snapshot row). */
export interface Unit {
  id: string;
  /** In arrival order, after the `spilled` ones (held in the target). */
  records: HeldRecord[];
  spilled: number;
  bytes: number;
  /** table id → distinct total_order seen (truncate copies beyond partition 0 not counted) */
  seen: Map<string, Set<number>>;
  /** From the END event; undefined while it has not arrived. Singles need none. */
  expected?: Map<string, number>;
  single: boolean;
  /** The source commit time of its records (source.ts_ms); undefined until one arrived. */
  sourceMs?: number;
  /** topic → partitions whose truncate copy arrived */
  truncates: Map<string, Set<number>>;
  /** The row keys of its records in memory (a spill moves them to `summary`; truncates' keys follow from `truncates`). */
  keys: Set<string>;
  /** The units it goes after: for each key, the unit that wrote it before (kept once they are applied: the apply's slow path reads it). */
  after: Set<string>;
  /** How many of `after` are still held: it goes at 0. */
  waiting: number;
  /** The units that go after it. */
  followers: string[];
  /** The keys of its spilled records; undefined until it spills. */
  summary?: KeySummary;
  marks: Map<string, UnitMark>;
  /** Its runs of offsets, released when it is applied (spilled records and the END event included). */
  runs: { mark: PartitionMark; run: OffsetRun }[];
}

/** Memory a record in the buffer costs beyond its key and value text (its object, key entries, offset). */
export const recordOverhead = 200;

/** The key a record writes, for order: its row, or for a truncate its topic's partition. */
export function writeKey(r: { topic: string; partition: number; key: string | undefined }, tail: EnvelopeTail | undefined): string {
  return tail?.op === 't' ? compositeKey(r.topic, '', r.partition) : compositeKey(r.topic, r.key ?? '');
}

/**
 * Pure: the records of every partition of a tunnel, grouped by source transaction, handed out whole and in
 * an order the source's row locks imposed: a unit goes when all its parts arrived (the END event's counts)
 * and every earlier writer of a key it wrote was applied. Two transactions that wrote one row are ordered
 * as they committed (one waited on the other's lock); ones that share no row commute. Memory per record is
 * only for records in memory: a spilled unit keeps a fixed-size summary of its keys and a run of offsets per
 * partition, whatever its size.
 */
export class TransactionBuffer {
  private readonly units = new Map<string, Unit>();
  /** key → the last held unit that wrote it, for the keys of records in memory */
  private readonly writers = new Map<string, string>();
  /** units with spilled records, whose keys are in their summaries */
  private readonly spilledUnits = new Set<string>();
  private readonly candidates = new Set<string>();
  private readonly marks = new Map<string, PartitionMark>();
  bytes = 0;

  constructor(
    private readonly partitionsOf: (topic: string) => number,
    private readonly stored: ReadonlyMap<string, bigint> = new Map(),
    /** Whether a table id (of an END event) is one this applier reads. */
    private readonly inTunnel: (table: string) => boolean = () => true,
    /** The size of a spilled unit's key summary. */
    private readonly summaryBytes = 1024 * 1024,
  ) {}

  /**
   * A record of a table topic (`table`: its table id; `single`: its unit id when it belongs to no transaction;
   * `spilledWriters`: the spilled units that wrote its key, as the target's spilled records say, for the
   * units `maySpilledWriters` named).
   */
  add(r: HeldRecord, table: string, tail: EnvelopeTail | undefined, single: string, spilledWriters: readonly string[] = []): void {
    const id = tail?.txId ?? single;
    const unit = this.unit(id, tail?.txId === undefined);
    unit.sourceMs ??= tail?.sourceMs;
    this.hold(unit, r);
    const truncate = tail?.op === 't';
    if (truncate) {
      const copies = unit.truncates.get(r.topic) ?? new Set<number>();
      unit.truncates.set(r.topic, copies.add(r.partition));
    }
    if (tail?.totalOrder !== undefined && (!truncate || r.partition === 0)) {
      const seen = unit.seen.get(table) ?? new Set<number>();
      unit.seen.set(table, seen.add(tail.totalOrder));
    }
    this.write(unit, writeKey(r, tail), spilledWriters, truncate);
    this.candidates.add(id);
  }

  /** The spilled units (other than the record's own) whose summary may hold this key: the target tells for sure. */
  maySpilledWriters(key: string, unitId: string): string[] {
    const out: string[] = [];
    for (const id of this.spilledUnits) if (id !== unitId && this.units.get(id)!.summary!.mayHave(key)) out.push(id);
    return out;
  }

  /** Whether any unit has spilled records (then each record's key is looked up in the summaries). */
  get spilling(): boolean {
    return this.spilledUnits.size > 0;
  }

  /** The END event of a transaction: its counts per table. */
  end(r: HeldRecord, id: string, counts: Map<string, number>): void {
    const unit = this.unit(id, false);
    unit.expected = counts;
    this.hold(unit, { ...r, value: undefined });
    this.candidates.add(id);
  }

  /** A record that applies nothing (BEGIN, a tombstone, a record of a unit applied before a restart). */
  pass(r: { topic: string; partition: number; offset: bigint }): void {
    this.mark(r.topic, r.partition).seen(r.offset);
  }

  /**
   * Units ready to apply, at most `maxRecords` records: every key's writers in order, and otherwise in source
   * commit order (`source.ts_ms`): the earliest ready unit first, and none committed after a unit still waiting
   * for its parts. `gate`: whether a ready unit may go now (strict commit order: nothing earlier can still arrive).
   */
  take(maxRecords: number, gate: (unit: Unit) => boolean = () => true): Unit[] {
    const horizon = this.earliestIncomplete();
    const ready: Unit[] = [];
    const queued = new Set<string>();
    // units committed after the horizon wait unsorted: many may pile up behind one huge transaction
    const after: string[] = [];
    const consider = (id: string, sorted: boolean) => {
      if (queued.has(id) || !this.ready(id)) return;
      queued.add(id);
      const unit = this.units.get(id)!;
      if (unit.sourceMs! > horizon || !gate(unit)) after.push(id);
      else if (sorted) insertByCommit(ready, unit);
      else ready.push(unit);
    };
    for (const id of this.candidates) consider(id, false);
    this.candidates.clear();
    ready.sort((a, b) => byCommit(b, a));
    const out: Unit[] = [];
    let records = 0;
    while (ready.length > 0 && records < maxRecords) {
      const unit = ready.pop()!;
      for (const head of this.release(unit)) consider(head, true);
      out.push(unit);
      records += unit.records.length + unit.spilled;
    }
    // over this take's records, or after a unit that still waits for parts: next time
    for (const u of ready) this.candidates.add(u.id);
    for (const id of after) this.candidates.add(id);
    return out;
  }

  /** The commit time of the earliest held unit that still waits for parts: nothing committed later goes first. */
  private earliestIncomplete(): number {
    let earliest = Infinity;
    for (const u of this.units.values()) if (u.sourceMs !== undefined && u.sourceMs < earliest && !this.complete(u)) earliest = u.sourceMs;
    return earliest;
  }

  /** The next offset to store of every partition seen: its lowest record still held. */
  nextOffsets(): { topic: string; partition: number; next: bigint }[] {
    return [...this.marks.values()].map((m) => ({ topic: m.topic, partition: m.partition, next: m.next }));
  }

  /**
   * The unit to spill when over budget (called after every releasable unit was taken): the incomplete one
   * holding the most bytes in memory, which waits longest; else the complete one that committed last, which
   * goes last.
   */
  spillCandidate(): Unit | undefined {
    let incomplete: Unit | undefined;
    let latest: Unit | undefined;
    for (const u of this.units.values()) {
      if (u.bytes === 0) continue;
      if (!this.complete(u)) {
        if (!incomplete || u.bytes > incomplete.bytes) incomplete = u;
      } else if (!latest || byCommit(u, latest) > 0) latest = u;
    }
    return incomplete ?? latest;
  }

  /** The unit's in-memory records were written to the target: memory is freed, they are read back to apply. */
  spilled(unit: Unit, count: number): void {
    unit.records.splice(0, count);
    unit.spilled += count;
    this.bytes -= unit.bytes;
    unit.bytes = 0;
    // its keys leave memory: a later writer of one finds it through the summary, then the target. A complete
    // unit's keys are all here, so its summary is sized to them (16 bits a key): many small ones may spill
    unit.summary ??= new KeySummary(this.complete(unit) ? Math.min(this.summaryBytes, unit.keys.size * 2) : this.summaryBytes);
    for (const k of unit.keys) {
      unit.summary.add(k);
      if (this.writers.get(k) === unit.id) this.writers.delete(k);
    }
    unit.keys.clear();
    this.spilledUnits.add(unit.id);
  }

  /** The oldest held unit and what it waits for: END, parts, or an earlier writer of one of its keys. */
  oldest(): string | undefined {
    const unit = this.units.values().next().value;
    if (!unit) return undefined;
    const parts = [...unit.seen].map(([t, s]) => `${t} ${s.size}/${unit.expected?.get(t) ?? '?'}`).join(', ');
    const blocked = [...unit.after].find((id) => this.units.has(id));
    const spilled = unit.spilled > 0 ? `; ${unit.spilled} records spilled` : '';
    return `${unit.id}: ${unit.single ? 'single' : unit.expected ? 'END seen' : 'no END yet'}; parts ${parts}${spilled}${blocked ? `; behind ${blocked}` : ''}`;
  }

  get held(): number {
    return this.units.size;
  }

  /** Bookkeeping entries (keys in memory, open offset runs), to show they do not grow with spilled records. */
  get entries(): { keys: number; runs: number } {
    let runs = 0;
    for (const m of this.marks.values()) runs += m.held;
    return { keys: this.writers.size, runs };
  }

  private unit(id: string, single: boolean): Unit {
    let unit = this.units.get(id);
    if (!unit) {
      unit = { id, records: [], spilled: 0, bytes: 0, seen: new Map(), single, truncates: new Map(), keys: new Set(), after: new Set(), waiting: 0, followers: [], marks: new Map(), runs: [] };
      this.units.set(id, unit);
    }
    return unit;
  }

  private mark(topic: string, partition: number): PartitionMark {
    const pid = partitionId(topic, partition);
    let m = this.marks.get(pid);
    if (!m) this.marks.set(pid, (m = new PartitionMark(topic, partition, this.stored.get(pid) ?? 0n)));
    return m;
  }

  private hold(unit: Unit, r: HeldRecord): void {
    const mark = this.mark(r.topic, r.partition);
    const run = mark.hold(r.offset, unit.id);
    if (run) unit.runs.push({ mark, run });
    const pid = partitionId(r.topic, r.partition);
    const m = unit.marks.get(pid);
    if (m) m.last = r.offset > m.last ? r.offset : m.last;
    else unit.marks.set(pid, { topic: r.topic, partition: r.partition, last: r.offset });
    if (r.value === undefined) return;
    unit.records.push(r);
    const size = r.value.length + (r.key?.length ?? 0) + recordOverhead;
    unit.bytes += size;
    this.bytes += size;
  }

  /** The unit writes `key`: it goes after the key's earlier writers still held (in memory or spilled). */
  private write(unit: Unit, key: string, spilledWriters: readonly string[], truncate: boolean): void {
    const last = this.writers.get(key);
    if (last !== undefined) this.follow(unit, last);
    for (const id of spilledWriters) this.follow(unit, id);
    this.writers.set(key, unit.id);
    // a truncate's partition key is found again from `truncates`, and never spills
    if (!truncate) unit.keys.add(key);
  }

  private follow(unit: Unit, id: string): void {
    const before = this.units.get(id);
    if (!before || before === unit || unit.after.has(id)) return;
    unit.after.add(id);
    unit.waiting++;
    before.followers.push(unit.id);
  }

  private complete(unit: Unit): boolean {
    if (unit.single) return true;
    if (!unit.expected) return false;
    // a table of another tunnel on the same source counts in END but never arrives here
    for (const [table, n] of unit.expected) if (this.inTunnel(table) && (unit.seen.get(table)?.size ?? 0) !== n) return false;
    for (const [topic, copies] of unit.truncates) if (copies.size !== this.partitionsOf(topic)) return false;
    return true;
  }

  private ready(id: string): boolean {
    const unit = this.units.get(id);
    return unit !== undefined && unit.waiting === 0 && this.complete(unit);
  }

  /** Takes the unit out; returns the units that no longer wait for anything held. */
  private release(unit: Unit): string[] {
    this.units.delete(unit.id);
    this.spilledUnits.delete(unit.id);
    this.bytes -= unit.bytes;
    for (const k of unit.keys) if (this.writers.get(k) === unit.id) this.writers.delete(k);
    for (const [topic, copies] of unit.truncates) {
      for (const p of copies) if (this.writers.get(compositeKey(topic, '', p)) === unit.id) this.writers.delete(compositeKey(topic, '', p));
    }
    const heads: string[] = [];
    for (const id of unit.followers) {
      const f = this.units.get(id);
      if (f && --f.waiting === 0) heads.push(id);
    }
    for (const { mark, run } of unit.runs) mark.release(run);
    return heads;
  }
}

/** Keeps `units` sorted latest commit first (so `pop` is the earliest); a unit without a commit time goes first. */
function insertByCommit(units: Unit[], unit: Unit): void {
  let lo = 0;
  let hi = units.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (byCommit(units[mid]!, unit) > 0) lo = mid + 1;
    else hi = mid;
  }
  units.splice(lo, 0, unit);
}

/** A finite sort key (a difference of two -Infinity is NaN, which breaks a sort). */
const commitOf = (u: Unit) => u.sourceMs ?? Number.MIN_SAFE_INTEGER;

/**
 * Earlier commit first; within one millisecond the lower txid, so a transaction begun after another committed
 * (it got a later txid) goes after it even when the two arrived in the other order.
 */
function byCommit(a: Unit, b: Unit): number {
  const ms = commitOf(a) - commitOf(b);
  if (ms !== 0 || a.single || b.single) return ms;
  return a.id.length - b.id.length || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
