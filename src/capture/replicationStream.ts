import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import type { Duplex } from 'node:stream';
import { TunnelError } from '../errors.js';
import { quoteIdent, quoteLiteral } from '../pg.js';
import { redact } from '../redact.js';
import { decodeFrame, decodePgOutput, formatLsn, standbyStatus, type PgOutputMessage } from './pgoutput.js';

/** How often the position is reported even when nothing new was acknowledged (wal_sender_timeout is 60 s). */
const statusEveryMs = 10_000;
/** Decoded messages held before the stream is paused: memory stays bounded while Kafka is slow. */
export const queueLimit = 20_000;

/**
 * A decoded message with its WAL position (a change's own LSN; a keepalive's: the server's WAL end).
 * `restart`: the source's shared stream started again from its slot (a table joined): what follows repeats
 * WAL already seen, and the reader resumes after what Kafka acknowledged (sharedSlot.ts).
 */
export interface QueuedMessage {
  message: PgOutputMessage | { tag: 'keepalive' } | { tag: 'restart' };
  lsn: bigint;
}

/** What a table's stream reads: its own slot's `ReplicationStream`, or its share of the source's slot (`TableFeed`). */
export interface MessageFeed {
  wait(timeoutMs: number, signal: AbortSignal): Promise<void>;
  readonly queued: number;
  take(max: number): QueuedMessage[];
  /** Everything of this table up to `lsn` is in Kafka. */
  acknowledge(lsn: bigint): void;
}

/** Resolves when `register`'s callback is called, the signal aborts, or `timeoutMs` passed. */
export function wakeOrTimeout(timeoutMs: number, signal: AbortSignal, register: (done: () => void) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, timeoutMs);
    signal.addEventListener('abort', done, { once: true });
    register(done);
  });
}

/** A replication connection (`replication=database`): slot commands and the copy-both stream. */
export async function replicationClient(url: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName, connectionTimeoutMillis: 10_000, replication: 'database' } as pg.ClientConfig);
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw new TunnelError('PGT_UNREACHABLE', `cannot open a replication connection to the source ${redact(url)}: ${(err as Error).message}`, {
      errorClass: 'unreachable',
      hint: 'the source must allow replication connections for this role (pg_hba.conf: a line for database replication or all) and have max_wal_senders free',
      cause: err,
    });
  }
  return client;
}

/**
 * pgoutput over one slot: decoded messages queued as they arrive (bounded; the stream pauses when full),
 * and the position reported back only when `acknowledge` says Kafka has everything up to it.
 */
export class ReplicationStream implements MessageFeed {
  private readonly queue: QueuedMessage[] = [];
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  private acknowledged = 0n;
  private timer: NodeJS.Timeout | undefined;
  private constructor(private readonly client: pg.Client, private readonly copy: Duplex) {}

  static async start(client: pg.Client, slot: string, publication: string, from: bigint): Promise<ReplicationStream> {
    const sql = `START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL ${formatLsn(from)} (proto_version '1', publication_names ${quoteLiteral(quoteIdent(publication))}, messages 'true')`;
    const copy = client.query(copyStreams.both(sql, { alignOnCopyDataFrame: true })) as unknown as Duplex;
    const stream = new ReplicationStream(client, copy);
    stream.acknowledged = from;
    copy.on('data', (chunk: Buffer) => stream.receive(chunk));
    copy.on('error', (err: Error) => stream.fail(err));
    copy.on('end', () => stream.fail(new TunnelError('PGT_REPLICATION_ENDED', 'the source ended the replication stream', { errorClass: 'unreachable', hint: 'it resumes from the slot on the next start' })));
    client.on('error', (err: Error) => stream.fail(err));
    stream.timer = setInterval(() => stream.report(), statusEveryMs);
    return stream;
  }

  private receive(chunk: Buffer): void {
    try {
      const frame = decodeFrame(chunk);
      if (frame.tag === 'keepalive') {
        if (frame.replyNow) this.report();
        this.queue.push({ message: { tag: 'keepalive' }, lsn: frame.end });
      } else {
        this.queue.push({ message: decodePgOutput(frame.data), lsn: frame.start });
      }
      if (this.queue.length >= queueLimit) this.copy.pause();
      this.wake();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Waits until a message is queued, the stream failed, or `timeoutMs` passed. */
  async wait(timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (this.queue.length > 0 || this.failure || signal.aborted) return this.check();
    await wakeOrTimeout(timeoutMs, signal, (done) => (this.waiter = done));
    this.check();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Takes up to `max` queued messages, in stream order. */
  take(max: number): QueuedMessage[] {
    this.check();
    const out = this.queue.splice(0, max);
    if (this.queue.length < queueLimit / 2 && this.copy.isPaused()) this.copy.resume();
    return out;
  }

  /** Everything up to `lsn` is in Kafka: the slot may release it (its confirmed flush position). */
  acknowledge(lsn: bigint): void {
    if (lsn <= this.acknowledged) return;
    this.acknowledged = lsn;
    this.report();
  }

  private report(): void {
    if (this.failure || this.copy.destroyed) return;
    this.copy.write(standbyStatus(this.acknowledged, Date.now()));
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.copy.destroy();
    await this.client.end().catch(() => {});
  }
}
