import type { DeadLetter, RawRecord } from '../validate/deadLetters.js';
import type { TableStatements } from './statements.js';
import { keyId, partitionId } from '../names.js';
import { telemetry } from '../instruments/telemetry.js';

/** One transaction's bookkeeping: what became a dead letter, which keys got parked, the per-partition counts. */
export class SetOutcome {
  readonly letters: { record: RawRecord; letter: DeadLetter }[] = [];
  readonly parkedKeys = new Map<string, number>();
  readonly counts = new Map<string, { applied: number; dead: number; poison: number }>();
  /** table → op → applied records, and source-to-now latencies of streamed changes, for telemetry */
  readonly ops = new Map<string, Map<string, number>>();
  readonly latencies: number[] = [];
  newestSourceMs = 0;
  fresh = 0;
  /** topic → statements for the target's columns after schema evolution, in use once the set commits */
  readonly evolved = new Map<string, TableStatements>();
  /** column names looked up in the source for evolution; remembered once the set commits */
  readonly checked: { topic: string; names: string[] }[] = [];

  appliedOp(table: string, op: string, n = 1): void {
    const byOp = this.ops.get(table) ?? new Map<string, number>();
    byOp.set(op, (byOp.get(op) ?? 0) + n);
    this.ops.set(table, byOp);
  }

  count(r: { topic: string; partition: number }, what: 'applied' | 'dead' | 'poison', n = 1): void {
    const key = partitionId(r.topic, r.partition);
    const c = this.counts.get(key) ?? { applied: 0, dead: 0, poison: 0 };
    c[what] += n;
    this.counts.set(key, c);
  }

  /** Counts applied records by partition run and op (a set is thousands of records of a few partitions). */
  applied(table: string, records: { topic: string; partition: number; envelope: { op: string } }[]): void {
    let run = 0;
    const ops = new Map<string, number>();
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      ops.set(r.envelope.op, (ops.get(r.envelope.op) ?? 0) + 1);
      run++;
      const next = records[i + 1];
      if (next === undefined || next.topic !== r.topic || next.partition !== r.partition) {
        this.count(r, 'applied', run);
        run = 0;
      }
    }
    for (const [op, n] of ops) this.appliedOp(table, op, n);
  }

  dead(record: RawRecord, letter: DeadLetter, park: boolean): void {
    this.letters.push({ record, letter });
    this.count(record, letter.errorClass === 'poison' ? 'poison' : 'dead');
    if (park && record.key !== undefined) {
      const k = keyId(record.topic, record.key);
      this.parkedKeys.set(k, (this.parkedKeys.get(k) ?? 0) + 1);
    }
  }

  /** Takes in what a nested piece of the same transaction did (a savepoint that was released). */
  absorb(other: SetOutcome): void {
    // loops, not spread: a huge transaction's arrays exceed the arguments a call may take
    for (const l of other.letters) this.letters.push(l);
    for (const [k, n] of other.parkedKeys) this.parkedKeys.set(k, (this.parkedKeys.get(k) ?? 0) + n);
    for (const [k, c] of other.counts) {
      const mine = this.counts.get(k) ?? { applied: 0, dead: 0, poison: 0 };
      this.counts.set(k, { applied: mine.applied + c.applied, dead: mine.dead + c.dead, poison: mine.poison + c.poison });
    }
    for (const [table, byOp] of other.ops) for (const [op, n] of byOp) this.appliedOp(table, op, n);
    for (const ms of other.latencies) this.latencies.push(ms);
    this.newestSourceMs = Math.max(this.newestSourceMs, other.newestSourceMs);
    this.fresh += other.fresh;
    for (const [topic, statements] of other.evolved) this.evolved.set(topic, statements);
    this.checked.push(...other.checked);
  }
}

/** After the commit: what a set did, for metrics and the dashboard. */
export function reportOutcome(outcome: SetOutcome, tableOf: (topic: string) => string | undefined): void {
  const now = Date.now();
  for (const [table, byOp] of outcome.ops) for (const [op, n] of byOp) telemetry.applied(table, op, n);
  telemetry.observeLatencies(outcome.latencies.map((sourceMs) => now - sourceMs));
  for (const { record, letter } of outcome.letters) {
    telemetry.deadLettered({ time: new Date(now).toISOString(), table: tableOf(record.topic) ?? record.topic, errorClass: letter.errorClass, rule: letter.rule, key: record.key, message: letter.message });
  }
}
