import type pg from 'pg';
import type { TableConfig } from '../config/load.js';
import { sqlState, TunnelError } from '../errors.js';
import { inTransaction, keyMatch, qualified, quoteIdent, quoteLiteral } from '../pg.js';
import type { TableShape } from './catalog.js';
import { controlColumns } from './changeReader.js';
import { migrate, pendingMigrations, readMigrations } from './migrations.js';
import { captureScope, changeTableId, functionPrefix, lockNames, tableId } from '../names.js';

/** A change table name must never point at an object pgtunnel did not create for this table. */
async function checkChangeTableOwner(source: pg.Client, table: TableConfig): Promise<void> {
  const changeTable = qualified(table.schema, table.changeTable);
  const { rows } = await source.query<{ exists: boolean; owner: string | null; mine: string | null; recorded: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AS exists,
            (SELECT c.table_id FROM pgtunnel.captures c WHERE c.change_table = to_regclass($1)) AS owner,
            (SELECT c.change_table::text FROM pgtunnel.captures c WHERE c.table_id = $3) AS mine,
            EXISTS (SELECT 1 FROM pgtunnel.migrations WHERE scope = $2) AS recorded`,
    [changeTable, captureScope(tableId(table)), tableId(table)],
  );
  const r = rows[0]!;
  if (r.mine !== null && r.owner !== tableId(table)) {
    throw new TunnelError('PGT_CHANGE_TABLE_MOVED', `${tableId(table)} is captured into the change table ${r.mine}, not ${changeTableId(table)}`, {
      errorClass: 'config',
      hint: `set changeTable back to ${r.mine}, or run \`pgtunnel uninstall\` with the old setting first`,
    });
  }
  // a change table recorded by migrations older than the capture registry is pgtunnel's own
  if (!r.exists || r.owner === tableId(table) || (r.owner === null && r.mine === null && r.recorded)) return;
  throw new TunnelError('PGT_CHANGE_TABLE_TAKEN', `the change table ${changeTableId(table)} of ${tableId(table)} already exists and pgtunnel did not create it for this table${r.owner ? ` (it captures ${r.owner})` : ''}`, {
    errorClass: 'config',
    hint: `choose another name: tables: [{ name: ${table.name}, changeTable: ${table.name}_changes }]`,
  });
}

function captureFunctionName(table: TableConfig): string {
  return `${table.changeTable}_capture`;
}

function truncateFunctionName(table: TableConfig): string {
  return `${table.changeTable}_capture_truncate`;
}

/** How many migrations installing this table's capture would apply (0: the installer's work is done). */
export async function pendingCapture(source: pg.Client, table: TableConfig): Promise<number> {
  const own = await pendingMigrations(source, 'source', readMigrations('source'));
  const forTable = await pendingMigrations(source, captureScope(tableId(table)), readMigrations('table'));
  return own.length + forTable.length;
}

/**
 * Source columns capture does not follow yet (added, dropped, retyped, or the `exclude` list changed),
 * read without writing: only then does `run` regenerate capture, which needs the installer's rights.
 */
async function staleColumns(source: pg.Client, table: TableConfig): Promise<string[]> {
  const { rows } = await source.query<{ exclude_same: boolean | null; differ: string[]; by_name: boolean | null }>(
    `WITH cap AS (SELECT source_table, change_table, excluded_columns, by_name FROM pgtunnel.captures WHERE table_id = $1),
     src AS (SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS typ FROM cap JOIN pg_attribute a ON a.attrelid = cap.source_table
             WHERE a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname = ANY ($2::text[])),
     chg AS (SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS typ FROM cap JOIN pg_attribute a ON a.attrelid = cap.change_table
             WHERE a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname = ANY ($3::text[]))
     SELECT (SELECT excluded_columns @> $2::text[] AND excluded_columns <@ $2::text[] FROM cap) AS exclude_same, (SELECT by_name FROM cap) AS by_name,
            ARRAY(SELECT name FROM src s FULL JOIN chg c USING (name) WHERE s.typ IS DISTINCT FROM c.typ ORDER BY name) AS differ`,
    [tableId(table), table.exclude, controlColumns],
  );
  const r = rows[0]!;
  // a DDL the event trigger could not follow left capture matching by name until install regenerates it
  const stale = r.by_name === true ? [...r.differ, 'by-name'] : r.differ;
  return r.exclude_same === true ? stale : [...stale, 'exclude'];
}

/**
 * Installs pgtunnel's state and the table's capture (change table, capture functions, triggers);
 * `regenerate` (the install command) rebuilds the capture functions, e.g. by name once the DDL event
 * trigger is gone. When all is installed and current, `run` only reads, so a runtime role starts a tunnel the installer set up; a
 * capture a runtime role may not bring up to date is reported in `stale` instead of failing the start.
 */
export async function installCapture(source: pg.Client, table: TableConfig, shape: TableShape, regenerate = false): Promise<{ applied: number; stale: string[] }> {
  let applied = await migrate(source, 'source', readMigrations('source'));
  await checkChangeTableOwner(source, table);
  const changeTable = qualified(table.schema, table.changeTable);
  const prefix = functionPrefix(table);
  applied += await migrate(source, captureScope(tableId(table)), readMigrations('table'), {
    table: qualified(table.schema, table.name),
    tableLiteral: quoteLiteral(qualified(table.schema, table.name)),
    functionPrefixLiteral: quoteLiteral(prefix),
    keyColumnsLiteral: `ARRAY[${shape.key.map(quoteLiteral).join(', ')}]::text[]`,
    captureInsert: qualified('pgtunnel', `${prefix}_ins`),
    captureUpdate: qualified('pgtunnel', `${prefix}_upd`),
    captureDelete: qualified('pgtunnel', `${prefix}_del`),
    captureTruncate: qualified('pgtunnel', `${prefix}_trunc`),
    changeTable,
    changeTableLiteral: quoteLiteral(changeTable),
    tableIdLiteral: quoteLiteral(tableId(table)),
    captureFunction: qualified(table.schema, captureFunctionName(table)),
    truncateFunction: qualified(table.schema, truncateFunctionName(table)),
    keyJoin: shape.key.map((k) => `n.${quoteIdent(k)} IS NOT DISTINCT FROM o.${quoteIdent(k)}`).join(' AND '),
    keyEquals: keyMatch(shape.key, 'n', 'o'),
  });
  const stale = await staleColumns(source, table);
  if (applied === 0 && stale.length === 0 && !regenerate) return { applied, stale };
  // Adopts source columns capture does not know yet (ADD COLUMN while no DDL event trigger could follow)
  // and drops excluded columns from the change table: they are never captured.
  try {
    await inTransaction(source, async () => {
      await source.query('UPDATE pgtunnel.captures SET excluded_columns = $2, by_name = false, ddl_problem = NULL, ddl_problem_at = NULL WHERE table_id = $1', [tableId(table), table.exclude]);
      await source.query('SELECT pgtunnel.sync_capture($1)', [tableId(table)]);
    });
  } catch (err) {
    if (applied > 0 || regenerate || sqlState(err) !== '42501') throw err;
    return { applied, stale };
  }
  return { applied, stale: [] };
}

/** Removes what install recorded for a table (triggers, functions, change table, state); never anything else. */
export async function uninstallCapture(source: pg.Client, table: TableConfig, options: { keepState?: boolean } = {}): Promise<boolean> {
  const id = tableId(table);
  return inTransaction(source, async () => {
    await source.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockNames.migrate]);
    const { rows: registry } = await source.query<{ exists: boolean }>("SELECT to_regclass('pgtunnel.captures') IS NOT NULL AS exists");
    if (!registry[0]?.exists) return false;
    const { rows } = await source.query<{ source_table: string; change_table: string; function_prefix: string }>(
      "SELECT source_table::oid::text AS source_table, change_table::oid::text AS change_table, function_prefix FROM pgtunnel.captures WHERE table_id = $1",
      [id],
    );
    const cap = rows[0];
    if (!cap) return false;
    const names = await source.query<{ source_table: string | null; change_table: string | null }>(
      `SELECT (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid) AS source_table,
              (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $2::oid) AS change_table`,
      [cap.source_table, cap.change_table],
    );
    const { source_table: sourceTable, change_table: changeTableName } = names.rows[0]!;
    if (sourceTable) {
      for (const op of ['insert', 'update', 'delete', 'truncate']) await source.query(`DROP TRIGGER IF EXISTS pgtunnel_capture_${op} ON ${sourceTable}`);
    }
    for (const op of ['ins', 'upd', 'del', 'trunc']) await source.query(`DROP FUNCTION IF EXISTS ${qualified('pgtunnel', `${cap.function_prefix}_${op}`)}()`);
    if (changeTableName && changeTableName !== sourceTable) await source.query(`DROP TABLE IF EXISTS ${changeTableName}`);
    await source.query('DELETE FROM pgtunnel.captures WHERE table_id = $1', [id]);
    // a switch to logical capture keeps the table's state (its counts, its recorded truncates)
    if (!options.keepState) {
      await source.query('DELETE FROM pgtunnel.state WHERE table_id = $1', [id]);
      await source.query('DELETE FROM pgtunnel.truncates WHERE table_id = $1', [id]);
    }
    // what transaction metadata and before-images keep of the table (installs older than those have neither)
    for (const side of ['pgtunnel.transaction_events', 'pgtunnel.before_images']) {
      const { rows: present } = await source.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [side]);
      if (present[0]!.ok) await source.query(`DELETE FROM ${side} WHERE table_id = $1`, [id]);
    }
    // its incremental snapshots still asked for would start on a capture installed again: they end here (kept as history)
    const { rows: signals } = await source.query<{ ok: boolean }>("SELECT to_regclass('pgtunnel.signals') IS NOT NULL AS ok");
    if (signals[0]!.ok) {
      await source.query("UPDATE pgtunnel.signals SET state = 'cancelled', finished_at = now(), message = 'capture of the table removed' WHERE table_id = $1 AND state IN ('pending', 'running')", [id]);
    }
    await source.query('DELETE FROM pgtunnel.migrations WHERE scope = $1', [captureScope(id)]);
    return true;
  });
}

/** Installs the target's offsets table. */
export async function installTarget(target: pg.Client): Promise<number> {
  return migrate(target, 'target', readMigrations('target'));
}
