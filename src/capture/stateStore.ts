import type pg from 'pg';
import { TunnelError } from '../errors.js';
import type { Position } from './position.js';

export type Phase = 'snapshot' | 'streaming';

export interface CaptureState {
  phase: Phase;
  position: Position;
  /** The last key the snapshot published, as JSON text (exact: never through a JS number). */
  snapshotLastKey: string | null;
  snapshotRowsDone: number;
  snapshotRowsTotal: number | null;
  changesPublished: number;
  /** Change rows sent to the dead-letter topic by the producer (bad actions). */
  deadLettered: number;
  updatedAt?: string;
  /** Logical capture: the WAL position every published change is complete up to (only in position records). */
  lsn?: string;
  /** Logical capture: how many change messages of the transaction committing at `finalLsn` were published. */
  lsnInTransaction?: { finalLsn: string; messages: number };
}

interface StateRow {
  phase: Phase;
  prev_snapshot: string | null;
  cur_snapshot: string | null;
  last_change_id: number;
  snapshot_last_key: string | null;
  snapshot_rows_done: number;
  snapshot_rows_total: number | null;
  changes_published: number;
  dead_lettered: number;
  updated_at: Date;
}

/** The producer's checkpoint and snapshot progress, stored in the source next to the change table. */
export async function loadState(client: pg.Client, tableId: string): Promise<CaptureState> {
  const { rows } = await client.query<StateRow>(
    `SELECT phase, prev_snapshot::text, cur_snapshot::text, last_change_id, snapshot_last_key::text, snapshot_rows_done,
            snapshot_rows_total, changes_published, dead_lettered, updated_at
     FROM pgtunnel.state WHERE table_id = $1`,
    [tableId],
  );
  const r = rows[0];
  if (!r) {
    throw new TunnelError('PGT_NOT_INSTALLED', `capture is not installed for ${tableId} in the source`, {
      errorClass: 'fatal',
      hint: 'run `pgtunnel install` (pgtunnel run does it for you)',
    });
  }
  return {
    phase: r.phase,
    position: { prev: r.prev_snapshot, cur: r.cur_snapshot, lastChangeId: Number(r.last_change_id) },
    snapshotLastKey: r.snapshot_last_key,
    snapshotRowsDone: Number(r.snapshot_rows_done),
    snapshotRowsTotal: r.snapshot_rows_total === null ? null : Number(r.snapshot_rows_total),
    changesPublished: Number(r.changes_published),
    deadLettered: Number(r.dead_lettered),
    updatedAt: r.updated_at.toISOString(),
  };
}

/** The checkpoint's UPDATE, its values `$1…$10` (`stateParams`); RETURNING updated_at. */
export const saveStateSql = `UPDATE pgtunnel.state SET phase = $2, prev_snapshot = $3::pg_snapshot, cur_snapshot = $4::pg_snapshot, last_change_id = $5,
            snapshot_last_key = $6::jsonb, snapshot_rows_done = $7, snapshot_rows_total = $8, changes_published = $9, dead_lettered = $10, updated_at = now()
     WHERE table_id = $1 RETURNING updated_at`;

export function stateParams(tableId: string, state: CaptureState): unknown[] {
  return [
    tableId,
    state.phase,
    state.position.prev,
    state.position.cur,
    state.position.lastChangeId,
    state.snapshotLastKey,
    state.snapshotRowsDone,
    state.snapshotRowsTotal,
    state.changesPublished,
    state.deadLettered,
  ];
}

/** The state row vanished under the producer (its capture was removed). */
export const stateVanished = (tableId: string) => new TunnelError('PGT_NOT_INSTALLED', `capture state for ${tableId} vanished`, { hint: 'run `pgtunnel install`' });

/** Stores the state; returns its new `updatedAt` (part of what identifies a checkpoint, see pipeline/publisher.ts). */
export async function saveState(client: pg.Client, tableId: string, state: CaptureState): Promise<string> {
  const result = await client.query<{ updated_at: Date }>(saveStateSql, stateParams(tableId, state));
  if (result.rowCount !== 1) throw stateVanished(tableId);
  return result.rows[0]!.updated_at.toISOString();
}

/** Starts the snapshot over (keeps the stream position, so nothing captured meanwhile is lost). */
export async function restartSnapshot(client: pg.Client, tableId: string): Promise<void> {
  await client.query(
    `UPDATE pgtunnel.state SET phase = 'snapshot', snapshot_last_key = NULL, snapshot_rows_done = 0, snapshot_rows_total = NULL, updated_at = now()
     WHERE table_id = $1`,
    [tableId],
  );
}

/**
 * At-least-once only: the producer's checkpoint commits need not wait for the WAL flush. A source crash
 * loses at most the last few checkpoints (never one without its predecessors), and the producer publishes
 * those batches again from the checkpoint that survived, which at-least-once delivery already allows; the
 * producer then no longer waits for an fsync per page (the largest producer stage at 1k/s). Exactly-once
 * adopts only the last batch whose checkpoint was lost, so it keeps synchronous commits.
 */
export async function useAsyncCheckpoints(client: pg.Client, exactlyOnce: boolean): Promise<void> {
  if (!exactlyOnce) await client.query("SELECT set_config('synchronous_commit', 'off', false)");
}

/** Where a switch of the table from logical back to trigger capture stands (undefined: none under way). */
export async function switchToTriggerState(client: pg.Client, tableId: string): Promise<'to trigger' | 'to trigger at boundary' | undefined> {
  // read through jsonb: before migration 12 the column does not exist yet
  const { rows } = await client.query<{ s: string | null }>("SELECT to_jsonb(s.*) ->> 'capture_switch' AS s FROM pgtunnel.state s WHERE table_id = $1", [tableId]);
  return (rows[0]?.s ?? undefined) as 'to trigger' | 'to trigger at boundary' | undefined;
}
