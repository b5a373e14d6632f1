import type pg from 'pg';
import { describeError } from '../errors.js';
import { connect } from '../pg.js';
import type { ChangeReader } from '../capture/changeReader.js';
import type { Logger } from '../observe/log.js';

/** After a failed vacuum (source down, say), wait this long before the next attempt. */
const retryAfterMs = 5000;

/**
 * The change table's VACUUM, beside the stream on a connection of its own. Run inside the producer's
 * loop, a vacuum waiting on locks held every change behind it: 4.1 s at a steady 1k changes/s.
 */
export class ChangeVacuum {
  private client: pg.Client | undefined;
  private running: Promise<void> | undefined;
  private failedAt = 0;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly table: string,
    private readonly changes: ChangeReader,
    private readonly log: Logger,
  ) {}

  /** Starts a vacuum when one is due and none runs; never waits for it. */
  poke(): void {
    if (this.running || this.closed || Date.now() - this.failedAt < retryAfterMs) return;
    this.running = this.vacuum().finally(() => (this.running = undefined));
  }

  private async vacuum(): Promise<void> {
    try {
      this.client ??= await connect(this.url, 'source', `pgtunnel vacuum ${this.table}`);
      if (this.closed) return await this.close();
      const at = Date.now();
      if (await this.changes.vacuumIfDue(this.client)) this.log.debug({ table: this.table, at, ms: Date.now() - at }, 'change table vacuumed');
    } catch (err) {
      this.failedAt = Date.now();
      if (!this.closed) this.log.warn({ table: this.table }, `vacuum of the change table failed, retried later: ${describeError(err)}`);
      const client = this.client;
      this.client = undefined;
      await client?.end().catch(() => {});
    }
  }

  /** Ends the connection; a vacuum in flight is cancelled with it and simply runs again later. */
  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }
}
