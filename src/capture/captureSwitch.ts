import type pg from 'pg';
import type { TableConfig } from '../config/load.js';
import { TunnelError } from '../errors.js';
import { inTransaction, qualified, quoteIdent } from '../pg.js';
import { lockNames, producerApplicationName, publicationName, slotName, tableId } from '../names.js';
import { requireReplication } from './logicalInstall.js';
import { createSlotWithSnapshot } from './slotSnapshot.js';

/**
 * A slot's exported snapshot can read back with xmax below xmin (`940:939:` seen under captureSwitch.test's
 * writers; the snapshot builder takes xmin and xmax from different sources), which `pg_snapshot` input refuses. Visibility tests xid < xmin before xid >= xmax, so raising xmax to xmin changes no xid's answer.
 */
export function wellFormed(snapshot: string): string {
  const [xmin, xmax, xip] = snapshot.split(':') as [string, string, string];
  return BigInt(xmax) < BigInt(xmin) ? `${xmin}:${xmin}:${xip}` : snapshot;
}

/**
 * Trigger → logical on a running source, without a re-snapshot and without a change lost or sent twice.
 * The slot is created with an exported snapshot S: a transaction is visible in S exactly when it committed
 * before the slot's consistent point, and the slot streams every later one. The trigger producer's next
 * batch is pinned to end at S (`cur_snapshot = S`), so trigger capture publishes exactly the transactions
 * visible in S; when that batch is complete the producer removes the triggers and hands over to logical
 * capture, which starts at the consistent point (captureProducer.ts). While triggers and slot both exist
 * and the batch is pinned, the switch is under way; a crash before the pin is redone with a new slot
 * (the change table still holds everything).
 */
export async function pinSwitchToLogical(source: pg.Client, sourceUrl: string, table: TableConfig): Promise<'pinned' | 'under way'> {
  await requireReplication(source);
  const id = tableId(table);
  const slot = slotName(table, source.database ?? '');
  const stateSql = 'SELECT phase, cur_snapshot::text AS cur, EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $2) AS slot FROM pgtunnel.state WHERE table_id = $1';
  const underWay = (r: { cur: string | null; slot: boolean } | undefined) => r?.slot === true && r.cur !== null;
  // a standby starting while the leader drains the pinned batch: nothing to do
  if (underWay((await source.query<{ cur: string | null; slot: boolean }>(stateSql, [id, slot])).rows[0])) return 'under way';
  // a producer reading batches meanwhile could pass S: the switch holds the table's producer lock
  const { rows: locked } = await source.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS ok', [lockNames.producer, id]);
  if (!locked[0]!.ok) {
    throw new TunnelError('PGT_SWITCH_BUSY', `switching ${id} to capture: logical needs its producers stopped, and one is running`, {
      errorClass: 'config',
      hint: 'stop every `pgtunnel run` of this table (each --role producer too), then start one with capture: logical',
    });
  }
  try {
    const state = (await source.query<{ phase: string; cur: string | null; slot: boolean }>(stateSql, [id, slot])).rows[0];
    if (underWay(state)) return 'under way';
    if (state?.phase !== 'streaming' || state.cur !== null) {
      throw new TunnelError('PGT_SWITCH_NOT_READY', `${id} cannot switch to capture: logical now: its trigger capture is ${state?.phase === 'snapshot' ? 'still snapshotting' : 'inside a batch'}`, {
        errorClass: 'config',
        hint: 'let it finish with capture: trigger (`pgtunnel run --role producer --once`), then start with capture: logical again',
      });
    }
    const { rows: pub } = await source.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS present', [publicationName(table)]);
    if (!pub[0]!.present) await source.query(`CREATE PUBLICATION ${quoteIdent(publicationName(table))} FOR TABLE ${qualified(table.schema, table.name)}`);
    // a slot left by a switch that crashed before its pin: its snapshot is gone, a new one replaces it
    if (state.slot) await source.query('SELECT pg_drop_replication_slot($1)', [slot]);
    await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    let boundary: string;
    try {
      await createSlotWithSnapshot(sourceUrl, producerApplicationName(id), source, slot);
      boundary = wellFormed((await source.query<{ s: string }>('SELECT pg_current_snapshot()::text AS s')).rows[0]!.s);
    } finally {
      await source.query('COMMIT');
    }
    await source.query('UPDATE pgtunnel.state SET cur_snapshot = $2::pg_snapshot, last_change_id = 0 WHERE table_id = $1 AND cur_snapshot IS NULL', [id, boundary]);
    return 'pinned';
  } finally {
    await source.query('SELECT pg_advisory_unlock(hashtext($1), hashtext($2))', [lockNames.producer, id]);
  }
}

/** A switch to logical capture under way for the table: its slot exists beside its triggers, pinned at `cur`. */
export async function switchBoundary(client: pg.Client, table: TableConfig): Promise<string | undefined> {
  const { rows } = await client.query<{ cur: string | null }>(
    'SELECT cur_snapshot::text AS cur FROM pgtunnel.state WHERE table_id = $1 AND EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $2)',
    [tableId(table), slotName(table, client.database ?? '')],
  );
  return rows[0]?.cur ?? undefined;
}

/** The prefix of the logical message that marks where a switch from logical to trigger capture falls. */
export const switchMessagePrefix = 'pgtunnel.capture-switch';

/** Logical → trigger, decided before the triggers are installed (so a crash in between is resumed, not abandoned). */
export async function markSwitchToTrigger(source: pg.Client, table: TableConfig): Promise<void> {
  const { rows } = await source.query<{ phase: string }>("UPDATE pgtunnel.state SET capture_switch = coalesce(capture_switch, 'to trigger') WHERE table_id = $1 RETURNING phase", [tableId(table)]);
  if (rows[0]?.phase === 'streaming') return;
  await source.query('UPDATE pgtunnel.state SET capture_switch = NULL WHERE table_id = $1', [tableId(table)]);
  throw new TunnelError('PGT_SWITCH_NOT_READY', `${tableId(table)} cannot switch to capture: trigger now: its logical capture is still snapshotting`, {
    errorClass: 'config',
    hint: 'let the snapshot finish with capture: logical, then start with capture: trigger again',
  });
}

/**
 * Logical → trigger, once the triggers exist: one transaction takes the table's SHARE ROW EXCLUSIVE lock, so
 * every write of the table commits before it or after it. It stores its snapshot as trigger capture's first
 * checkpoint (the writes after it are not visible there: the change table's batches start after it) and emits
 * a transactional logical message: the stream publishes every commit before that message's and hands over.
 */
export async function setTriggerBoundary(source: pg.Client, table: TableConfig): Promise<void> {
  await inTransaction(source, async () => {
    await source.query(`LOCK TABLE ${qualified(table.schema, table.name)} IN SHARE ROW EXCLUSIVE MODE`);
    await source.query(
      "UPDATE pgtunnel.state SET prev_snapshot = pg_current_snapshot(), cur_snapshot = NULL, last_change_id = 0, capture_switch = 'to trigger at boundary' WHERE table_id = $1",
      [tableId(table)],
    );
    await source.query('SELECT pg_logical_emit_message(true, $1, $2)', [switchMessagePrefix, tableId(table)]);
  });
}

/** The prefix of the logical message at which a table switching from trigger capture joins the shared stream. */
export const sharedJoinPrefix = 'pgtunnel.capture-join';

/** A switch from trigger capture onto the shared slot: the snapshot S trigger capture's last batch ends at, and the mark M the stream takes over at. */
export interface SharedSwitch {
  boundary: string;
  mark: bigint;
}

/** The switch onto the shared slot under way for the table (undefined: none). Once the pinned batch is done, S is the checkpoint. */
export async function sharedSwitchOf(client: pg.Client, table: TableConfig): Promise<SharedSwitch | undefined> {
  const { rows } = await client.query<{ boundary: string; mark: string }>(
    "SELECT coalesce(cur_snapshot, prev_snapshot)::text AS boundary, (shared_switch - '0/0')::text AS mark FROM pgtunnel.state WHERE table_id = $1 AND shared_switch IS NOT NULL",
    [tableId(table)],
  );
  return rows[0] && { boundary: rows[0].boundary, mark: BigInt(rows[0].mark) };
}

/**
 * Trigger → the source's shared slot, between two batches of a producer that holds the table's lock, once its
 * process leads the shared slot and holds it: one transaction takes the table's SHARE ROW EXCLUSIVE lock (every
 * write of the table commits before it or after it), pins trigger capture's next batch at its snapshot S (the
 * earlier writes), and emits a transactional logical message at M, stored as the table's `join_lsn` (the shared
 * stream gives it every commit from M on: the later writes, whose commit records all follow the lock). Durable
 * at once: the producer's own checkpoints commit asynchronously, and S and M must not be lost apart.
 */
export async function setSharedBoundary(client: pg.Client, table: TableConfig): Promise<SharedSwitch> {
  return inTransaction(client, async () => {
    await client.query("SELECT set_config('synchronous_commit', 'on', true)");
    await client.query(`LOCK TABLE ${qualified(table.schema, table.name)} IN SHARE ROW EXCLUSIVE MODE`);
    const { rows } = await client.query<{ boundary: string; mark: string }>(
      `UPDATE pgtunnel.state SET cur_snapshot = pg_current_snapshot(), last_change_id = 0, shared_switch = m.lsn, join_lsn = m.lsn
       FROM (SELECT pg_logical_emit_message(true, $2, $1) AS lsn) m
       WHERE table_id = $1 AND cur_snapshot IS NULL RETURNING cur_snapshot::text AS boundary, (m.lsn - '0/0')::text AS mark`,
      [tableId(table), sharedJoinPrefix],
    );
    if (!rows[0]) throw new TunnelError('PGT_UNEXPECTED', `${tableId(table)} was inside a trigger batch when its switch onto the shared slot was to pin the next one`, { unexpected: true });
    return { boundary: rows[0].boundary, mark: BigInt(rows[0].mark) };
  });
}
