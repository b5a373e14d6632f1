import type pg from 'pg';
import type { TableConfig } from '../config/load.js';
import { TunnelError, sqlState } from '../errors.js';
import { inTransaction, qualified, quoteIdent } from '../pg.js';
import { lockNames, slotName, sourcePublicationName, sourceSlotName, tableId } from '../names.js';
import { migrate, readMigrations } from './migrations.js';
import { sleep } from '../retry.js';

/** The slot a logically captured table is read from: its own (installed before issue 22, or by a switch) or the source's shared one. */
export interface TableSlot {
  slot: string;
  shared: boolean;
}

/** The table's slot, or undefined when it has none (trigger capture, or the slot was dropped). */
export async function logicalSlotOf(client: pg.Client, table: TableConfig, instance: string): Promise<TableSlot | undefined> {
  const own = slotName(table, client.database ?? '');
  const shared = sourceSlotName(client.database ?? '', instance);
  const { rows } = await client.query<{ own: boolean; shared: boolean; member: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) AS own,
            EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $2) AS shared,
            EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $3 AND schemaname = $4 AND tablename = $5) AS member`,
    [own, shared, sourcePublicationName(instance), table.schema, table.name],
  );
  const r = rows[0]!;
  if (r.own) return { slot: own, shared: false };
  return r.shared && r.member ? { slot: shared, shared: true } : undefined;
}

/**
 * Puts the table in the source's publication (created with it, or `ALTER PUBLICATION … ADD TABLE`) and
 * creates the shared slot when there is none. The ALTER commits before the table's snapshot takes its
 * consistent point, so every transaction the table joins at is decoded with the table in the publication.
 */
export async function installShared(source: pg.Client, table: TableConfig, instance: string): Promise<number> {
  let created = await migrate(source, 'source', readMigrations('source'));
  const publication = sourcePublicationName(instance);
  await inTransaction(source, async () => {
    await source.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockNames.migrate]);
    await source.query('INSERT INTO pgtunnel.state (table_id) VALUES ($1) ON CONFLICT DO NOTHING', [tableId(table)]);
    const { rows } = await source.query<{ present: boolean; member: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1) AS present,
              EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3) AS member`,
      [publication, table.schema, table.name],
    );
    if (!rows[0]!.present) await source.query(`CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${qualified(table.schema, table.name)}`);
    else if (!rows[0]!.member) await source.query(`ALTER PUBLICATION ${quoteIdent(publication)} ADD TABLE ${qualified(table.schema, table.name)}`);
    if (!rows[0]!.member) created++;
  });
  const slot = sourceSlotName(source.database ?? '', instance);
  const { rows } = await source.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) AS present', [slot]);
  if (!rows[0]!.present) {
    try {
      await source.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
      created++;
    } catch (err) {
      // another installer made it meanwhile: it is there
      if (sqlState(err) !== '42710') throw err;
    }
  }
  return created;
}

/**
 * Takes the table out of the source's publication; the last table out drops the shared slot and the
 * publication (refused, naming the fix, while a tunnel reads the slot). False when the table was not in it.
 */
export async function leaveShared(source: pg.Client, table: TableConfig, instance: string): Promise<boolean> {
  const publication = sourcePublicationName(instance);
  const { rows } = await source.query<{ member: boolean; others: number }>(
    `SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3) AS member,
            (SELECT count(*)::int FROM pg_publication_tables WHERE pubname = $1 AND (schemaname, tablename) <> ($2, $3)) AS others`,
    [publication, table.schema, table.name],
  );
  if (!rows[0]!.member) return false;
  const slot = sourceSlotName(source.database ?? '', instance);
  if (rows[0]!.others === 0) {
    const { rows: s } = await source.query<{ active_pid: number | null }>('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    if (s[0]?.active_pid) {
      throw new TunnelError('PGT_SLOT_ACTIVE', `the replication slot ${slot} of this source is in use by the session of pid ${s[0].active_pid}`, {
        errorClass: 'config',
        hint: 'stop the running tunnel first (its producer reads the slot), then uninstall again',
      });
    }
    if (s[0]) await source.query('SELECT pg_drop_replication_slot($1)', [slot]);
    await source.query(`DROP PUBLICATION ${quoteIdent(publication)}`);
    return true;
  }
  // the running stream stops decoding the table from the ALTER's commit on; the other tables go on
  await source.query(`ALTER PUBLICATION ${quoteIdent(publication)} DROP TABLE ${qualified(table.schema, table.name)}`);
  return true;
}

/**
 * A table switched back to trigger capture leaves the shared publication. The last one out also drops the slot,
 * which its stream (`last`: this process's, just stopped) lets go of within a moment: waited for, 30 s at most.
 */
export async function leaveSharedWhenReleased(source: pg.Client, table: TableConfig, instance: string, last: boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await leaveShared(source, table, instance);
      return;
    } catch (err) {
      if (!last || (err as TunnelError).code !== 'PGT_SLOT_ACTIVE' || Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}
