import pg from 'pg';
import { TunnelError, classify } from './errors.js';
import { redact } from './redact.js';
import { applicationNames } from './names.js';

// int8 and numeric as strings would make every key a string; bigint-safe keys stay text, small ints parse.
pg.types.setTypeParser(20, (v) => {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : v;
});

export type Client = pg.Client;

/** Quotes an SQL identifier; values never go through here, they are always `$n` parameters. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function qualified(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/**
 * An SQL string literal, for names (never data) placed in generated SQL. With a backslash it takes the
 * E'' form, which means the same whatever `standard_conforming_strings` says; without one both agree.
 */
export function quoteLiteral(text: string): string {
  const quoted = text.replace(/'/g, "''");
  return text.includes('\\') ? `E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`;
}

/** `a.k1 = b.k1 AND a.k2 = b.k2`: rows of two relations with the same key. */
export function keyMatch(key: string[], left: string, right: string): string {
  return key.map((k) => `${left}.${quoteIdent(k)} = ${right}.${quoteIdent(k)}`).join(' AND ');
}

/** `jsonb_build_object('k1', a.k1, …)`: a row's key as JSON, the shape of an envelope's key. */
export function keyObject(key: string[], alias?: string): string {
  return `jsonb_build_object(${key.map((k) => `${quoteLiteral(k)}, ${alias ? `${alias}.` : ''}${quoteIdent(k)}`).join(', ')})`;
}

/** Opens a connection; an unreachable database becomes an error that names the URL (masked) and the fix. */
export async function connect(url: string, role: 'source' | 'target' | 'admin', applicationName: string = applicationNames.default): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName, connectionTimeoutMillis: 10_000 });
  // A broken connection must not crash the process; the next query on it fails and is retried.
  client.on('error', () => {});
  try {
    await client.connect();
    return client;
  } catch (err) {
    await client.end().catch(() => {});
    const e = classify(err);
    if (e.code === '3D000') {
      throw new TunnelError('PGT_DB_MISSING', `the ${role} database in ${redact(url)} does not exist: ${e.message}`, {
        errorClass: 'fatal',
        hint: `create it (createdb) or fix PGTUNNEL_${role.toUpperCase()}_URL`,
        cause: err,
      });
    }
    if (e.errorClass === 'config') {
      // a refused password or certificate: retrying cannot help, the URL or the server's set-up can
      throw new TunnelError(e.code, `cannot connect to the ${role} database ${redact(url)}: ${e.message}`, { errorClass: 'config', hint: e.hint, cause: err });
    }
    throw new TunnelError('PGT_UNREACHABLE', `cannot connect to the ${role} database ${redact(url)}: ${e.message}`, {
      errorClass: 'unreachable',
      hint: `start PostgreSQL there, or fix PGTUNNEL_${role.toUpperCase()}_URL`,
      cause: err,
    });
  }
}

export async function withClient<T>(url: string, role: 'source' | 'target' | 'admin', body: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(url, role);
  try {
    return await body(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export async function inTransaction<T>(client: pg.Client, body: () => Promise<T>, begin = 'BEGIN'): Promise<T> {
  await client.query(begin);
  try {
    const result = await body();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * Runs catalog reads with only pg_catalog on the search path, so format_type writes every user type
 * schema-qualified (public.mood, not mood) and the DDL built from it means the same type in the target.
 */
export async function withCatalogPath<T>(source: pg.Client, body: () => Promise<T>): Promise<T> {
  await source.query('SET search_path TO pg_catalog');
  try {
    return await body();
  } finally {
    await source.query('RESET search_path').catch(() => {});
  }
}
