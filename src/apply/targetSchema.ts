import type pg from 'pg';
import { TunnelError } from '../errors.js';
import { qualified, quoteIdent, quoteLiteral, withCatalogPath } from '../pg.js';

/** A source column as the target must declare it: its type by name, and the user types that type needs. */
export interface ColumnDef {
  name: string;
  /** format_type text, schema-qualified for user types (e.g. "public.mood[]") */
  type: string;
  notNull: boolean;
}

interface UserType {
  oid: number;
  schema: string;
  name: string;
  kind: 'e' | 'd' | 'c';
}

/** Column definitions of a source table (call inside withCatalogPath). */
export async function sourceColumnDefs(source: pg.Client, schema: string, table: string, only?: string[]): Promise<ColumnDef[]> {
  const { rows } = await source.query<{ name: string; type: string; not_null: boolean }>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null FROM pg_attribute
     WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND ($2::text[] IS NULL OR attname = ANY ($2::text[]))
     ORDER BY attnum`,
    [qualified(schema, table), only ?? null],
  );
  return rows.map((r) => ({ name: r.name, type: r.type, notNull: r.not_null }));
}

/** User-defined enum, domain and composite types a table's columns use (array elements included), innermost first. */
async function userTypes(source: pg.Client, schema: string, table: string, columns: string[]): Promise<UserType[]> {
  const { rows } = await source.query<UserType>(
    `WITH RECURSIVE used(oid, depth) AS (
       SELECT CASE WHEN t.typelem <> 0 AND t.typcategory = 'A' THEN t.typelem ELSE t.oid END, 0
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       WHERE a.attrelid = to_regclass($1) AND a.attname = ANY ($2::text[]) AND a.attnum > 0 AND NOT a.attisdropped
       UNION
       SELECT CASE WHEN e.typelem <> 0 AND e.typcategory = 'A' THEN e.typelem ELSE e.oid END, u.depth + 1
       FROM used u JOIN pg_type t ON t.oid = u.oid
       JOIN pg_type e ON e.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE 0 END
                       OR e.oid IN (SELECT atttypid FROM pg_attribute WHERE attrelid = t.typrelid AND t.typtype = 'c' AND attnum > 0)
       WHERE u.depth < 10)
     SELECT t.oid::int AS oid, n.nspname AS schema, t.typname AS name, t.typtype AS kind, max(u.depth) AS depth
     FROM used u JOIN pg_type t ON t.oid = u.oid JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE t.typtype IN ('e', 'd', 'c') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     GROUP BY 1, 2, 3, 4 ORDER BY max(u.depth) DESC`,
    [qualified(schema, table), columns],
  );
  return rows;
}

/** The DDL that creates one user type in the target as the source defines it. */
async function typeDdl(source: pg.Client, t: UserType): Promise<string> {
  const name = qualified(t.schema, t.name);
  if (t.kind === 'e') {
    const { rows } = await source.query<{ label: string }>('SELECT enumlabel AS label FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder', [t.oid]);
    return `CREATE TYPE ${name} AS ENUM (${rows.map((r) => quoteLiteral(r.label)).join(', ')})`;
  }
  if (t.kind === 'd') {
    const { rows } = await source.query<{ base: string; not_null: boolean; checks: string[] }>(
      `SELECT format_type(typbasetype, typtypmod) AS base, typnotnull AS not_null,
              ARRAY(SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c') AS checks
       FROM pg_type t WHERE t.oid = $1`,
      [t.oid],
    );
    const d = rows[0]!;
    return `CREATE DOMAIN ${name} AS ${d.base}${d.not_null ? ' NOT NULL' : ''}${d.checks.map((c) => ` ${c}`).join('')}`;
  }
  const { rows } = await source.query<{ name: string; type: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
     WHERE t.oid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [t.oid],
  );
  return `CREATE TYPE ${name} AS (${rows.map((r) => `${quoteIdent(r.name)} ${r.type}`).join(', ')})`;
}

/** CREATE SCHEMA IF NOT EXISTS asks for CREATE on the database even when the schema exists: look first. */
async function ensureSchema(target: pg.Client, schema: string): Promise<void> {
  const { rows } = await target.query<{ present: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS present', [schema]);
  if (!rows[0]?.present) await target.query(`CREATE SCHEMA ${quoteIdent(schema)}`);
}

/** Creates in the target the user types the columns need and the target lacks (same schema and name). */
async function ensureTypes(source: pg.Client, target: pg.Client, schema: string, table: string, columns: string[]): Promise<void> {
  for (const t of await userTypes(source, schema, table, columns)) {
    const { rows } = await target.query<{ present: boolean }>('SELECT to_regtype($1) IS NOT NULL AS present', [qualified(t.schema, t.name)]);
    if (rows[0]?.present) continue;
    await ensureSchema(target, t.schema);
    await target.query(await typeDdl(source, t));
  }
}

/**
 * Creates a missing target table from the source catalog: columns and types (enum, domain and composite
 * types created when missing), NOT NULL, and the key as the primary key. Runs in the caller's transaction.
 */
export async function createTargetTable(source: pg.Client, target: pg.Client, schema: string, table: string, key: string[], exclude: string[] = []): Promise<void> {
  await withCatalogPath(source, () => createTable(source, target, schema, table, key, exclude));
}

async function createTable(source: pg.Client, target: pg.Client, schema: string, table: string, key: string[], exclude: string[]): Promise<void> {
  // excluded columns are never captured, so the target never gets them
  const columns = (await sourceColumnDefs(source, schema, table)).filter((c) => !exclude.includes(c.name));
  if (columns.length === 0) {
    throw new TunnelError('PGT_TABLE_MISSING', `table ${schema}.${table} does not exist in the source database`, { errorClass: 'config', hint: 'create it, or fix tables in pgtunnel.yaml' });
  }
  await ensureTypes(source, target, schema, table, columns.map((c) => c.name));
  await ensureSchema(target, schema);
  const defs = columns.map((c) => `${quoteIdent(c.name)} ${c.type}${c.notNull ? ' NOT NULL' : ''}`);
  await target.query(`CREATE TABLE ${qualified(schema, table)} (${defs.join(', ')}, PRIMARY KEY (${key.map(quoteIdent).join(', ')}))`);
}

/** Adds source columns the target lacks (nullable: existing target rows have no value for them). */
export async function addTargetColumns(source: pg.Client, target: pg.Client, schema: string, table: string, names: string[]): Promise<string[]> {
  return withCatalogPath(source, async () => {
    const columns = await sourceColumnDefs(source, schema, table, names);
    await ensureTypes(source, target, schema, table, columns.map((c) => c.name));
    for (const c of columns) await target.query(`ALTER TABLE ${qualified(schema, table)} ADD COLUMN IF NOT EXISTS ${quoteIdent(c.name)} ${c.type}`);
    return columns.map((c) => c.name);
  });
}

/**
 * A source column whose type changed (ALTER COLUMN … TYPE) changes type in the target too, when the
 * target's values convert; returns the columns changed. Runs in its own transaction on `target`.
 */
export async function followSourceTypes(source: pg.Client, target: pg.Client, schema: string, table: string): Promise<string[]> {
  return withCatalogPath(source, () =>
    withCatalogPath(target, async () => {
      const wanted = await sourceColumnDefs(source, schema, table);
      const have = new Map((await sourceColumnDefs(target, schema, table)).map((c) => [c.name, c.type]));
      const changed = wanted.filter((c) => have.has(c.name) && have.get(c.name) !== c.type);
      if (changed.length === 0) return [];
      await ensureTypes(source, target, schema, table, changed.map((c) => c.name));
      const alters = changed.map((c) => `ALTER COLUMN ${quoteIdent(c.name)} TYPE ${c.type} USING ${quoteIdent(c.name)}::${c.type}`);
      await target.query(`ALTER TABLE ${qualified(schema, table)} ${alters.join(', ')}`);
      return changed.map((c) => c.name);
    }),
  );
}
