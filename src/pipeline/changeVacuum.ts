import type pg from 'pg';
import { describeError } from '../errors.js';
import { connect, quoteIdent } from '../pg.js';
import type { ChangeReader } from '../capture/changeReader.js';
import type { Logger } from '../instruments/log.js';
import { telemetry } from '../instruments/telemetry.js';

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
  /** Whether the source role may VACUUM the change table; asked once. */
  private permitted: boolean | undefined;

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
      this.permitted ??= await this.mayVacuum(this.client);
      if (!this.permitted) return await this.close();
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

  /**
   * PostgreSQL 15 lets only the owner of a table (or of the database) VACUUM it; for anyone else VACUUM
   * only warns and does nothing. A runtime role that does not own the change table leaves it to autovacuum.
   */
  private async mayVacuum(client: pg.Client): Promise<boolean> {
    const { rows } = await client.query<{ ok: boolean; owner: string; role: string }>(
      `SELECT pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE') AS ok, pg_get_userbyid(c.relowner) AS owner, current_user AS role
       FROM pg_class c, pg_database d WHERE c.oid = $1::regclass AND d.datname = current_database()`,
      [this.changes.changeTable],
    );
    const r = rows[0]!;
    if (!r.ok) {
      const reason = `the source role ${quoteIdent(r.role)} does not own the change table ${this.changes.changeTable}, so the producer leaves its VACUUM to autovacuum (the table may grow between runs of autovacuum) — fix, as its owner ${quoteIdent(r.owner)}: ALTER TABLE ${this.changes.changeTable} SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000), or GRANT ${quoteIdent(r.owner)} TO ${quoteIdent(r.role)}`;
      this.log.warn({ table: this.table, changeTable: this.changes.changeTable, owner: r.owner }, reason);
      telemetry.degraded('vacuum', reason, this.table);
    }
    return r.ok;
  }

  /** Ends the connection; a vacuum in flight is cancelled with it and simply runs again later. */
  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }
}
