import { partitionId } from '../names.js';

/** A pg_snapshot (`xmin:xmax:xip,…`): which transactions had committed when it was taken. */
export interface Snapshot {
  xmin: bigint;
  xmax: bigint;
  xip: Set<bigint>;
}

/** Pure: a pg_snapshot's text; undefined for anything else. */
export function parseSnapshot(text: string): Snapshot | undefined {
  const m = /^(\d+):(\d+):([\d,]*)$/.exec(text);
  if (!m) return undefined;
  return { xmin: BigInt(m[1]!), xmax: BigInt(m[2]!), xip: new Set(m[3] ? m[3].split(',').map(BigInt) : []) };
}

/** Pure: whether a committed transaction is visible in the snapshot (pg_visible_in_snapshot's rule). */
export function visibleIn(txid: bigint, s: Snapshot): boolean {
  return txid < s.xmin || (txid < s.xmax && !s.xip.has(txid));
}

/** How long a transaction may wait for the tables' progress before status says what it waits for. */
export const stallMs = 2000;

interface Ended {
  snapshot: Snapshot;
  /** The table topic's end offsets (read_committed), taken after the mark was read. */
  ends: bigint[];
}

/**
 * Pure: the release condition of strict source commit order. Each table's producer reports progress (a
 * snapshot whose transactions are all in Kafka); a mark counts once the applier has read the table's topic up
 * to the ends taken after it. A transaction passes when it is visible in every table's counted snapshot:
 * snapshots only grow with time, so a transaction that committed before it is visible there too, and its
 * records (and the END event, published before its table's mark on the one-partition transaction topic)
 * have all been read.
 */
export class CommitWatermark {
  private readonly counted = new Map<string, Snapshot>();
  /** table → the newest mark read whose ends are not taken yet (a newer one supersedes it) */
  private readonly unended = new Map<string, Snapshot>();
  private readonly ended = new Map<string, Ended[]>();
  private readonly seenAt = new Map<string, number>();
  /** partition id → the offset read up to (exclusive) */
  private readonly read = new Map<string, bigint>();
  private readonly tableOf = new Map<string, string>();
  private blocked: { id: string; since: number; now: boolean } | undefined;

  /** `topics`: table id → its topic, for every table of the tunnel (the tables waited for). */
  constructor(private readonly topics: ReadonlyMap<string, string>, private readonly startedAt = Date.now()) {
    for (const [table, topic] of topics) this.tableOf.set(topic, table);
  }

  /**
   * A PROGRESS record read; a table of another tunnel is not waited for. `ends`: the table topic's end offsets
   * its producer listed before sending it (older producers list none: the applier's own, later ones serve).
   */
  progress(table: string, snapshot: string, at = Date.now(), ends?: bigint[]): void {
    const s = parseSnapshot(snapshot);
    if (!s || !this.topics.has(table)) return;
    this.seenAt.set(table, at);
    if (!ends) {
      this.unended.set(table, s);
      return;
    }
    const queue = this.ended.get(table);
    if (queue) queue.push({ snapshot: s, ends });
    else this.ended.set(table, [{ snapshot: s, ends }]);
  }

  /** The topics whose newest marks wait for their ends. */
  wantsEnds(): string[] {
    return [...this.unended.keys()].map((t) => this.topics.get(t)!);
  }

  /** A topic's end offsets, taken after its waiting mark was read. */
  ends(topic: string, ends: bigint[]): void {
    const table = this.tableOf.get(topic);
    const snapshot = table === undefined ? undefined : this.unended.get(table);
    if (!snapshot) return;
    this.unended.delete(table!);
    const queue = this.ended.get(table!) ?? [];
    this.ended.set(table!, [...queue, { snapshot, ends }]);
  }

  /** The applier has read `partition` of `topic` up to `next` (exclusive). */
  readTo(topic: string, partition: number, next: bigint): void {
    const pid = partitionId(topic, partition);
    if (next > (this.read.get(pid) ?? -1n)) this.read.set(pid, next);
  }

  /** Marks whose topic is read up to their ends count from now on; true when one did. */
  settle(): boolean {
    let moved = false;
    for (const [table, queue] of this.ended) {
      const topic = this.topics.get(table)!;
      while (queue.length > 0 && queue[0]!.ends.every((end, p) => (this.read.get(partitionId(topic, p)) ?? 0n) >= end)) {
        this.counted.set(table, queue.shift()!.snapshot);
        moved = true;
      }
    }
    return moved;
  }

  /** Whether the transaction may be applied: no transaction committed before it can still arrive. */
  passes(txid: string): boolean {
    if (!/^\d+$/.test(txid)) return true;
    const x = BigInt(txid);
    for (const table of this.topics.keys()) {
      const s = this.counted.get(table);
      if (!s || !visibleIn(x, s)) {
        if (!this.blocked) this.blocked = { id: txid, since: Date.now(), now: true };
        else if (!this.blocked.now || BigInt(this.blocked.id) > x) Object.assign(this.blocked, { id: txid, now: true });
        return false;
      }
    }
    return true;
  }

  /**
   * After a take: when transactions have waited for the tables' progress longer than `stallMs`, what they
   * wait for (status and log say it); undefined when nothing waits that long.
   */
  stalled(now = Date.now()): string | undefined {
    const b = this.blocked;
    if (!b) return undefined;
    if (!b.now) {
      this.blocked = undefined;
      return undefined;
    }
    b.now = false;
    if (now - b.since < stallMs) return undefined;
    const x = BigInt(b.id);
    const behind = [...this.topics.keys()].filter((t) => {
      const s = this.counted.get(t);
      return !s || !visibleIn(x, s);
    });
    const said = behind.map((t) => {
      const at = this.seenAt.get(t);
      return `${t} (${at === undefined ? `no progress since the applier started ${Math.round((now - this.startedAt) / 1000)} s ago` : `last progress ${Math.round((now - at) / 1000)} s ago`})`;
    });
    return `source transaction ${b.id} and later ones wait ${Math.round((now - b.since) / 1000)} s for progress of ${said.join(', ')}: applied before it, a transaction that committed earlier could still arrive — is each table's producer running (with apply: transactional)? a table removed from the tunnel is no longer waited for`;
  }
}
