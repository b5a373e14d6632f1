import type pg from 'pg';
import type { ChangeReader } from '../capture/changeReader.js';
import { isBatchComplete } from '../capture/position.js';
import { saveState, stateParams, stateVanished, type CaptureState } from '../capture/stateStore.js';
import type { EnvelopeProducer } from '../transport/kafka.js';
import { telemetry } from '../instruments/telemetry.js';
import { inTransaction } from '../pg.js';
import { emptyTally, type BatchPublisher, type Records, type Tally } from './batchPublisher.js';
import { failpoint } from './failpoints.js';
import { atLeastOnce, type Publication, type Publisher } from './publisher.js';

/** When a page's ack came (wall ms), and when its checkpoint was stored. */
export interface Settled {
  ackedAt: number;
  storedAt: number;
}

/**
 * What a source hands the publish step: its records in order, and the checkpoint to store once Kafka
 * acknowledged them (or committed their transaction). A source only reads; every source (stream,
 * snapshot, and later logical decoding or pages already in envelope bytes) is a peer behind this shape.
 */
export interface SourcePage {
  /**
   * The records, in parts: a source reads its next part while Kafka takes the current one. Each `next`
   * is passed the message bytes the previous part made (0 at first), so a source can size its parts.
   */
  records: AsyncIterator<Records, void, number>;
  /** The state after the page, asked once every part was sent; the step adds what it counted. */
  after(): CaptureState;
  /** The records are read in one transaction opened with this statement, and the checkpoint joins it. */
  begin?: string;
  /** The changes a stream page holds (telemetry's page figures). */
  pageSize?: number;
  /** What the source keeps beside the checkpoint, in its transaction (an incremental snapshot's progress). */
  store?(client: pg.Client, after: CaptureState): Promise<void>;
  /** Milliseconds the source spent reading the page before handing it over (the read stage; parts add theirs). */
  readMs?: number;
  /**
   * A source whose checkpoint lives elsewhere (logical capture: the slot's confirmed flush LSN) stores it
   * here, after the ack or commit, instead of `pgtunnel.state` (a source write per page would cost WAL).
   */
  checkpoint?: (after: CaptureState) => void | Promise<void>;
  /** A stream page of one part: at-least-once may send it before the previous page's ack (`publishAhead`). */
  ahead?: boolean;
}

/** A page's records in one part (a snapshot chunk, a logical page). */
export async function* onePart(records: Records): AsyncGenerator<Records, void, number> {
  yield records;
}

/**
 * The one publish step of a producer: publishes a source's page, waits for Kafka's acknowledgement (or
 * transaction commit), then checkpoints (state and, once a batch is complete, change-table cleanup) and
 * counts. Sources never checkpoint, so no path can store a position Kafka has not taken.
 */
export class PublishStep {
  private publisher: Publisher;
  /** Exactly-once's publisher is in use: one Kafka transaction at a time, no page sent ahead. */
  private transactional = false;
  /**
   * The newest stream page's ack and checkpoint, queued on the producer's session while the next page is read
   * and sent; it waits for the page before it first, so checkpoints commit in page order.
   */
  private pending: Promise<void> | undefined;
  /** The page before it (at-least-once: two pages in flight), waited for before another page is read. */
  private older: Promise<void> | undefined;
  /** Stream pages sent ahead so far: a page whose ack comes after a later page was sent is between two acks. */
  private sent = 0;

  constructor(
    private readonly id: string,
    private readonly batches: BatchPublisher,
    /** The change table cleaned after a complete batch; logical capture has none. */
    private readonly changes: ChangeReader | undefined,
    private readonly producer: EnvelopeProducer,
  ) {
    this.publisher = atLeastOnce(producer);
  }

  /** Whether a page without a transaction of its own checkpoints in one statement queued behind its ack. */
  get queuesCheckpoints(): boolean {
    return this.changes?.checkpointSql !== undefined;
  }

  /** Publishes through `publisher` (exactly-once) from now on, until `close`. */
  use(publisher: Publisher): void {
    this.publisher = publisher;
    this.transactional = true;
  }

  /** Whether a page may be sent before the previous one's ack (`sendAhead`): at-least-once publishing. */
  get sendsAhead(): boolean {
    return !this.transactional;
  }

  /** Closes the publisher in use and falls back to at-least-once (the next leadership opens its own). */
  async close(): Promise<void> {
    await this.drained().catch(() => {}); // a checkpoint lost here is a re-send, as after a crash
    const publisher = this.publisher;
    this.publisher = atLeastOnce(this.producer);
    this.transactional = false;
    await publisher.close();
  }

  /**
   * One page published and checkpointed; `stored` is the checkpoint the source holds now (an exactly-once
   * position record names it). Returns the state after the page, and when Kafka acknowledged it and its
   * checkpoint was stored: later for a stream page, which returns once sent (`publishAhead`) or acknowledged.
   */
  async publish(client: pg.Client, page: SourcePage, stored: CaptureState): Promise<{ after: CaptureState; settled: Promise<Settled> }> {
    const tally = emptyTally();
    const timing = { read: 0, publish: 0, checkpoint: 0 };
    // a stream page's checkpoint is one statement queued behind its ack; anything else checkpoints in line
    const queued = page.begin === undefined && !page.checkpoint && !page.store && this.queuesCheckpoints;
    if (queued && page.ahead && !this.transactional) return this.publishAhead(client, page, tally, timing);
    if (!queued) await this.drained();
    const work = async () => {
      const sendAt = performance.now();
      const after = await this.send(page, stored, tally, timing);
      timing.publish = performance.now() - sendAt - timing.read;
      failpoint('producer.after-publish');
      this.batches.counted(tally, page.pageSize);
      const ackedAt = Date.now();
      if (queued) {
        this.queue(client, after);
        const settled = this.pending!.then(() => ({ ackedAt, storedAt: Date.now() }));
        settled.catch(() => {}); // seen by the next drain
        return { after, settled };
      }
      const saveAt = performance.now();
      if (page.checkpoint) await page.checkpoint(after);
      else await this.save(client, after);
      await page.store?.(client, after);
      timing.checkpoint = performance.now() - saveAt;
      return { after, settled: Promise.resolve({ ackedAt, storedAt: Date.now() }) };
    };
    const result = page.begin === undefined ? await work() : await inTransaction(client, work, page.begin);
    if (!queued) telemetry.checkpoint(this.id);
    const { checkpoint, ...sending } = timing;
    telemetry.stages({ ...sending, ...(queued ? {} : { checkpoint }), read: timing.read + (page.readMs ?? 0) });
    return result;
  }

  /**
   * At-least-once: a page sent without waiting for its acknowledgement, so the next one is formed and sent
   * behind it. Resolves once its records are queued behind every earlier send (the broker keeps that order
   * per partition); `acked` settles with Kafka's answer, the page counted. The checkpoint is the caller's,
   * strictly in page order, each after its own and every earlier page's ack (`PagesInFlight`). `tally`: what
   * the page holds, counted before it returns.
   */
  async sendAhead(page: { records: Records; pageSize: number; readMs: number }, tally = emptyTally()): Promise<{ acked: Promise<void> }> {
    if (this.transactional) throw new Error('a page sent ahead of an ack needs at-least-once publishing: exactly-once has one Kafka transaction open at a time');
    await this.batches.flush();
    const sendAt = performance.now();
    const messages = this.batches.messages(page.records, tally);
    let onQueued!: () => void;
    const queued = new Promise<void>((resolve) => (onQueued = resolve));
    const publication = await this.publisher.begin();
    const acked = publication.send(messages, onQueued).then(() => {
      failpoint('producer.after-publish');
      this.batches.counted(tally, page.pageSize);
      telemetry.stages({ publish: performance.now() - sendAt, read: page.readMs });
    });
    acked.catch(() => {}); // awaited by the caller, in page order
    await Promise.race([queued, acked.catch(() => {})]);
    return { acked };
  }

  /**
   * Waits for the checkpoint in flight: before another checkpoint, a Kafka commit whose position record
   * names it, a transaction on the session, or idling. Its failure is the caller's (the leadership retries
   * from the checkpoint stored before it, re-sending what followed, as after a crash).
   */
  async drained(): Promise<void> {
    const pending = this.pending;
    this.pending = this.older = undefined;
    await pending;
  }

  /**
   * Waits until another stream page may be sent: at most two in flight, so the page before the newest is
   * acknowledged and checkpointed first. The stream waits here before reading, so its page's snapshot is
   * taken as late as possible. Its failure is the caller's, as `drained`'s.
   */
  async room(): Promise<void> {
    const older = this.older;
    this.older = undefined;
    await older;
  }

  /**
   * A stream page sent while the previous one may still be unacknowledged (at-least-once): returns once its
   * records are queued behind the previous page's in every partition (`sendAhead`). Its ack and checkpoint follow the previous page's: page N+1 is checkpointed only after
   * N, after both acks, and a failed send fails every page after it unchecked, so the leadership restarts
   * from the stored checkpoint and reads both again.
   */
  private async publishAhead(client: pg.Client, page: SourcePage, tally: Tally, timing: { read: number }): Promise<{ after: CaptureState; settled: Promise<Settled> }> {
    await this.room();
    const readAt = performance.now();
    const part = await page.records.next(0);
    timing.read += performance.now() - readAt;
    if (part.done) throw new Error('a stream page without records reached the publish step');
    const { acked } = await this.sendAhead({ records: part.value, pageSize: page.pageSize ?? 0, readMs: timing.read + (page.readMs ?? 0) }, tally);
    // sent: the source goes on (a full page's successor is prefetched); a stream page is one part
    if (!(await page.records.next(0)).done) throw new Error('a stream page sent ahead of its ack has more than one part');
    const after = page.after();
    after.changesPublished += tally.changes - tally.bad;
    after.deadLettered += tally.bad;
    after.snapshotRowsDone += tally.rows;
    const previous = this.pending;
    const number = ++this.sent;
    const settled = (async (): Promise<Settled> => {
      await previous;
      await acked;
      if (this.sent > number) failpoint('producer.between-acks');
      const ackedAt = Date.now();
      await this.store(client, after);
      return { ackedAt, storedAt: Date.now() };
    })();
    settled.catch(() => {}); // seen by the next room or drain
    this.older = this.pending;
    this.pending = settled.then(() => {});
    this.pending.catch(() => {});
    return { after, settled };
  }

  /**
   * The page's checkpoint queued on the session without waiting: the next page is read (on the stream's
   * own connection) and sent while it commits. At most one is in flight (`send` drains it before its commit).
   */
  private queue(client: pg.Client, state: CaptureState): void {
    const saving = this.store(client, state);
    saving.catch(() => {}); // seen by the next drain
    this.pending = saving;
  }

  /** A stream page's checkpoint in one statement: the state, and the change rows of a completed batch. */
  private async store(client: pg.Client, state: CaptureState): Promise<void> {
    const at = performance.now();
    const checkpoint = isBatchComplete(state.position) ? state.position.prev : null;
    const { rows } = await client.query<{ updated_at: Date | null; cleaned: number }>(this.changes!.checkpointSql!, [...stateParams(this.id, state), checkpoint]);
    if (!rows[0]?.updated_at) throw stateVanished(this.id);
    state.updatedAt = rows[0].updated_at.toISOString();
    this.changes!.cleaned(rows[0].cleaned);
    telemetry.checkpoint(this.id);
    telemetry.stages({ checkpoint: performance.now() - at });
  }

  /** Stores a state nothing was published for (an empty page that completes a batch, an adopted position). */
  async checkpoint(client: pg.Client, state: CaptureState): Promise<void> {
    await this.drained();
    await inTransaction(client, () => this.save(client, state));
    telemetry.checkpoint(this.id);
  }

  /** Every part sent and acknowledged, then the publication committed with the state after it. */
  private async send(page: SourcePage, stored: CaptureState, tally: Tally, timing: { read: number }): Promise<CaptureState> {
    const publication = await this.publisher.begin();
    try {
      await (await this.sendParts(page, publication, tally, timing)).acked;
      const after = page.after();
      after.changesPublished += tally.changes - tally.bad;
      after.deadLettered += tally.bad;
      after.snapshotRowsDone += tally.rows;
      // the previous page's checkpoint is stored before this one's commit names it (exactly-once's position record)
      await this.drained();
      await publication.commit(stored, after);
      return after;
    } catch (err) {
      await this.batches.settle();
      await publication.abort();
      throw err;
    }
  }

  /**
   * Every part of the page handed to the sender, each read while Kafka takes the one before and sent once
   * that one is acknowledged (`publishBatch`); returns the last part's acknowledgement, the page's.
   */
  private async sendParts(page: SourcePage, publication: Publication, tally: Tally, timing: { read: number }): Promise<{ acked: Promise<void> }> {
    // reading the parts is the read stage; the rest of the send is publishing
    const read = async (bytes: number) => {
      const at = performance.now();
      const part = await page.records.next(bytes);
      timing.read += performance.now() - at;
      return part;
    };
    for (let part = await read(0); !part.done; ) {
      const bytes = await this.batches.publishBatch(publication, part.value, tally);
      part = await read(bytes);
    }
    return { acked: this.batches.detach() };
  }

  /** The source checkpoint, in the caller's transaction: the state, and the rows of a completed batch. */
  private async save(client: pg.Client, state: CaptureState): Promise<void> {
    state.updatedAt = await saveState(client, this.id, state);
    if (this.changes && isBatchComplete(state.position)) await this.changes.cleanup(client, state.position.prev!);
  }
}
