import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { inTransaction } from '../pg.js';
import { TunnelError } from '../errors.js';
import { pgtunnelVersion } from '../contracts/envelope.js';
import { lockNames } from '../names.js';

const sqlRoot = fileURLToPath(new URL('../../../sql/', import.meta.url));

export interface Migration {
  version: number;
  name: string;
  text: string;
}

/** `sql/<folder>/000001_name.sql`, in version order. Append-only: a released file never changes. */
export function readMigrations(folder: 'source' | 'target' | 'table'): Migration[] {
  return readdirSync(sqlRoot + folder)
    .filter((f) => /^\d{6}_.+\.sql$/.test(f))
    .sort()
    .map((f) => ({ version: Number(f.slice(0, 6)), name: f.slice(7, -4), text: readFileSync(`${sqlRoot}${folder}/${f}`, 'utf8') }));
}

export function render(text: string, values: Record<string, string>): string {
  return text.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`migration placeholder {{${name}}} has no value`);
    return value;
  });
}

/** False when pgtunnel.migrations exists and the connected role may not read it (it lacks the runtime GRANTs). */
export async function migrationsReadable(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(
    `SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'pgtunnel' AND c.relname = 'migrations'
                          AND NOT (has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'))) AS ok`,
  );
  return rows[0]!.ok;
}

/**
 * The migrations of a scope not applied yet, read without writing anything: a runtime role that may not
 * create objects starts a tunnel whose capture the installer already brought up to date.
 */
export async function pendingMigrations(client: pg.Client, scope: string, migrations: Migration[]): Promise<Migration[]> {
  const { rows: present } = await client.query<{ ok: boolean }>(
    "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgtunnel' AND c.relname = 'migrations') AS ok",
  );
  if (!present[0]?.ok) return migrations;
  const { rows } = await client.query<{ version: number; name: string }>('SELECT version, name FROM pgtunnel.migrations WHERE scope = $1 ORDER BY version', [scope]);
  refuseNewer(scope, rows, migrations);
  const done = new Set(rows.map((r) => r.version));
  return migrations.filter((m) => !done.has(m.version));
}

const fileName = (m: { version: number; name: string }) => `${String(m.version).padStart(6, '0')}_${m.name}`;

/**
 * A database a newer pgtunnel migrated may hold what this code does not know how to read or write (as
 * graphile/worker does, the older code stops instead of guessing).
 */
function refuseNewer(scope: string, applied: { version: number; name: string }[], known: Migration[]): void {
  const newest = known.at(-1);
  const newer = applied.filter((m) => m.version > (newest?.version ?? 0));
  if (newer.length === 0) return;
  throw new TunnelError('PGT_SCHEMA_NEWER', `pgtunnel.migrations (scope ${scope}) holds ${newer.map(fileName).join(', ')}, newer than this pgtunnel ${pgtunnelVersion} knows (its newest is ${newest ? fileName(newest) : 'none'}): a newer pgtunnel installed it`, {
    errorClass: 'fatal',
    hint: 'run the pgtunnel version that installed it, or a newer one, for every process of this tunnel: migrations only go forward',
  });
}

/**
 * Applies the migrations of one scope that are not applied yet. An advisory lock serialises concurrent
 * installers, so two tunnels starting at once never apply a migration twice.
 */
export async function migrate(client: pg.Client, scope: string, migrations: Migration[], values: Record<string, string> = {}): Promise<number> {
  if ((await pendingMigrations(client, scope, migrations)).length === 0) return 0;
  return inTransaction(client, async () => {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockNames.migrate]);
    await client.query('CREATE SCHEMA IF NOT EXISTS pgtunnel');
    await client.query(
      'CREATE TABLE IF NOT EXISTS pgtunnel.migrations (scope text NOT NULL, version int NOT NULL, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, version))',
    );
    const { rows } = await client.query<{ version: number }>('SELECT version FROM pgtunnel.migrations WHERE scope = $1', [scope]);
    const done = new Set(rows.map((r) => r.version));
    let applied = 0;
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await client.query(render(m.text, values));
      await client.query('INSERT INTO pgtunnel.migrations (scope, version, name) VALUES ($1, $2, $3)', [scope, m.version, m.name]);
      applied++;
    }
    return applied;
  });
}
