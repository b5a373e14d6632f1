import type pg from 'pg';
import type { ChangeReader, Page } from '../capture/changeReader.js';
import { advance, isBatchComplete, nextPageSize, type Position } from '../capture/position.js';
import type { Records } from './batchPublisher.js';

/** A page as the publish step takes it: change objects, or the change rows' COPY bytes. */
export function recordsOf(page: Page): Records {
  return page.bytes ? { changeBytes: page.bytes, count: page.count, schemaVersion: page.schemaVersion } : { changes: page.changes };
}

/**
 * Pages of the change table as both sources read them: a page holding rows a newer capture wrote (DDL
 * on the source) is read again with the columns capture has now.
 */
export class ChangePages {
  constructor(
    private readonly changes: ChangeReader,
    private readonly batchSize: number,
    private readonly refreshColumns: (client: pg.Client) => Promise<void>,
  ) {}

  /** One page after `position`, pinned to the snapshot `cur` when given. */
  async read(client: pg.Client, position: Position, size: number, cur?: string): Promise<Page> {
    const page = await this.changes.readPage(client, position, size, cur);
    if (!this.changes.isStale(page)) return page;
    await this.refreshColumns(client);
    return this.changes.readPage(client, position, size, cur);
  }

  /** The size of the next page (growing while pages come back full). */
  nextSize(position: Position, previous: number): number {
    return nextPageSize(position, previous, this.batchSize);
  }

  /** Every non-empty page of the batch from `position` up to the snapshot `cur`, in order. */
  async *upTo(client: pg.Client, position: Position, cur: string): AsyncGenerator<Records> {
    let size = 0;
    for (;;) {
      size = this.nextSize(position, size);
      const page = await this.read(client, position, size, cur);
      if (page.count > 0) yield recordsOf(page);
      position = advance(position, cur, page.count, page.lastChangeId, size);
      if (isBatchComplete(position)) return;
    }
  }
}
