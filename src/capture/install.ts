import type pg from 'pg';
import type { TableConfig } from '../config/load.js';
import { inTransaction, keyMatch, qualified, quoteIdent, quoteLiteral } from '../pg.js';
import type { TableShape } from './catalog.js';
import { migrate, readMigrations } from './migrations.js';

export function tableId(table: { schema: string; name: string }): string {
  return `${table.schema}.${table.name}`;
}

function captureFunctionName(table: TableConfig): string {
  return `${table.changeTable}_capture`;
}

function truncateFunctionName(table: TableConfig): string {
  return `${table.changeTable}_capture_truncate`;
}

/** Installs pgtunnel's state and the table's capture (change table, trigger function, triggers). */
export async function installCapture(source: pg.Client, table: TableConfig, shape: TableShape): Promise<number> {
  let applied = await migrate(source, 'source', readMigrations('source'));
  const changeTable = qualified(table.schema, table.changeTable);
  applied += await migrate(source, `table:${tableId(table)}`, readMigrations('table'), {
    table: qualified(table.schema, table.name),
    changeTable,
    changeTableLiteral: quoteLiteral(changeTable),
    tableIdLiteral: quoteLiteral(tableId(table)),
    captureFunction: qualified(table.schema, captureFunctionName(table)),
    truncateFunction: qualified(table.schema, truncateFunctionName(table)),
    keyJoin: shape.key.map((k) => `n.${quoteIdent(k)} IS NOT DISTINCT FROM o.${quoteIdent(k)}`).join(' AND '),
    keyEquals: keyMatch(shape.key, 'n', 'o'),
  });
  return applied;
}

/** Removes a table's capture and its state; the captured table itself is untouched. */
export async function uninstallCapture(source: pg.Client, table: TableConfig): Promise<void> {
  const id = tableId(table);
  const target = qualified(table.schema, table.name);
  await inTransaction(source, async () => {
    await source.query("SELECT pg_advisory_xact_lock(hashtext('pgtunnel.migrate'))");
    const { rows } = await source.query<{ exists: boolean }>('SELECT to_regclass($1) IS NOT NULL AS exists', [target]);
    if (rows[0]?.exists) {
      for (const op of ['insert', 'update', 'delete', 'truncate']) await source.query(`DROP TRIGGER IF EXISTS pgtunnel_capture_${op} ON ${target}`);
    }
    for (const fn of [captureFunctionName(table), truncateFunctionName(table)]) await source.query(`DROP FUNCTION IF EXISTS ${qualified(table.schema, fn)}()`);
    await source.query(`DROP TABLE IF EXISTS ${qualified(table.schema, table.changeTable)}`);
    const { rows: schema } = await source.query<{ exists: boolean }>("SELECT to_regclass('pgtunnel.state') IS NOT NULL AS exists");
    if (schema[0]?.exists) {
      await source.query('DELETE FROM pgtunnel.state WHERE table_id = $1', [id]);
      await source.query('DELETE FROM pgtunnel.migrations WHERE scope = $1', [`table:${id}`]);
    }
  });
}

/** Installs the target's offsets table. */
export async function installTarget(target: pg.Client): Promise<number> {
  return migrate(target, 'target', readMigrations('target'));
}
