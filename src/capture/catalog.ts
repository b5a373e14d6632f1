import type pg from 'pg';
import { TunnelError } from '../errors.js';
import { qualified } from '../pg.js';
import type { TableConfig } from '../config/load.js';

export interface TableShape {
  schema: string;
  name: string;
  columns: string[];
  key: string[];
  /** Column → its SQL type as format_type prints it (integer, character varying(100), date, …). */
  types: Record<string, string>;
  /** Generated columns: computed by the table, never written. */
  generated: string[];
  /** GENERATED ALWAYS AS IDENTITY columns: written only with OVERRIDING SYSTEM VALUE. */
  identityAlways: string[];
}

/** Reads a table's columns and key from the catalog; a missing table or key is an error naming the fix. */
export async function describeTable(client: pg.Client, table: TableConfig, role: 'source' | 'target'): Promise<TableShape> {
  const id = qualified(table.schema, table.name);
  const { rows: found } = await client.query<{ oid: number | null }>('SELECT to_regclass($1)::oid AS oid', [id]);
  const oid = found[0]?.oid;
  if (!oid) {
    throw new TunnelError('PGT_TABLE_MISSING', `table ${table.schema}.${table.name} does not exist in the ${role} database`, {
      errorClass: 'config',
      hint: role === 'target' ? 'create it in the target with the source\'s columns, or turn autoCreate on (the default) so pgtunnel creates it' : 'create it, or fix PGTUNNEL_TABLES / tables in pgtunnel.yaml',
    });
  }
  const { rows: cols } = await client.query<{ attname: string; type: string; generated: boolean; identity_always: boolean }>(
    `SELECT attname, format_type(atttypid, atttypmod) AS type, attgenerated <> '' AS generated, attidentity = 'a' AS identity_always
     FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [oid],
  );
  const columns = cols.map((c) => c.attname);
  const types = Object.fromEntries(cols.map((c) => [c.attname, c.type]));
  const { rows: pk } = await client.query<{ attname: string }>(
    `SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, pos)
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.pos`,
    [oid],
  );
  let key = pk.map((r) => r.attname);
  if (table.key) {
    const unknown = table.key.filter((k) => !columns.includes(k));
    if (unknown.length > 0) {
      throw new TunnelError('PGT_KEY_UNKNOWN', `key column(s) ${unknown.join(', ')} of ${table.schema}.${table.name} do not exist in the ${role} database`, {
        errorClass: 'config',
        hint: `set key to columns of the table (it has: ${columns.join(', ')})`,
      });
    }
    key = table.key;
  }
  if (key.length === 0) {
    throw new TunnelError('PGT_NO_KEY', `table ${table.schema}.${table.name} has no primary key in the ${role} database, and no key is configured`, {
      errorClass: 'config',
      hint: `add a primary key (ALTER TABLE ${table.schema}.${table.name} ADD PRIMARY KEY (...)), or configure one: tables: [{ name: ${table.name}, key: [col] }]`,
    });
  }
  return {
    schema: table.schema,
    name: table.name,
    columns,
    key,
    types,
    generated: cols.filter((c) => c.generated).map((c) => c.attname),
    identityAlways: cols.filter((c) => c.identity_always).map((c) => c.attname),
  };
}

const captureTriggers = ['pgtunnel_capture_insert', 'pgtunnel_capture_update', 'pgtunnel_capture_delete', 'pgtunnel_capture_truncate'];

export const repairHint = 'restore capture with `pgtunnel uninstall && pgtunnel install`, then `pgtunnel snapshot --restart` to resend what was missed';

/** Capture only works while its triggers exist and are enabled; someone may drop or disable them. */
export async function checkCapture(client: pg.Client, table: TableConfig): Promise<void> {
  const { rows } = await client.query<{ present: boolean; triggers: string[] }>(
    `SELECT to_regclass($1) IS NOT NULL AS present,
            ARRAY(SELECT tgname::text FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = ANY($2) AND tgenabled <> 'D') AS triggers`,
    [qualified(table.schema, table.name), captureTriggers],
  );
  const { present, triggers } = rows[0]!;
  if (!present) {
    throw new TunnelError('PGT_TABLE_MISSING', `table ${table.schema}.${table.name} was dropped from the source while the tunnel ran`, {
      errorClass: 'fatal',
      hint: 'recreate it, or remove it from PGTUNNEL_TABLES / tables',
    });
  }
  const missing = captureTriggers.filter((t) => !triggers.includes(t));
  if (missing.length > 0) {
    throw new TunnelError('PGT_CAPTURE_BROKEN', `capture trigger(s) ${missing.join(', ')} on ${table.schema}.${table.name} were dropped or disabled: changes since then were not captured`, {
      errorClass: 'fatal',
      hint: repairHint,
    });
  }
}

/** Source columns that capture does not write into the change table (added while no DDL event trigger ran). */
export async function uncapturedColumns(client: pg.Client, table: TableConfig): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT s.attname::text AS name FROM pg_attribute s
     WHERE s.attrelid = to_regclass($1) AND s.attnum > 0 AND NOT s.attisdropped AND NOT s.attname = ANY ($3::text[])
       AND NOT EXISTS (SELECT 1 FROM pg_attribute c WHERE c.attrelid = to_regclass($2) AND c.attname = s.attname AND c.attnum > 0 AND NOT c.attisdropped)
     ORDER BY s.attnum`,
    [qualified(table.schema, table.name), qualified(table.schema, table.changeTable), table.exclude],
  );
  return rows.map((r) => r.name);
}
