import { compositeKey, partitionId } from '../names.js';

/** A record held for transactional apply, as it arrived. */
export interface HeldRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: string | undefined;
  value: string | undefined;
}

/** What the end of an envelope's text says: its op, and with transaction metadata its transaction and place. */
export interface EnvelopeTail {
  op: string;
  txId?: string;
  totalOrder?: number;
  /** `source.ts_ms`: the source commit time (track_commit_timestamp on), which orders transactions that share no row. */
  sourceMs?: number;
}

// The envelope's last fields as pgtunnel writes them; a quote inside a value is escaped, so only the
// envelope's own structure can match at the very end of the text.
const tailPattern = /"op":"([cudrt])","ts_ms":-?\d+(?:,"transaction":\{"id":"(\d+)","total_order":(\d+),"data_collection_order":\d+\})?\}$/;

/** Pure: the op and transaction of an envelope's JSON text; undefined for what pgtunnel did not write. */
export function envelopeTail(value: string | undefined): EnvelopeTail | undefined {
  if (value === undefined) return undefined;
  const m = tailPattern.exec(value.length > 400 ? value.slice(-400) : value);
  if (!m) return undefined;
  const tail: EnvelopeTail = m[2] === undefined ? { op: m[1]! } : { op: m[1]!, txId: m[2], totalOrder: Number(m[3]) };
  // the last `source` block is the envelope's own: row images come before it
  const at = value.lastIndexOf(',"source":{"version":');
  const ms = at < 0 ? null : sourcePattern.exec(value.slice(at, at + 400));
  if (ms) tail.sourceMs = Number(ms[1]);
  return tail;
}

const sourcePattern = /^,"source":\{"version":"[^"]*","connector":"pgtunnel","name":"(?:[^"\\]|\\.)*","ts_ms":(-?\d+),/;

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
  keys: string[];
  marks: Map<string, UnitMark>;
  /** partition id → every offset the unit holds there (spilled records and the END event included) */
  offsets: Map<string, bigint[]>;
}

/** Per partition: the offsets still held, so the stored next offset is the lowest one not yet applied. */
class PartitionMark {
  private readonly held: bigint[] = [];
  private head = 0;
  private readonly released = new Set<bigint>();
  private top: bigint;
  next: bigint;

  constructor(readonly topic: string, readonly partition: number, offset: bigint) {
    this.next = offset;
    this.top = offset;
  }

  seen(offset: bigint, hold: boolean): void {
    if (hold) this.held.push(offset);
    if (offset + 1n > this.top) this.top = offset + 1n;
    this.settle();
  }

  release(offset: bigint): void {
    this.released.add(offset);
    this.settle();
  }

  private settle(): void {
    while (this.head < this.held.length && this.released.has(this.held[this.head]!)) this.released.delete(this.held[this.head++]!);
    if (this.head > 1024 && this.head * 2 > this.held.length) {
      this.held.splice(0, this.head);
      this.head = 0;
    }
    this.next = this.head < this.held.length ? this.held[this.head]! : this.top;
  }
}

/**
 * Pure: the records of every partition of a tunnel, grouped by source transaction, handed out whole and in
 * an order the source's row locks imposed: a unit goes when all its parts arrived (the END event's counts)
 * and every key it wrote has no earlier writer still held. Two transactions that wrote one row are ordered
 * as they committed (one waited on the other's lock); ones that share no row commute.
 */
export class TransactionBuffer {
  private readonly units = new Map<string, Unit>();
  /** key id → the units that wrote it, in partition order (head first) */
  private readonly queues = new Map<string, string[]>();
  private readonly candidates = new Set<string>();
  private readonly marks = new Map<string, PartitionMark>();
  bytes = 0;

  constructor(
    private readonly partitionsOf: (topic: string) => number,
    private readonly stored: ReadonlyMap<string, bigint> = new Map(),
    /** Whether a table id (of an END event) is one this applier reads. */
    private readonly inTunnel: (table: string) => boolean = () => true,
  ) {}

  /** A record of a table topic (`table`: its table id; `single`: its unit id when it belongs to no transaction). */
  add(r: HeldRecord, table: string, tail: EnvelopeTail | undefined, single: string): void {
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
    this.queue(unit, truncate ? compositeKey(r.topic, '', r.partition) : compositeKey(r.topic, r.key ?? ''));
    this.candidates.add(id);
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
    this.mark(r.topic, r.partition).seen(r.offset, false);
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

  /** The incomplete unit holding the most bytes in memory: the one to spill when over budget. */
  largest(): Unit | undefined {
    let best: Unit | undefined;
    for (const u of this.units.values()) if (u.bytes > 0 && (!best || u.bytes > best.bytes)) best = u;
    return best;
  }

  /** The unit's in-memory records were written to the target: memory is freed, they are read back to apply. */
  spilled(unit: Unit, count: number): void {
    unit.records.splice(0, count);
    unit.spilled += count;
    this.bytes -= unit.bytes;
    unit.bytes = 0;
  }

  /** The oldest held unit and what it waits for: END, parts, or an earlier writer of one of its keys. */
  oldest(): string | undefined {
    const unit = this.units.values().next().value;
    if (!unit) return undefined;
    const parts = [...unit.seen].map(([t, s]) => `${t} ${s.size}/${unit.expected?.get(t) ?? '?'}`).join(', ');
    const blocked = unit.keys.map((k) => this.queues.get(k)![0]).find((head) => head !== unit.id);
    return `${unit.id}: ${unit.single ? 'single' : unit.expected ? 'END seen' : 'no END yet'}; parts ${parts}${blocked ? `; behind ${blocked}` : ''}`;
  }

  get held(): number {
    return this.units.size;
  }

  private unit(id: string, single: boolean): Unit {
    let unit = this.units.get(id);
    if (!unit) {
      unit = { id, records: [], spilled: 0, bytes: 0, seen: new Map(), single, truncates: new Map(), keys: [], marks: new Map(), offsets: new Map() };
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
    this.mark(r.topic, r.partition).seen(r.offset, true);
    const pid = partitionId(r.topic, r.partition);
    const m = unit.marks.get(pid);
    if (m) m.last = r.offset > m.last ? r.offset : m.last;
    else unit.marks.set(pid, { topic: r.topic, partition: r.partition, last: r.offset });
    const offsets = unit.offsets.get(pid);
    if (offsets) offsets.push(r.offset);
    else unit.offsets.set(pid, [r.offset]);
    if (r.value === undefined) return;
    unit.records.push(r);
    const size = r.value.length + (r.key?.length ?? 0);
    unit.bytes += size;
    this.bytes += size;
  }

  private queue(unit: Unit, key: string): void {
    const q = this.queues.get(key);
    if (!q) this.queues.set(key, [unit.id]);
    else if (q[q.length - 1] !== unit.id) q.push(unit.id);
    else return;
    unit.keys.push(key);
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
    if (!unit || !this.complete(unit)) return false;
    return unit.keys.every((k) => this.queues.get(k)![0] === id);
  }

  /** Takes the unit out; returns the units now first in line for one of its keys. */
  private release(unit: Unit): string[] {
    this.units.delete(unit.id);
    this.bytes -= unit.bytes;
    const heads: string[] = [];
    for (const k of unit.keys) {
      const q = this.queues.get(k)!;
      q.shift();
      if (q.length === 0) this.queues.delete(k);
      else heads.push(q[0]!);
    }
    for (const [pid, offsets] of unit.offsets) {
      const mark = this.marks.get(pid)!;
      for (const o of offsets) mark.release(o);
    }
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
