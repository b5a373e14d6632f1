import type pg from 'pg';
import type { ChangeReader } from '../capture/changeReader.js';
import { isBatchComplete } from '../capture/position.js';
import { saveState, stateParams, stateVanished, type CaptureState } from '../capture/stateStore.js';
import type { EnvelopeProducer } from '../transport/kafka.js';
import { telemetry } from '../instruments/telemetry.js';
import { inTransaction } from '../pg.js';
import { emptyTally, type BatchPublisher, type Records, type Tally } from './batchPublisher.js';
import { failpoint } from './failpoints.js';
import { atLeastOnce, type Publisher } from './publisher.js';

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
  /** A stream page's checkpoint, queued on the producer's session while the next page is read and sent. */
  private pending: Promise<void> | undefined;

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
   * position record names it). Returns the state stored and when Kafka had acknowledged the page.
   */
  async publish(client: pg.Client, page: SourcePage, stored: CaptureState): Promise<{ after: CaptureState; ackedAt: number }> {
    const tally = emptyTally();
    const timing = { read: 0, publish: 0, checkpoint: 0 };
    // a stream page's checkpoint is one statement queued behind its ack; anything else checkpoints in line
    const queued = page.begin === undefined && !page.checkpoint && !page.store && this.queuesCheckpoints;
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
        return { after, ackedAt };
      }
      const saveAt = performance.now();
      if (page.checkpoint) await page.checkpoint(after);
      else await this.save(client, after);
      await page.store?.(client, after);
      timing.checkpoint = performance.now() - saveAt;
      return { after, ackedAt };
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
   * strictly in page order, each after its own and every earlier page's ack (`PagesInFlight`).
   */
  async sendAhead(page: { records: Records; pageSize: number; readMs: number }): Promise<{ acked: Promise<void> }> {
    if (this.transactional) throw new Error('a page sent ahead of an ack needs at-least-once publishing: exactly-once has one Kafka transaction open at a time');
    await this.batches.flush();
    const tally = emptyTally();
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
    this.pending = undefined;
    await pending;
  }

  /**
   * The page's checkpoint queued on the session without waiting: the next page is read (on the stream's
   * own connection) and sent while it commits. At most one is in flight (`send` drains it before its commit).
   */
  private queue(client: pg.Client, state: CaptureState): void {
    const at = performance.now();
    const saving = (async () => {
      const checkpoint = isBatchComplete(state.position) ? state.position.prev : null;
      const { rows } = await client.query<{ updated_at: Date | null; cleaned: number }>(this.changes!.checkpointSql!, [...stateParams(this.id, state), checkpoint]);
      if (!rows[0]?.updated_at) throw stateVanished(this.id);
      state.updatedAt = rows[0].updated_at.toISOString();
      this.changes!.cleaned(rows[0].cleaned);
      telemetry.checkpoint(this.id);
      telemetry.stages({ checkpoint: performance.now() - at });
    })();
    saving.catch(() => {}); // seen by the next drain
    this.pending = saving;
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
    // reading the parts is the read stage; the rest of the send is publishing
    const read = async (bytes: number) => {
      const at = performance.now();
      const part = await page.records.next(bytes);
      timing.read += performance.now() - at;
      return part;
    };
    try {
      for (let part = await read(0); !part.done; ) {
        const bytes = await this.batches.publishBatch(publication, part.value, tally);
        part = await read(bytes);
      }
      await this.batches.flush();
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

  /** The source checkpoint, in the caller's transaction: the state, and the rows of a completed batch. */
  private async save(client: pg.Client, state: CaptureState): Promise<void> {
    state.updatedAt = await saveState(client, this.id, state);
    if (this.changes && isBatchComplete(state.position)) await this.changes.cleanup(client, state.position.prev!);
  }
}
