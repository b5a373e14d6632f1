import type pg from 'pg';
import type { TableConfig } from '../config/load.js';
import { TunnelError } from '../errors.js';
import { quoteIdent } from '../pg.js';
import { tableId } from '../names.js';

/**
 * One privilege a role needs: on the database, a schema or a table, or membership of the role that owns a
 * schema or table (what PostgreSQL asks for DROP TRIGGER, ALTER and VACUUM, which no GRANT gives).
 */
export type Need =
  | { on: 'database'; privilege: 'CREATE' }
  | { on: 'schema'; schema: string; privilege: 'USAGE' | 'CREATE' }
  | { on: 'table'; schema: string; name: string; privilege: 'SELECT' | 'INSERT' | 'UPDATE' | 'DELETE' }
  | { on: 'function'; schema: string; name: string; privilege: 'EXECUTE' }
  | { on: 'schema owner'; schema: string }
  | { on: 'table owner'; schema: string; name: string };

const pgtunnelTargetTables = ['consumer_offsets', 'parked_keys', 'lettered_keys', 'dlq_resolved', 'honoured_truncates'];
const dml = ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] as const;

/** What the producer (and `verify`, `status`) needs in the source once capture is installed. */
export function producerNeeds(tables: TableConfig[], logical: ReadonlySet<string> = new Set(), transactionMetadata = false): Need[] {
  const needs: Need[] = [
    { on: 'schema', schema: 'pgtunnel', privilege: 'USAGE' },
    { on: 'table', schema: 'pgtunnel', name: 'state', privilege: 'SELECT' },
    { on: 'table', schema: 'pgtunnel', name: 'state', privilege: 'UPDATE' },
    { on: 'table', schema: 'pgtunnel', name: 'captures', privilege: 'SELECT' },
    { on: 'table', schema: 'pgtunnel', name: 'migrations', privilege: 'SELECT' },
    // the consumer asks the source whether a truncate envelope was recorded by capture
    { on: 'table', schema: 'pgtunnel', name: 'truncates', privilege: 'SELECT' },
    // signals: the producer reads the operator's incremental snapshot requests and stores their progress
    { on: 'table', schema: 'pgtunnel', name: 'signals', privilege: 'SELECT' },
    { on: 'table', schema: 'pgtunnel', name: 'signals', privilege: 'UPDATE' },
    // the idle producer's wait; install takes EXECUTE on pgtunnel's functions from PUBLIC
    { on: 'function', schema: 'pgtunnel', name: 'wait_for_commit(text, int, int)', privilege: 'EXECUTE' },
  ];
  // transaction metadata: the counts capture keeps, marked and forgotten once published
  if (transactionMetadata) for (const privilege of ['SELECT', 'UPDATE', 'DELETE'] as const) needs.push({ on: 'table', schema: 'pgtunnel', name: 'transaction_events', privilege });
  // before: full — the old rows read beside the change rows and cleaned with them
  if (tables.some((t) => t.before === 'full')) for (const privilege of ['SELECT', 'DELETE'] as const) needs.push({ on: 'table', schema: 'pgtunnel', name: 'before_images', privilege });
  for (const t of tables) {
    needs.push({ on: 'schema', schema: t.schema, privilege: 'USAGE' }, { on: 'table', schema: t.schema, name: t.name, privilege: 'SELECT' });
    // logical capture has no change table; it records truncates for the consumer's check
    // and numbers the schema versions of its relation messages
    if (logical.has(tableId(t))) {
      needs.push({ on: 'table', schema: 'pgtunnel', name: 'truncates', privilege: 'INSERT' });
      for (const privilege of ['SELECT', 'INSERT'] as const) needs.push({ on: 'table', schema: 'pgtunnel', name: 'logical_schemas', privilege });
    }
    else needs.push({ on: 'table', schema: t.schema, name: t.changeTable, privilege: 'SELECT' }, { on: 'table', schema: t.schema, name: t.changeTable, privilege: 'DELETE' });
  }
  return needs;
}

/** What the consumer (and `dlq replay`) needs in the target once its pgtunnel tables are installed. */
export function applyNeeds(tables: TableConfig[]): Need[] {
  const needs: Need[] = [{ on: 'schema', schema: 'pgtunnel', privilege: 'USAGE' }];
  for (const name of pgtunnelTargetTables) for (const privilege of dml) needs.push({ on: 'table', schema: 'pgtunnel', name, privilege });
  for (const t of tables) {
    needs.push({ on: 'schema', schema: t.schema, privilege: 'USAGE' });
    for (const privilege of dml) needs.push({ on: 'table', schema: t.schema, name: t.name, privilege });
  }
  return needs;
}

/**
 * What installing needs: creating schema pgtunnel (or owning it once it exists), creating the change table
 * beside the captured table, and owning the captured table (membership of its owner role), because the
 * migrations replace triggers and PostgreSQL lets only the owner drop one.
 */
export function installerNeeds(tables: TableConfig[], pgtunnelExists: boolean): Need[] {
  const needs: Need[] = [pgtunnelExists ? { on: 'schema owner', schema: 'pgtunnel' } : { on: 'database', privilege: 'CREATE' }];
  for (const t of tables) needs.push({ on: 'schema', schema: t.schema, privilege: 'CREATE' }, { on: 'table owner', schema: t.schema, name: t.name });
  return needs;
}

const reserved = new Set(['all', 'user', 'group', 'table', 'order', 'select', 'grant', 'role', 'default', 'column', 'check', 'from', 'to', 'where', 'current_user', 'session_user']);

/** A name as a person would type it in a GRANT: quoted only when it has to be. */
export function sqlName(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) && !reserved.has(name) ? name : quoteIdent(name);
}

interface Missing {
  need: Need;
  owner: string | null;
}

/** The needs the connected role lacks; objects that do not exist are someone else's error to report. */
async function missing(client: pg.Client, needs: Need[]): Promise<{ role: string; database: string; missing: Missing[] }> {
  const col = (f: (n: Need) => string | null) => needs.map(f);
  const { rows } = await client.query<{ i: string; owner: string | null; role: string; database: string; lacks: boolean }>(
    `SELECT w.i::text, pg_get_userbyid(CASE WHEN w.kind = 'table owner' THEN c.relowner ELSE n.nspowner END) AS owner,
            current_user AS role, current_database() AS database,
            NOT CASE w.kind
              WHEN 'database' THEN has_database_privilege(current_database(), w.privilege)
              WHEN 'schema' THEN n.oid IS NULL OR has_schema_privilege(n.oid, w.privilege)
              WHEN 'table' THEN c.oid IS NULL OR has_table_privilege(c.oid, w.privilege)
              WHEN 'function' THEN p.oid IS NULL OR has_function_privilege(p.oid, w.privilege)
              WHEN 'schema owner' THEN n.oid IS NULL OR pg_has_role(n.nspowner, 'USAGE')
              WHEN 'table owner' THEN c.oid IS NULL OR pg_has_role(c.relowner, 'USAGE')
            END AS lacks
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS w(kind, schema, name, privilege, i)
     LEFT JOIN pg_namespace n ON n.nspname = w.schema
     LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name
     -- by oid: a name lookup (to_regprocedure) needs USAGE on the schema, itself maybe one of the needs
     LEFT JOIN pg_proc p ON w.kind = 'function' AND p.pronamespace = n.oid AND p.proname = split_part(w.name, '(', 1)
     ORDER BY w.i`,
    [
      col((n) => n.on),
      col((n) => ('schema' in n ? n.schema : null)),
      col((n) => ('name' in n ? n.name : null)),
      col((n) => ('privilege' in n ? n.privilege : null)),
    ],
  );
  const first = rows[0];
  return {
    role: first?.role ?? '',
    database: first?.database ?? '',
    missing: rows.filter((r) => r.lacks).map((r) => ({ need: needs[Number(r.i) - 1]!, owner: r.owner })),
  };
}

/** The exact GRANT statements that give `role` what it lacks, one per object. */
export function grantStatements(role: string, database: string, lacks: Missing[]): string[] {
  const grants = new Map<string, string[]>();
  const add = (object: string, what: string) => grants.set(object, [...(grants.get(object) ?? []), what]);
  for (const { need, owner } of lacks) {
    if (need.on === 'database') add(`ON DATABASE ${sqlName(database)}`, need.privilege);
    else if (need.on === 'schema') add(`ON SCHEMA ${sqlName(need.schema)}`, need.privilege);
    else if (need.on === 'table') add(`ON TABLE ${sqlName(need.schema)}.${sqlName(need.name)}`, need.privilege);
    else if (need.on === 'function') add(`ON FUNCTION ${sqlName(need.schema)}.${need.name}`, need.privilege);
    else if (owner) add(`ROLE ${sqlName(owner)}`, '');
  }
  return [...grants].map(([object, what]) =>
    object.startsWith('ROLE ') ? `GRANT ${object.slice(5)} TO ${sqlName(role)};` : `GRANT ${[...new Set(what)].join(', ')} ${object} TO ${sqlName(role)};`,
  );
}

function describeNeed({ need, owner }: Missing): string {
  if (need.on === 'database') return `${need.privilege} on the database`;
  if (need.on === 'schema') return `${need.privilege} on schema ${need.schema}`;
  if (need.on === 'table') return `${need.privilege} on ${need.schema}.${need.name}`;
  if (need.on === 'function') return `${need.privilege} on function ${need.schema}.${need.name}`;
  return `ownership of ${need.schema}${need.on === 'table owner' ? `.${need.name}` : ''} (membership of its owner ${owner})`;
}

/**
 * Checks the connected role holds every need at once and fails naming each missing privilege and the exact
 * GRANTs, instead of a `permission denied` from the middle of a snapshot or an apply.
 */
export async function requirePrivileges(client: pg.Client, side: 'source' | 'target', purpose: string, needs: Need[], alternative = ''): Promise<void> {
  const found = await missing(client, needs);
  if (found.missing.length === 0) return;
  const grants = grantStatements(found.role, found.database, found.missing);
  throw new TunnelError('PGT_PRIVILEGES', `the ${side} role ${sqlName(found.role)} lacks what ${purpose} needs: ${found.missing.map(describeNeed).join(', ')}`, {
    errorClass: 'config',
    hint: `${alternative}as an administrator of the ${side} database run: ${grants.join(' ')} (docs/security.md: Least privileges)`,
  });
}

/**
 * A standby (or a server whose sessions are read-only) cannot hold what pgtunnel writes there: the source its
 * state, change tables or publication (logical decoding on a standby, PostgreSQL 16+, still needs them written
 * on the primary), the target the rows and offsets. Said before any install statement fails half-way.
 */
export async function requireWritable(client: pg.Client, side: 'source' | 'target'): Promise<void> {
  const { rows } = await client.query<{ standby: boolean; readOnly: string }>("SELECT pg_is_in_recovery() AS standby, current_setting('default_transaction_read_only') AS \"readOnly\"");
  const { standby, readOnly } = rows[0]!;
  if (!standby && readOnly !== 'on') return;
  const what = standby ? 'a standby (in recovery)' : 'read-only for this role (default_transaction_read_only = on)';
  throw new TunnelError('PGT_READ_ONLY', `the ${side} database ${client.database ?? ''} is ${what}, and pgtunnel writes to its ${side}: ${side === 'source' ? 'capture state, change tables or the publication' : 'rows and their offsets'}`, {
    errorClass: 'config',
    hint: standby ? `point the ${side} URL at the primary (capture from a standby is not supported: docs/operations.md)` : `ALTER ROLE … SET default_transaction_read_only = off for pgtunnel's ${side} role, or use another role`,
  });
}
