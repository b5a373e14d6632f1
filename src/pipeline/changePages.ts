import type pg from 'pg';
import type { ChangeReader, Page } from '../capture/changeReader.js';
import { advance, isBatchComplete, nextPageSize, type Position } from '../capture/position.js';
import type { ChangeRow } from '../contracts/envelope.js';

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
  async *upTo(client: pg.Client, position: Position, cur: string): AsyncGenerator<ChangeRow[]> {
    let size = 0;
    for (;;) {
      size = this.nextSize(position, size);
      const page = await this.read(client, position, size, cur);
      if (page.changes.length > 0) yield page.changes;
      position = advance(position, cur, page.changes.length, page.changes.at(-1)?.changeId as number, size);
      if (isBatchComplete(position)) return;
    }
  }
}
