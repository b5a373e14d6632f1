import type pg from 'pg';
import type { TableConfig } from '../config/load.js';
import { TunnelError } from '../errors.js';
import { slotName, tableId } from '../names.js';
import { sleep } from '../retry.js';
import { dropSlotWhenReleased } from './logicalInstall.js';

/** The prefix of the logical message that marks where a table leaves its own slot for the shared one. */
export const slotMigrationPrefix = 'pgtunnel.slot-migration';

/**
 * A table read from a slot of its own (installed before the shared slot, issue 22) moves onto the source's
 * shared slot without a re-snapshot. Its own slot's confirmed position E splits its changes exactly: the
 * server resends a transaction from a slot when its commit record is at or after the confirmed position,
 * which is also the rule each table applies to the shared stream (`LogicalStream.from`). So the own slot's
 * stream runs until it confirmed a position E at or past the mark, and the shared stream gives the table
 * every transaction committing at or after E (join_lsn = E). The mark is a transactional logical message
 * emitted while the shared slot is held and after the table joined the shared publication, so the shared
 * slot can still give everything from E, decoded with the table in its publication (architecture.md).
 */
export class SlotMigration {
  readonly ownSlot: string;

  constructor(private readonly client: pg.Client, private readonly table: TableConfig) {
    this.ownSlot = slotName(table, client.database ?? '');
  }

  /** True when the table still has a slot of its own beside the shared one. */
  async pending(): Promise<boolean> {
    const { rows } = await this.client.query<{ own: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) AS own', [this.ownSlot]);
    if (rows[0]!.own) return true;
    // the own slot went and the mark was left (a crash between the two): nothing more to do
    await this.client.query('UPDATE pgtunnel.state SET slot_migration = NULL WHERE table_id = $1 AND slot_migration IS NOT NULL', [tableId(this.table)]);
    return false;
  }

  /** The mark the own slot must confirm (emitted once; the caller holds the shared slot first). */
  async mark(): Promise<bigint> {
    const { rows } = await this.client.query<{ mark: string }>(
      "UPDATE pgtunnel.state SET slot_migration = coalesce(slot_migration, pg_logical_emit_message(true, $2, $1)) WHERE table_id = $1 RETURNING (slot_migration - '0/0')::text AS mark",
      [tableId(this.table), slotMigrationPrefix],
    );
    if (!rows[0]) throw new TunnelError('PGT_UNEXPECTED', `${tableId(this.table)} has no capture state to move onto the shared slot`, { unexpected: true });
    return BigInt(rows[0].mark);
  }

  /** The own slot's confirmed flush position (0 when it has none yet). */
  async confirmed(): Promise<bigint> {
    const { rows } = await this.client.query<{ lsn: string | null }>("SELECT (confirmed_flush_lsn - '0/0')::text AS lsn FROM pg_replication_slots WHERE slot_name = $1", [this.ownSlot]);
    return BigInt(rows[0]?.lsn ?? 0);
  }

  /** Waits (with a deadline) until the own slot confirmed `lsn`: the status update that says so travels on its own. */
  async confirmedAt(lsn: bigint): Promise<bigint> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const now = await this.confirmed();
      if (now >= lsn) return now;
      if (Date.now() > deadline) throw new TunnelError('PGT_SLOT_MIGRATION', `the slot ${this.ownSlot} of ${tableId(this.table)} did not confirm ${lsn} within 30 s (it is at ${now})`, { errorClass: 'retryable', hint: 'it is retried; the table moves onto the shared slot once its own slot confirmed the mark' });
      await sleep(20);
    }
  }

  /**
   * The own slot confirmed E (at or past the mark): the table joins the shared stream at E, then its own slot
   * and publication go, then the mark (a crash in between redoes the step: E is the same slot's position).
   */
  async finish(joinAt: bigint): Promise<void> {
    const id = tableId(this.table);
    await this.client.query("UPDATE pgtunnel.state SET join_lsn = ('0/0'::pg_lsn + $2::numeric) WHERE table_id = $1", [id, joinAt.toString()]);
    await dropSlotWhenReleased(this.client, this.table);
    await this.client.query('UPDATE pgtunnel.state SET slot_migration = NULL WHERE table_id = $1', [id]);
  }
}
