import { queueLimit, wakeOrTimeout, type MessageFeed, type QueuedMessage } from './replicationStream.js';

/**
 * One table's share of the source's replication stream (sharedSlot.ts's `SourceSlot` demultiplexes it by
 * relation): the table's changes and every transaction boundary and keepalive, queued for its
 * `LogicalStream` exactly as its own slot's stream would give them. It also says how far the shared slot
 * may confirm for this table: what its Kafka acknowledged, or a hold while its snapshot is read.
 */
export class TableFeed implements MessageFeed {
  private queue: QueuedMessage[] = [];
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  /** A reader takes from the queue; without one, messages are dropped (`dropped` asks for a restart when one comes). */
  private listening = false;
  private dropped = false;
  /** A reader had messages of this stream: a new reader lacks what they told (pgoutput sends a relation once per stream). */
  private delivered = false;
  /** The end of what this table's Kafka acknowledged in this process (undefined: nothing yet). */
  acked: bigint | undefined;
  /** While its snapshot is read, the shared slot must not confirm past this (the snapshot's consistent point, or 0: not yet known). */
  hold: bigint | undefined;

  constructor(readonly table: string, private readonly onAcknowledge: () => void, private readonly onDrain: () => void, private readonly onMissed: () => void) {}

  /** How far the shared slot may confirm for this table; undefined until its producer said (nothing moves before). */
  get limit(): bigint | undefined {
    return this.hold ?? this.acked;
  }

  /** A producer reads the feed now. */
  get reading(): boolean {
    return this.listening;
  }

  get full(): boolean {
    return this.listening && this.queue.length >= queueLimit;
  }

  push(item: QueuedMessage): void {
    if (!this.listening) {
      this.dropped = true;
      return;
    }
    this.queue.push(item);
    this.delivered = true;
    this.wake();
  }

  /** A new generation of the shared stream: it repeats WAL from the slot's confirmed position. */
  restarted(): void {
    this.queue = this.listening ? [{ message: { tag: 'restart' }, lsn: 0n }] : [];
    this.dropped = false;
    this.delivered = false;
    this.wake();
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }

  /** A leadership of the table's producer reads from here on; messages it missed (or a former reader had) come again by a restart. */
  subscribe(): void {
    this.failure = undefined;
    this.listening = true;
    if (this.dropped || this.delivered) this.onMissed();
  }

  unsubscribe(): void {
    this.listening = false;
    this.queue = [];
  }

  async wait(timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (this.queue.length > 0 || this.failure || signal.aborted) return this.check();
    await wakeOrTimeout(timeoutMs, signal, (done) => (this.waiter = done));
    this.check();
  }

  get queued(): number {
    return this.queue.length;
  }

  take(max: number): QueuedMessage[] {
    this.check();
    const out = this.queue.splice(0, max);
    if (this.queue.length < queueLimit / 2) this.onDrain();
    return out;
  }

  acknowledge(lsn: bigint): void {
    if (this.acked !== undefined && lsn <= this.acked) return;
    this.acked = lsn;
    // joined: once Kafka has the table past its snapshot's consistent point, the hold is its acknowledgement
    if (this.hold !== undefined && this.hold > 0n && lsn >= this.hold) this.hold = undefined;
    this.onAcknowledge();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
