/**
 * A unit's consecutive records in one partition, from `first` (records of others applied meanwhile may lie
 * between them). Its end is not kept: the stored offset is the first of the earliest run still held.
 */
export interface OffsetRun {
  unit: string;
  first: bigint;
  released: boolean;
}

/**
 * Per partition: the runs of offsets still held, in arrival order, so the stored next offset is the first
 * one not yet applied. A run per unit and interleaving, never an entry per record: a huge transaction's
 * records in a partition are one run, or a few when other transactions' records came between them.
 */
export class PartitionMark {
  private readonly runs: OffsetRun[] = [];
  private head = 0;
  private top: bigint;
  next: bigint;

  constructor(readonly topic: string, readonly partition: number, offset: bigint) {
    this.next = offset;
    this.top = offset;
  }

  /** A record that applies nothing: only the top moves. */
  seen(offset: bigint): void {
    if (offset + 1n > this.top) this.top = offset + 1n;
    this.settle();
  }

  /** A record held for `unit`; returns the run it opened, or undefined when it extended the unit's last one. */
  hold(offset: bigint, unit: string): OffsetRun | undefined {
    if (offset + 1n > this.top) this.top = offset + 1n;
    const last = this.runs[this.runs.length - 1];
    if (last !== undefined && last.unit === unit && this.runs.length > this.head) return undefined;
    const run = { unit, first: offset, released: false };
    this.runs.push(run);
    this.settle();
    return run;
  }

  /** The run's unit was applied. */
  release(run: OffsetRun): void {
    run.released = true;
    this.settle();
  }

  /** Held runs still open (for tests and the log). */
  get held(): number {
    let n = 0;
    for (let i = this.head; i < this.runs.length; i++) if (!this.runs[i]!.released) n++;
    return n;
  }

  private settle(): void {
    while (this.head < this.runs.length && this.runs[this.head]!.released) this.head++;
    // applied runs at the end are dropped, so the next record of the unit before them extends its run
    while (this.runs.length > this.head && this.runs[this.runs.length - 1]!.released) this.runs.pop();
    if (this.head === this.runs.length) {
      this.runs.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.runs.length) {
      this.runs.splice(0, this.head);
      this.head = 0;
    }
    this.next = this.head < this.runs.length ? this.runs[this.head]!.first : this.top;
  }
}
