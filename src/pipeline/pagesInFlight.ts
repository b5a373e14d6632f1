/**
 * Pages sent and not yet checkpointed, oldest first (at most `size`). A page is released to its checkpoint
 * only once its own ack and every earlier page's are in: acks may arrive in any order, checkpoints never
 * pass a page Kafka has not acknowledged, so a crash re-sends from the last checkpoint and never skips.
 * A failed page fails the release, and nothing after it is released.
 */
export class PagesInFlight<T> {
  private readonly pages: { acked: Promise<void>; settled: boolean; value: T }[] = [];

  constructor(readonly size: number) {}

  get full(): boolean {
    return this.pages.length >= this.size;
  }

  get empty(): boolean {
    return this.pages.length === 0;
  }

  /** A page whose records are queued behind every page added before it; `acked` settles with Kafka's answer. */
  add(acked: Promise<void>, value: T): void {
    const page = { acked, settled: false, value };
    const settled = () => {
      page.settled = true;
    };
    acked.then(settled, settled);
    this.pages.push(page);
  }

  /** Settles when the oldest page's ack is in (at once when none is in flight); never rejects. */
  oldest(): Promise<void> {
    return this.pages[0]?.acked.catch(() => {}) ?? Promise.resolve();
  }

  /** Whether a page in flight still waits for its ack (inside `release`: a page after the one released). */
  get outstanding(): boolean {
    return this.pages.some((p) => !p.settled);
  }

  /**
   * The oldest pages whose acks are in, in page order, up to the first one still out; each given to
   * `release` before the next is looked at. Throws the first failed page's error.
   */
  async release(release: (value: T) => void): Promise<void> {
    while (this.pages[0]?.settled) {
      const page = this.pages[0];
      await page.acked;
      this.pages.shift();
      release(page.value);
    }
  }

  /** Waits for every page in flight and releases each in order; throws the first failure. */
  async drain(release: (value: T) => void): Promise<void> {
    while (this.pages.length > 0) {
      await this.oldest();
      await this.release(release);
    }
  }
}
