import type pg from 'pg';
import type { Page } from '../capture/changeReader.js';
import { fieldText } from '../capture/copyRows.js';
import { pageFields } from '../contracts/changeFrames.js';
import { advance, isBatchComplete, type Position } from '../capture/position.js';
import type { CaptureState } from '../capture/stateStore.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';
import type { Records } from './batchPublisher.js';
import { recordsOf, type ChangePages } from './changePages.js';
import type { PublishStep } from './publishStep.js';

/**
 * The change stream: snapshot-diff batches of the change table read in pages (growing while they come
 * back full), each page handed to the publish step on its own.
 */
export class StreamSource {
  private pageSize = 0;
  /** The next page of a batch, read while Kafka acknowledges the current one. */
  private prefetched: { client: pg.Client; position: Position; size: number; page: Promise<Page> } | undefined;

  constructor(
    private readonly id: string,
    private readonly pages: ChangePages,
    private readonly publishStep: PublishStep,
    private readonly log: Logger,
  ) {}

  /**
   * While a full page is in flight, the batch's next page is read (queued on the connection before the
   * checkpoint's transaction): a backlog is read and acknowledged at the same time. Only within a batch,
   * so a new batch's snapshot is never taken early (that would delay the changes committed meanwhile).
   */
  private prefetch(client: pg.Client, position: Position, size: number): void {
    const page = this.pages.read(client, position, size);
    page.catch(() => {}); // seen by the step that takes it
    this.prefetched = { client, position, size, page };
  }

  private take(client: pg.Client, position: Position, size: number): Promise<Page> {
    const p = this.prefetched;
    this.prefetched = undefined;
    const same = p && p.client === client && p.size === size && p.position.prev === position.prev && p.position.cur === position.cur && p.position.lastChangeId === position.lastChangeId;
    return same ? p.page : this.pages.read(client, position, size);
  }

  /** The page's one part, then the prefetch of its successor while Kafka takes it. */
  private async *records(client: pg.Client, page: Page, next: CaptureState, size: number): AsyncGenerator<Records, void, number> {
    yield recordsOf(page);
    if (!isBatchComplete(next.position)) this.prefetch(client, next.position, this.pages.nextSize(next.position, size));
  }

  /**
   * One page sent (`busy`: more is likely waiting; its ack and checkpoint may come after the next page was
   * sent, publishStep.ts), or an empty batch seen (not stored).
   * `reads`: the connection pages are read on, apart from the producer's session (`client`, which holds the
   * lock and stores checkpoints), so a page's read never waits behind the previous page's checkpoint.
   */
  async step(client: pg.Client, state: CaptureState, stored: CaptureState, reads: pg.Client = client): Promise<{ next: CaptureState; busy: boolean }> {
    // a page in flight beyond the one before it is acknowledged first: the read's snapshot is taken when it can be sent
    await this.publishStep.room();
    const size = this.pages.nextSize(state.position, this.pageSize);
    this.pageSize = size;
    const readAt = Date.now();
    const page = await this.take(reads, state.position, size);
    const readMs = Date.now() - readAt;
    const count = page.count;
    const next: CaptureState = { ...state, position: advance(state.position, page.cur, count, page.lastChangeId, size) };
    if (count === 0 && state.position.cur === null) {
      // An empty batch moves the position in memory only: nothing was published, nothing to clean.
      telemetry.checkpoint(this.id);
      return { next, busy: false };
    }
    if (count === 0) {
      // the batch's last page came back empty: it completes the batch, and only the checkpoint moves
      await this.publishStep.checkpoint(client, next);
      return { next, busy: true };
    }
    const publishAt = Date.now();
    const { after, settled } = await this.publishStep.publish(client, { records: this.records(reads, page, next, size), after: () => next, pageSize: count, readMs, ahead: true }, stored);
    // Stage timings of each page, for the latency hunt (bench/stall.ts reads them).
    if (this.log.isLevelEnabled('debug')) {
      const txids = page.bytes ? Array.from({ length: count }, (_, i) => Number(fieldText(page.bytes!, i, pageFields.txid))) : page.changes.map((c) => Number(c.txid));
      settled.then(({ ackedAt, storedAt }) => this.log.debug({ table: this.id, count, txids: [Math.min(...txids), Math.max(...txids)], at: readAt, readMs, publishMs: ackedAt - publishAt, saveMs: storedAt - ackedAt }, 'page published'), () => {});
    }
    return { next: after, busy: true };
  }
}
