/**
 * Where the transactional applier's time goes since its last report (issue 24's profile): milliseconds per
 * stage of its loop and what it moved, so a slow run says whether it waited, spilled or applied.
 */
export class ApplierStages {
  private ms = new Map<string, number>();
  private counts = { sets: 0, units: 0, records: 0, commits: 0, spills: 0, spilledRecords: 0 };

  /** Adds the time since `from` to `stage`; returns now, the next stage's start. */
  add(stage: string, from: number): number {
    const now = performance.now();
    this.ms.set(stage, (this.ms.get(stage) ?? 0) + now - from);
    return now;
  }

  count(what: keyof ApplierStages['counts'], n = 1): void {
    this.counts[what] += n;
  }

  /** Whether anything was applied or spilled since the last report. */
  get busy(): boolean {
    return this.counts.commits > 0 || this.counts.spills > 0;
  }

  /** The figures since the last report, then zero. */
  report(): Record<string, number> {
    const out: Record<string, number> = { ...this.counts };
    for (const [stage, ms] of this.ms) out[`${stage}Ms`] = Math.round(ms);
    this.ms = new Map();
    this.counts = { sets: 0, units: 0, records: 0, commits: 0, spills: 0, spilledRecords: 0 };
    return out;
  }
}
