import { ConnectionPool, Consumer, kOptions, type CallbackWithPromise, type ConsumerOptions, type FetchOptions as Options, type fetchV17 } from './kafkaLib.js';

/** The long-poll while records flow, and the longest it grows to while none do. */
export const activeWaitMs = 500;
export const idleWaitMs = 4000;

type FetchOptions = Options<Buffer, Buffer, string, string>;
type FetchResponse = fetchV17.FetchResponse;
type FetchCallback = CallbackWithPromise<FetchResponse>;

interface Poll {
  pool: ConnectionPool | undefined;
  waitMs: number;
  callback: FetchCallback;
}

function holdsRecords(response: FetchResponse | undefined): boolean {
  return response?.responses.some((t) => t.partitions.some((p) => (p.records?.length ?? 0) > 0)) ?? false;
}

/**
 * A consumer whose empty fetches get rarer while nothing arrives: each empty long-poll doubles the next one's
 * wait up to `idleWaitMs`, the first record brings it back to `activeWaitMs`. An empty fetch costs the same
 * CPU whatever its wait (request, parse, the stream's loop), so an idle tunnel's CPU falls with their rate,
 * while a record still returns a waiting fetch at once (the wake-up is the broker's, not the wait's).
 *
 * The broker answers one connection's requests in order, and the messages stream sends no fetch to a node
 * while one is in flight: a partition gained in a rebalance would wait out a long poll before its first
 * fetch. A join therefore answers the stream's long polls at once with an empty response (the stream's
 * offsets do not move, so the same records are fetched again: none lost or doubled) and drops the broker's
 * late answer; the next fetches use the other connection pool at `activeWaitMs` until the dropped polls are
 * back. Only a poll sent while none is dropped waits long, so two pools always suffice.
 */
export class PacedConsumer extends Consumer<Buffer, Buffer, string, string> {
  private waitMs = activeWaitMs;
  private readonly polls = new Map<number, Poll>();
  /** Per node, the pool of a poll answered early whose broker answer is still due. */
  private readonly dropped = new Map<number, ConnectionPool | undefined>();
  private spare: ConnectionPool | undefined;

  constructor(options: ConsumerOptions<Buffer, Buffer, string, string>) {
    super(options);
    this.on('consumer:group:join', () => this.cutLongPolls());
    this.once('client:close', () => void this.spare?.close().catch(() => {}));
  }

  /** Whether a poll longer than `activeWaitMs` is in flight (the state a rebalance must not wait on). */
  get longPolling(): boolean {
    return [...this.polls.values()].some((p) => p.waitMs > activeWaitMs);
  }

  override fetch(options: FetchOptions): Promise<FetchResponse>;
  override fetch(options: FetchOptions, callback: FetchCallback): void;
  override fetch(options: FetchOptions, callback?: FetchCallback): Promise<FetchResponse> | void {
    // only the messages stream's fetches (a callback, a node) are paced
    if (!callback) return super.fetch(options);
    const node = options.node;
    // a dropped poll's pool stays busy at the broker until its answer (only the stream's pool is ever cut)
    const pool = this.dropped.has(node) ? this.sparePool() : options.connectionPool;
    const poll: Poll = { pool, waitMs: this.dropped.size > 0 ? activeWaitMs : this.waitMs, callback };
    this.polls.set(node, poll);
    super.fetch({ ...options, connectionPool: pool, maxWaitTime: poll.waitMs }, (error, response) => {
      if (this.polls.get(node) !== poll) {
        // the late answer of a poll cut short: its pool is free again
        if (this.dropped.get(node) === pool) this.dropped.delete(node);
        return;
      }
      this.polls.delete(node);
      if (!error) this.waitMs = holdsRecords(response) ? activeWaitMs : Math.min(this.waitMs * 2, idleWaitMs);
      callback(error, response);
    });
  }

  /** Answers every long poll in flight with an empty response, so the stream fetches the new assignment now. */
  private cutLongPolls(): void {
    this.waitMs = activeWaitMs;
    for (const [node, poll] of this.polls) {
      if (poll.waitMs <= activeWaitMs || this.dropped.has(node)) continue;
      this.polls.delete(node);
      this.dropped.set(node, poll.pool);
      process.nextTick(() => poll.callback(null, { throttleTimeMs: 0, errorCode: 0, sessionId: 0, responses: [] }));
    }
  }

  private sparePool(): ConnectionPool {
    this.spare ??= new ConnectionPool(this.clientId, { ...this[kOptions], ownerId: this.instanceId });
    return this.spare;
  }
}
