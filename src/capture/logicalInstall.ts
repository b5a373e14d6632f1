import type pg from 'pg';
import type { TableConfig } from '../config/load.js';
import { TunnelError, sqlState } from '../errors.js';
import { inTransaction, qualified, quoteIdent } from '../pg.js';
import { lockNames, publicationName, slotName, sourcePublicationName, sourceSlotName, tableId } from '../names.js';
import { migrate, readMigrations } from './migrations.js';
import { switchToTriggerState } from './stateStore.js';
import { leaveShared } from './sharedSlot.js';
import { sleep } from '../retry.js';

export type CaptureMode = 'trigger' | 'logical';

/** The capture a table gets, and why (install and run say it). */
export interface CaptureChoice {
  mode: CaptureMode;
  reason: string;
  /** Logical capture's replication slot. */
  slot?: string;
  /** Read from the source's one shared slot (issue 22), or switching onto it from triggers; otherwise from a slot of the table's own (older installs, an older switch). */
  shared?: boolean;
  /** A switch under way (captureSwitch.ts): to logical, trigger capture's last batch ends at the slot's snapshot; to trigger, the stream ends at the boundary transaction. */
  switchTo?: 'logical' | 'trigger';
  /** A switch to logical was under way and the config asks for triggers again: its slot and publication go. */
  abandonSwitch?: boolean;
  /** Trigger capture of a table still in the shared publication (a switch abandoned, or one back to triggers that crashed before leaving it): it leaves. */
  abandonShared?: boolean;
}

/**
 * Logical capture where it was asked for and the source allows it; trigger capture otherwise, with the
 * reason. A table captured one way switches to the other without a re-snapshot (captureSwitch.ts).
 */
export async function chooseCapture(source: pg.Client, table: TableConfig, asked: CaptureMode, instance = 'pgtunnel'): Promise<CaptureChoice> {
  const { rows } = await source.query<{ wal_level: string; registry: boolean; slot: boolean; shared: boolean; identity: string | null; has_pk: boolean }>(
    `SELECT current_setting('wal_level') AS wal_level, to_regclass('pgtunnel.captures') IS NOT NULL AS registry,
            EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) AS slot,
            EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $3 AND schemaname = $4 AND tablename = $5) AS shared,
            (SELECT relreplident::text FROM pg_class WHERE oid = to_regclass($2)) AS identity,
            EXISTS (SELECT 1 FROM pg_index WHERE indrelid = to_regclass($2) AND indisprimary) AS has_pk`,
    [slotName(table, source.database ?? ''), qualified(table.schema, table.name), sourcePublicationName(instance), table.schema, table.name],
  );
  const r = { ...rows[0]!, triggers: false };
  if (r.registry) r.triggers = (await source.query('SELECT 1 FROM pgtunnel.captures WHERE table_id = $1', [tableId(table)])).rows.length > 0;
  const toTrigger = (r.slot || r.shared) && (await switchToTriggerState(source, tableId(table))) !== undefined;
  if (asked === 'trigger') {
    // logical → trigger: logical capture runs until the boundary transaction, then hands over (captureSwitch.ts)
    if (r.slot && (!r.triggers || toTrigger)) return { mode: 'logical', reason: 'switching to capture: trigger: logical capture publishes every transaction before the one that splits the table\'s writes, then the triggers take over', slot: slotName(table, source.database ?? ''), switchTo: 'trigger' };
    if (r.slot) return { mode: 'trigger', reason: 'capture: trigger (a switch to logical capture was under way: it is abandoned)', abandonSwitch: true };
    // shared slot → trigger: the same boundary transaction; the table then leaves the shared publication (captureSwitch.ts)
    if (r.shared && (!r.triggers || toTrigger)) return { mode: 'logical', reason: 'switching to capture: trigger: the source\'s shared stream publishes the table\'s transactions before the one that splits its writes, then the triggers take over', slot: sourceSlotName(source.database ?? '', instance), shared: true, switchTo: 'trigger' };
    // triggers beside the shared publication with no switch to trigger marked: a switch to the shared slot not handed over yet, or a switch back that had not left the publication
    if (r.shared) return { mode: 'trigger', reason: 'capture: trigger (the table leaves the shared publication: trigger capture has every change)', abandonShared: true };
    return { mode: 'trigger', reason: 'capture: trigger (the default)' };
  }
  if (toTrigger) {
    throw new TunnelError('PGT_CAPTURE_MODE', `${tableId(table)} is switching to capture: trigger, but the config asks for capture: logical`, {
      errorClass: 'config',
      hint: 'set capture: trigger and let the switch finish (the tunnel logs "switched to capture: trigger"), then switch back',
    });
  }
  if (r.wal_level !== 'logical') return { mode: 'trigger', reason: `the source has wal_level = ${r.wal_level}, not logical (set wal_level = logical in postgresql.conf and restart the source to capture by logical decoding)` };
  // a publication on a table without a replica identity makes its UPDATEs and DELETEs fail: capture must never do that
  if (r.identity === 'n' || (r.identity === 'd' && !r.has_pk)) {
    return { mode: 'trigger', reason: `${tableId(table)} has no primary key for logical decoding to identify rows (fix: add one, or ALTER TABLE ${qualified(table.schema, table.name)} REPLICA IDENTITY FULL)` };
  }
  // a switch begun by an older version (a slot of the table's own beside the triggers) finishes that way
  if (r.triggers && r.slot) return { mode: 'trigger', reason: 'switching to capture: logical: trigger capture publishes what committed before the slot\'s snapshot, then hands over to the slot', slot: slotName(table, source.database ?? ''), switchTo: 'logical' };
  if (r.triggers) return { mode: 'trigger', reason: 'switching to capture: logical: trigger capture publishes what committed before a boundary transaction, then the source\'s shared stream takes over from it', slot: sourceSlotName(source.database ?? '', instance), shared: true, switchTo: 'logical' };
  // a table with a slot of its own (installed before the shared slot, or by a switch) moves onto the shared one (slotMigration.ts)
  if (r.slot) return { mode: 'logical', reason: 'capture: logical, moving from the table\'s own slot onto the source\'s one slot (no re-snapshot)', slot: sourceSlotName(source.database ?? '', instance), shared: true };
  return { mode: 'logical', reason: 'capture: logical, from the source\'s one slot, and the source has wal_level = logical', slot: sourceSlotName(source.database ?? '', instance), shared: true };
}

/** Logical decoding needs the REPLICATION attribute (or superuser) to create and read a slot. */
export async function requireReplication(source: pg.Client): Promise<void> {
  const { rows } = await source.query<{ ok: boolean; role: string }>('SELECT rolreplication OR rolsuper AS ok, current_user AS role FROM pg_roles WHERE rolname = current_user');
  if (rows[0]?.ok) return;
  const role = rows[0]?.role ?? 'this role';
  throw new TunnelError('PGT_PRIVILEGE', `capture by logical decoding needs a role with REPLICATION, and ${role} has none`, {
    errorClass: 'config',
    hint: `as a superuser: ALTER ROLE ${quoteIdent(role)} REPLICATION; — or set capture: trigger`,
  });
}

/**
 * Installs pgtunnel's state, the table's publication and its slot (pgoutput). The slot keeps every
 * change from now on; the snapshot re-creates it to read under its exported snapshot (logicalSnapshot.ts).
 */
export async function installLogical(source: pg.Client, table: TableConfig): Promise<number> {
  await requireReplication(source);
  let created = await migrate(source, 'source', readMigrations('source'));
  await inTransaction(source, async () => {
    await source.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockNames.migrate]);
    await source.query('INSERT INTO pgtunnel.state (table_id) VALUES ($1) ON CONFLICT DO NOTHING', [tableId(table)]);
    const { rows } = await source.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS present', [publicationName(table)]);
    if (!rows[0]!.present) {
      await source.query(`CREATE PUBLICATION ${quoteIdent(publicationName(table))} FOR TABLE ${qualified(table.schema, table.name)}`);
      created++;
    }
  });
  // a slot cannot be created in a transaction that wrote: its own statement
  const { rows } = await source.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) AS present', [slotName(table, source.database ?? '')]);
  if (!rows[0]!.present) {
    try {
      await source.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slotName(table, source.database ?? '')]);
      created++;
    } catch (err) {
      // another installer made it meanwhile (a producer and a consumer process starting at once): it is there
      if (sqlState(err) !== '42710') throw err;
    }
  }
  return created;
}

/**
 * Drops the table's slot and publication (or takes it out of the source's shared ones: the last table out
 * drops them) and its state; a slot a running tunnel reads is refused, naming the fix.
 */
export async function uninstallLogical(source: pg.Client, table: TableConfig, instance: string): Promise<boolean> {
  const own = await dropSlotAndPublication(source, table);
  if (!(await leaveShared(source, table, instance)) && !own) return false;
  const { rows: state } = await source.query<{ present: boolean }>("SELECT to_regclass('pgtunnel.state') IS NOT NULL AS present");
  if (state[0]!.present) {
    await source.query('DELETE FROM pgtunnel.state WHERE table_id = $1', [tableId(table)]);
    await source.query('DELETE FROM pgtunnel.truncates WHERE table_id = $1', [tableId(table)]);
    const { rows: versions } = await source.query<{ present: boolean }>("SELECT to_regclass('pgtunnel.logical_schemas') IS NOT NULL AS present");
    if (versions[0]!.present) await source.query('DELETE FROM pgtunnel.logical_schemas WHERE table_id = $1', [tableId(table)]);
  }
  return true;
}

/** Drops the table's slot and publication (false when it had neither); a slot in use is refused, naming the fix. */
export async function dropSlotAndPublication(source: pg.Client, table: TableConfig): Promise<boolean> {
  const { rows } = await source.query<{ active_pid: number | null }>('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [slotName(table, source.database ?? '')]);
  const slot = rows[0];
  if (slot?.active_pid) {
    throw new TunnelError('PGT_SLOT_ACTIVE', `the replication slot ${slotName(table, source.database ?? '')} of ${tableId(table)} is in use by the session of pid ${slot.active_pid}`, {
      errorClass: 'config',
      hint: 'stop the running tunnel first (its producer reads the slot), then uninstall again',
    });
  }
  if (slot) await source.query('SELECT pg_drop_replication_slot($1)', [slotName(table, source.database ?? '')]);
  const publication = await source.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS present', [publicationName(table)]);
  if (publication.rows[0]!.present) await source.query(`DROP PUBLICATION ${quoteIdent(publicationName(table))}`);
  return slot !== undefined || publication.rows[0]!.present;
}

/** Drops the table's own slot and publication once the walsender of a stream just closed let go of it (30 s at most). */
export async function dropSlotWhenReleased(source: pg.Client, table: TableConfig): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await dropSlotAndPublication(source, table);
      return;
    } catch (err) {
      if ((err as TunnelError).code !== 'PGT_SLOT_ACTIVE' || Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}
