import type pg from 'pg';
import type { TunnelConfig } from '../config/load.js';
import type { ChangeReader, Page } from '../capture/changeReader.js';
import { advance, isBatchComplete, nextPageSize, type Position } from '../capture/position.js';
import { saveState, type CaptureState } from '../capture/stateStore.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';
import { inTransaction } from '../pg.js';
import { emptyTally, type BatchPublisher, type Tally } from './batchPublisher.js';
import { failpoint } from './failpoints.js';
import type { Publication } from './publisher.js';

/** What the stream and snapshot sources share with the producer that runs them. */
export interface SourceContext {
  id: string;
  config: TunnelConfig;
  changes: ChangeReader;
  batches: BatchPublisher;
  log: Logger;
  /** Re-reads the captured columns (DDL on the source). */
  refreshColumns(client: pg.Client): Promise<void>;
  /** A publication that is aborted when the work fails before its source checkpoint. */
  published<T>(work: (publication: Publication) => Promise<T>): Promise<T>;
}

/**
 * The change stream: snapshot-diff batches of the change table read in pages (growing while they come
 * back full), each page published and checkpointed on its own.
 */
export class StreamSource {
  private pageSize = 0;
  /** The next page of a batch, read while Kafka acknowledges the current one. */
  private prefetched: { client: pg.Client; position: Position; size: number; page: Promise<Page> } | undefined;

  constructor(private readonly ctx: SourceContext) {}

  /** One page after `position`, read again with the columns capture has now when DDL wrote newer rows. */
  private async readPage(client: pg.Client, position: Position, size: number, cur?: string): Promise<Page> {
    const page = await this.ctx.changes.readPage(client, position, size, cur);
    if (!this.ctx.changes.isStale(page)) return page;
    await this.ctx.refreshColumns(client);
    return this.ctx.changes.readPage(client, position, size, cur);
  }

  /**
   * Every page of the batch from `position` up to the snapshot `cur`, sent through `publication` (the
   * snapshot's hand-off: these changes precede the key chunk read in `cur`). Not flushed.
   */
  async drain(client: pg.Client, publication: Publication, position: Position, cur: string, tally: Tally): Promise<void> {
    let size = 0;
    for (;;) {
      size = nextPageSize(position, size, this.ctx.config.batchSize);
      const page = await this.readPage(client, position, size, cur);
      if (page.changes.length > 0) await this.ctx.batches.publishBatch(publication, { changes: page.changes }, tally);
      position = advance(position, cur, page.changes.length, page.changes.at(-1)?.changeId as number, size);
      if (isBatchComplete(position)) return;
    }
  }

  /**
   * While a full page is in flight, the batch's next page is read (queued on the connection before the
   * checkpoint's transaction): a backlog is read and acknowledged at the same time. Only within a batch,
   * so a new batch's snapshot is never taken early (that would delay the changes committed meanwhile).
   */
  private prefetch(client: pg.Client, position: Position, size: number): void {
    const page = this.readPage(client, position, size);
    page.catch(() => {}); // seen by the step that takes it
    this.prefetched = { client, position, size, page };
  }

  private take(client: pg.Client, position: Position, size: number): Promise<Page> {
    const p = this.prefetched;
    this.prefetched = undefined;
    const same = p && p.client === client && p.size === size && p.position.prev === position.prev && p.position.cur === position.cur && p.position.lastChangeId === position.lastChangeId;
    return same ? p.page : this.readPage(client, position, size);
  }

  /** One page published and checkpointed (`busy`: more is likely waiting), or an empty batch seen (not stored). */
  async step(client: pg.Client, state: CaptureState, stored: CaptureState): Promise<{ next: CaptureState; busy: boolean }> {
    const { id, batches, changes } = this.ctx;
    const size = nextPageSize(state.position, this.pageSize, this.ctx.config.batchSize);
    this.pageSize = size;
    const readAt = Date.now();
    const page = await this.take(client, state.position, size);
    const readMs = Date.now() - readAt;
    const count = page.changes.length;
    const next: CaptureState = { ...state, position: advance(state.position, page.cur, count, page.changes.at(-1)?.changeId as number, size) };
    if (count === 0 && state.position.cur === null) {
      // An empty batch moves the position in memory only: nothing was published, nothing to clean.
      telemetry.checkpoint(id);
      return { next, busy: false };
    }
    const publishAt = Date.now();
    const tally = emptyTally();
    if (count > 0) {
      await this.ctx.published(async (publication) => {
        await batches.publishBatch(publication, { changes: page.changes }, tally);
        if (!isBatchComplete(next.position)) this.prefetch(client, next.position, nextPageSize(next.position, size, this.ctx.config.batchSize));
        await batches.flush();
        next.changesPublished += tally.changes - tally.bad;
        next.deadLettered += tally.bad;
        await publication.commit(stored, next);
      });
      failpoint('producer.after-publish');
      batches.counted(tally, count);
    }
    const savedAt = Date.now();
    await inTransaction(client, async () => {
      next.updatedAt = await saveState(client, id, next);
      if (isBatchComplete(next.position)) await changes.cleanup(client, next.position.prev!);
    });
    telemetry.checkpoint(id);
    // Stage timings of each page, for the latency hunt (bench/stall.ts reads them).
    if (count > 0 && this.ctx.log.isLevelEnabled('debug')) {
      const txids = page.changes.map((c) => Number(c.txid));
      this.ctx.log.debug({ table: id, count, txids: [Math.min(...txids), Math.max(...txids)], at: readAt, readMs, publishMs: savedAt - publishAt, saveMs: Date.now() - savedAt }, 'page published');
    }
    return { next, busy: true };
  }
}
