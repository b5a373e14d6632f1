import type { TableConfig } from '../config/load.js';
import type { Client } from '../pg.js';
import { slotName, tableId } from '../names.js';
import { logicalSlotOf } from '../capture/sharedSlot.js';
import { telemetry } from '../instruments/telemetry.js';

/** A logical capture's replication slot as status shows it; bytes are WAL bytes behind the source's current WAL. */
export interface SlotStatus {
  name: string;
  /** A walsender reads it (a running producer). */
  active: boolean;
  /** `reserved`, `extended`, `unreserved` (max_slot_wal_keep_size is about to remove its WAL) or `lost` (invalidated). */
  walStatus: string | null;
  /** WAL the source keeps for the slot (from its restart LSN): disk the source cannot recycle. */
  retainedWalBytes: number;
  /** WAL not yet confirmed by the producer (from its confirmed flush LSN): the capture's lag. */
  lagBytes: number;
  /** WAL left before max_slot_wal_keep_size invalidates the slot; null when unlimited. */
  safeWalBytes: number | null;
}

/**
 * The table's slot, or null when it has none (trigger capture, or the slot was dropped: the producer
 * stops with the repair). Measured on every status poll, so /metrics carries it too.
 */
export async function slotStatus(client: Client, t: TableConfig, instance: string): Promise<SlotStatus | null> {
  const of = await logicalSlotOf(client, t, instance);
  const name = of?.slot ?? slotName(t, client.database ?? '');
  const { rows } = await client.query<{ active: boolean; wal_status: string | null; retained: string | null; lag: string | null; safe: string | null }>(
    `SELECT active, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::text AS retained,
            pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag, safe_wal_size::text AS safe
     FROM pg_replication_slots WHERE slot_name = $1`,
    [name],
  );
  const r = rows[0];
  if (!r) return null;
  const status = { name, active: r.active, walStatus: r.wal_status, retainedWalBytes: Number(r.retained ?? 0), lagBytes: Math.max(0, Number(r.lag ?? 0)), safeWalBytes: r.safe === null ? null : Number(r.safe) };
  // the source's shared slot is one series (table label empty), not one per table it carries
  telemetry.slot({ table: of?.shared ? '' : tableId(t), slot: name, retainedWalBytes: status.retainedWalBytes, lagBytes: status.lagBytes, lost: status.walStatus === 'lost' });
  return status;
}

/** One status line for a slot, with the repair when it is lost or about to be. */
export function formatSlot(s: SlotStatus, bytes: (n: number) => string): string {
  const risk = s.walStatus === 'lost'
    ? ' — LOST: the source removed WAL the slot needed; run `pgtunnel install` then `pgtunnel snapshot --restart`, or switch to capture: trigger'
    : s.walStatus === 'unreserved' ? ' — its WAL is past max_slot_wal_keep_size and about to be removed: is the producer running? (see docs/operations.md)' : '';
  return `  slot ${s.name} ${s.active ? 'active' : 'inactive'}, lag ${bytes(s.lagBytes)}, retains ${bytes(s.retainedWalBytes)} of WAL${s.safeWalBytes === null ? '' : ` (${bytes(s.safeWalBytes)} before max_slot_wal_keep_size)`}${risk}`;
}
