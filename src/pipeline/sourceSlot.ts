import type pg from 'pg';
import type { TunnelConfig } from '../config/load.js';
import { classify, describeError } from '../errors.js';
import { connect } from '../pg.js';
import { producerApplicationName, sourcePublicationName, sourceSlotName, tableId } from '../names.js';
import { Backoff, sleep } from '../retry.js';
import type { Logger } from '../instruments/log.js';
import type { Health } from '../instruments/health.js';
import { telemetry } from '../instruments/telemetry.js';
import { ReplicationStream, replicationClient, type QueuedMessage } from '../capture/replicationStream.js';
import { TableFeed } from '../capture/slotFeed.js';
import { becomeLeader } from './producerLock.js';

/** How long a new stream waits for every table's producer to listen before it starts without the late ones (they then cost a restart). */
const gatherMs = 5000;

/**
 * The one replication slot of a source's logically captured tables (issue 22): one leader per source (the
 * source-level lock), one `ReplicationStream`, demultiplexed by relation into each table's `TableFeed`.
 * The slot confirms the lowest position every table's Kafka acknowledged (a table reading its snapshot
 * holds it at its consistent point). A table that missed messages (it joined after a snapshot, or its
 * producer restarted) has the stream restarted from the slot: each table then skips what Kafka has.
 */
export class SourceSlot {
  readonly name: string;
  readonly publication: string;
  private readonly feeds = new Map<string, TableFeed>();
  /** Relation oid → table id, from the relation messages of the current stream. */
  private readonly routes = new Map<number, string>();
  private stream: ReplicationStream | undefined;
  private generation: AbortController | undefined;
  private leading = false;
  private leaders: (() => void)[] = [];
  private drained: (() => void) | undefined;
  /** Every table left (switched to trigger capture): the slot is no longer read (a table added later needs a new SourceSlot). */
  closed = false;

  constructor(private readonly config: TunnelConfig, database: string, tables: string[], private readonly log: Logger, private readonly health: Health) {
    this.name = sourceSlotName(database, config.topicPrefix);
    this.publication = sourcePublicationName(config.topicPrefix);
    this.setTables(tables);
  }

  /** The tables read from the slot; one added later holds the slot until its producer says where it is. */
  setTables(tables: string[]): void {
    for (const id of [...this.feeds.keys()]) if (!tables.includes(id)) this.feeds.delete(id);
    for (const id of tables) {
      if (!this.feeds.has(id)) this.feeds.set(id, new TableFeed(id, () => this.acknowledge(), () => this.drain(), () => this.restart(`${id} joins`)));
    }
  }

  /**
   * A table switched to trigger capture leaves the slot: nothing holds the slot for it any more. True when it
   * was the last: the stream stops and the leadership ends (the slot is dropped once released).
   */
  leave(table: string): boolean {
    this.feeds.delete(table);
    if (this.feeds.size > 0) return false;
    this.closed = true;
    this.generation?.abort();
    return true;
  }

  feed(table: string): TableFeed {
    const feed = this.feeds.get(table);
    if (!feed) throw new Error(`${table} is not a table of the source slot ${this.name}`);
    return feed;
  }

  /** Waits until this process leads the source (its producers then take their tables' locks: one lock order, no deadlock). */
  async ready(signal: AbortSignal): Promise<boolean> {
    while (!this.leading && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener('abort', done);
          resolve();
        };
        this.leaders.push(done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
    return this.leading;
  }

  /** The stream starts again from the slot's confirmed position (which no table passed). */
  restart(why: string): void {
    if (!this.generation) return;
    this.log.info({ slot: this.name, why }, 'source slot: the stream restarts from the slot');
    this.generation.abort();
  }

  /** Leads the source's slot while it holds the source lock; a retryable failure is waited out, a fatal one fails every table. */
  async run(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff();
    const part = `source slot ${this.name}`;
    while (!signal.aborted && !this.closed) {
      let client: pg.Client | undefined;
      try {
        client = await connect(this.config.sourceUrl, 'source', producerApplicationName(`slot:${this.name}`));
        // the leader's session ending ends the leadership: another instance may hold the lock from then on
        const lost = new Promise<never>((_, reject) => client!.on('error', (err) => {
          this.leading = false;
          reject(err);
        }));
        lost.catch(() => {});
        let waited = false;
        const standby = async () => {
          if (!waited) telemetry.leadership(part, 'standby');
          waited = true;
          this.health.set(part, 'standby', 'another instance reads this source\'s slot');
        };
        if (!(await becomeLeader(client, `slot:${this.name}`, signal, standby))) return;
        this.setLeading(true);
        this.health.set(part, 'ok');
        telemetry.leadership(part, 'leading');
        this.log.info({ slot: this.name, tables: [...this.feeds.keys()] }, 'source slot: leading');
        while (!signal.aborted && !this.closed) await this.generationOrRetry(signal, backoff, lost);
      } catch (err) {
        const e = classify(err);
        // the leadership ended: every table's producer lets go of its table and waits for the next one
        for (const feed of this.feeds.values()) feed.fail(err as Error);
        // not retryable (the slot is gone or invalidated): each table's producer stops with the repair
        if (!e.retryable) return;
        const wait = backoff.next();
        this.health.set(part, 'waiting', describeError(e));
        this.log.warn({ slot: this.name, code: e.code, retryInMs: wait }, `source slot waiting: ${describeError(e)}`);
        await sleep(wait, signal);
      } finally {
        this.setLeading(false);
        await this.closeStream();
        await client?.end().catch(() => {});
      }
    }
  }

  /** One stream; a retryable failure of it (its walsender still held by a dead leader's, 55006) is waited out within the leadership. */
  private async generationOrRetry(signal: AbortSignal, backoff: Backoff, lost: Promise<never>): Promise<void> {
    try {
      await Promise.race([this.generationRun(signal, () => backoff.reset()), lost]);
    } catch (err) {
      const e = classify(err);
      if (!e.retryable || !this.leading) throw err;
      const wait = backoff.next();
      this.log.warn({ slot: this.name, code: e.code, retryInMs: wait }, `source slot stream restarts: ${describeError(e)}`);
      await sleep(wait, signal);
    }
  }

  /** One stream from the slot's confirmed position: messages routed until a restart is asked for or it fails. */
  private async generationRun(signal: AbortSignal, progressed: () => void): Promise<void> {
    const generation = new AbortController();
    const stop = () => generation.abort();
    signal.addEventListener('abort', stop, { once: true });
    generation.signal.addEventListener('abort', () => this.drain(), { once: true });
    this.generation = generation;
    try {
      await this.gather(generation.signal);
      const repl = await replicationClient(this.config.sourceUrl, producerApplicationName(`slot:${this.name}`));
      // 0/0: from the slot's confirmed flush LSN; each table skips commits its own position already has
      this.stream = await ReplicationStream.start(repl, this.name, this.publication, 0n);
      this.routes.clear();
      for (const feed of this.feeds.values()) feed.restarted();
      while (!generation.signal.aborted) {
        await this.stream.wait(1000, generation.signal);
        for (const item of this.stream.take(5000)) this.route(item);
        this.acknowledge();
        progressed();
        while ([...this.feeds.values()].some((f) => f.full) && !generation.signal.aborted) await new Promise<void>((resolve) => (this.drained = resolve));
      }
    } finally {
      signal.removeEventListener('abort', stop);
      this.generation = undefined;
      await this.closeStream();
    }
  }

  /** The first stream of a leadership waits (a while) for every table's producer, so a slow starter costs no restart. */
  private async gather(signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + gatherMs;
    while (!signal.aborted && Date.now() < deadline && [...this.feeds.values()].some((f) => f.limit === undefined && !f.reading)) await sleep(50, signal);
  }

  /** By relation: a table's changes to its feed; transaction boundaries, keepalives and logical messages to every feed. */
  private route(item: QueuedMessage): void {
    const m = item.message;
    switch (m.tag) {
      case 'relation': {
        const id = tableId({ schema: m.relation.schema, name: m.relation.name });
        this.routes.set(m.relation.oid, id);
        this.feeds.get(id)?.push(item);
        return;
      }
      case 'insert':
      case 'update':
      case 'delete':
        this.feeds.get(this.routes.get(m.relationOid) ?? '')?.push(item);
        return;
      case 'truncate':
        for (const id of new Set(m.relationOids.map((oid) => this.routes.get(oid)))) if (id) this.feeds.get(id)?.push(item);
        return;
      default:
        for (const feed of this.feeds.values()) feed.push(item);
    }
  }

  /** The slot confirms the lowest position every table allows; nothing until each table's producer said. */
  private acknowledge(): void {
    let lowest: bigint | undefined;
    for (const feed of this.feeds.values()) {
      const limit = feed.limit;
      if (limit === undefined) return;
      if (lowest === undefined || limit < lowest) lowest = limit;
    }
    if (lowest !== undefined && lowest > 0n) this.stream?.acknowledge(lowest);
  }

  private drain(): void {
    const d = this.drained;
    this.drained = undefined;
    d?.();
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    if (!leading) return;
    const waiting = this.leaders;
    this.leaders = [];
    for (const w of waiting) w();
  }

  private async closeStream(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    this.drain();
    await stream?.close();
  }
}
