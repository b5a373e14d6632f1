import type pg from 'pg';
import { TunnelError, sqlState } from '../errors.js';
import type { TableConfig } from '../config/load.js';
import { slotName, tableId } from '../names.js';
import { inTransaction, qualified, withClient } from '../pg.js';

export type SignalState = 'pending' | 'running' | 'done' | 'cancelled' | 'failed';

/** One request for an incremental snapshot of a table (or of the rows a predicate selects), and its progress. */
export interface Signal {
  signalId: string;
  tableId: string;
  predicate: string | null;
  state: SignalState;
  /** The last key a published chunk held, as exact JSON text. */
  lastKey: string | null;
  rowsDone: number;
  rowsTotal: number | null;
  message: string | null;
  requestedAt: string;
}

const columns = `signal_id::text AS "signalId", table_id AS "tableId", predicate, state, last_key AS "lastKey",
  rows_done::float8 AS "rowsDone", rows_total::float8 AS "rowsTotal", message, requested_at::text AS "requestedAt"`;

const predicateHint = 'give a boolean SQL expression over the table\'s columns, e.g. --where "emp_id BETWEEN 1 AND 1000" (one expression: no ";" and no comments)';

/**
 * The operator's predicate, checked before anything stores or runs it: one expression (no `;`, no comment
 * that could end the statement around it early), parsed and planned as the WHERE of a SELECT of the table in a
 * read-only transaction with a statement timeout. `LIMIT 0` plans it without reading a row. It is SQL the
 * producer runs in the source: only the operator (CLI, or the HTTP API behind its token) may give one.
 */
export async function checkPredicate(client: pg.Client, table: string, predicate: string): Promise<void> {
  const bad = (why: string, cause?: unknown) => new TunnelError('PGT_BAD_PREDICATE', `the predicate ${JSON.stringify(predicate)} for ${table} ${why}`, { errorClass: 'config', hint: predicateHint, cause });
  if (predicate.trim() === '') throw bad('is empty');
  if (/;|--|\/\*/.test(predicate)) throw bad('holds ";" or a comment: only one expression is allowed');
  try {
    await inTransaction(client, async () => {
      await client.query("SET LOCAL statement_timeout = '5s'");
      await client.query(`SELECT 1 FROM ${table} WHERE (${predicate}) LIMIT 0`);
    }, 'BEGIN READ ONLY');
  } catch (err) {
    const state = sqlState(err) ?? '';
    // syntax, unknown names, types, a write in a read-only transaction, the timeout: the predicate's fault
    if (/^(42|22|25|0A)/.test(state) || state === '57014') throw bad(`is not valid: ${(err as Error).message}`, err);
    throw err;
  }
}

/** Asks for an incremental snapshot; returns its signal id. The predicate must have passed `checkPredicate`. */
export async function requestSnapshot(client: pg.Client, tableId: string, predicate: string | null): Promise<string> {
  const { rows } = await client.query<{ id: string }>('INSERT INTO pgtunnel.signals (table_id, predicate) VALUES ($1, $2) RETURNING signal_id::text AS id', [tableId, predicate]);
  return rows[0]!.id;
}

/** Cancels the table's pending and running snapshots; returns how many. A chunk in flight still lands. */
export async function cancelSnapshots(client: pg.Client, tableId: string): Promise<number> {
  const { rowCount } = await client.query(
    "UPDATE pgtunnel.signals SET state = 'cancelled', finished_at = now(), message = 'cancelled by the operator' WHERE table_id = $1 AND state IN ('pending', 'running')",
    [tableId],
  );
  return rowCount ?? 0;
}

/** The table's snapshot to work on: the running one (a restart resumes it), else the oldest pending. */
export async function nextSignal(client: pg.Client, tableId: string): Promise<Signal | undefined> {
  const { rows } = await client.query<Signal>(
    `SELECT ${columns} FROM pgtunnel.signals WHERE table_id = $1 AND state IN ('pending', 'running') ORDER BY state = 'running' DESC, signal_id LIMIT 1`,
    [tableId],
  );
  return rows[0];
}

export async function signalById(client: pg.Client, signalId: string): Promise<Signal | undefined> {
  const { rows } = await client.query<Signal>(`SELECT ${columns} FROM pgtunnel.signals WHERE signal_id = $1`, [signalId]);
  return rows[0];
}

/** Pending to running with the rows it will read; false when it was cancelled meanwhile. */
export async function startSignal(client: pg.Client, signalId: string, rowsTotal: number): Promise<boolean> {
  const { rowCount } = await client.query("UPDATE pgtunnel.signals SET state = 'running', started_at = now(), rows_total = $2 WHERE signal_id = $1 AND state = 'pending'", [signalId, rowsTotal]);
  return rowCount === 1;
}

/**
 * A published chunk's progress, in its checkpoint's transaction (so a restart resumes after it); false when
 * the snapshot was cancelled meanwhile (the chunk is published all the same: its rows are current).
 */
export async function recordProgress(client: pg.Client, signalId: string, lastKey: string | null, rowsDone: number, done: boolean): Promise<boolean> {
  const { rowCount } = await client.query(
    `UPDATE pgtunnel.signals SET last_key = $2, rows_done = $3, state = CASE WHEN $4 THEN 'done' ELSE state END, finished_at = CASE WHEN $4 THEN now() END
     WHERE signal_id = $1 AND state = 'running'`,
    [signalId, lastKey, rowsDone, done],
  );
  return rowCount === 1;
}

export async function failSignal(client: pg.Client, signalId: string, message: string): Promise<void> {
  await client.query("UPDATE pgtunnel.signals SET state = 'failed', finished_at = now(), message = $2 WHERE signal_id = $1 AND state IN ('pending', 'running')", [signalId, message]);
}

/** Each table's latest snapshot request (status); none before the signals table was installed. */
export async function latestSignals(client: pg.Client): Promise<Map<string, Signal>> {
  const { rows: present } = await client.query<{ ok: boolean }>("SELECT to_regclass('pgtunnel.signals') IS NOT NULL AS ok");
  if (!present[0]!.ok) return new Map();
  const { rows } = await client.query<Signal>(`SELECT DISTINCT ON (table_id) ${columns} FROM pgtunnel.signals ORDER BY table_id, signal_id DESC`);
  return new Map(rows.map((s) => [s.tableId, s]));
}

/** The configured table an operator named (`employees` or `public.employees`). */
export function configuredTable(tables: TableConfig[], name: string): TableConfig {
  const found = tables.find((t) => name === t.name || name === tableId(t));
  if (found) return found;
  throw new TunnelError('PGT_UNKNOWN_TABLE', `${JSON.stringify(name)} is not a configured table`, {
    errorClass: 'config',
    hint: `use one of: ${tables.map((t) => tableId(t)).join(', ')} (or add it to the configuration first)`,
  });
}

async function installed(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ ok: boolean }>("SELECT to_regclass('pgtunnel.signals') IS NOT NULL AS ok");
  if (!rows[0]!.ok) throw new TunnelError('PGT_NOT_INSTALLED', 'the source has no pgtunnel.signals table', { errorClass: 'config', hint: 'run `pgtunnel install` (pgtunnel run does it for you) with this version first' });
}

/** Only the trigger producer reads signals: a request for a table captured otherwise would wait forever. */
async function capturedByTriggers(client: pg.Client, table: TableConfig): Promise<void> {
  const { rows } = await client.query('SELECT 1 FROM pgtunnel.captures WHERE table_id = $1', [tableId(table)]);
  if (rows.length > 0) return;
  // a slot of its own, or a place in a shared slot's publication (any tunnel instance's)
  const logical = (await client.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 UNION ALL SELECT 1 FROM pg_publication_tables WHERE pubname LIKE 'pgtunnel\\_source\\_%' AND schemaname = $2 AND tablename = $3", [slotName(table, client.database ?? ''), table.schema, table.name])).rows.length > 0;
  throw new TunnelError('PGT_SIGNAL_UNSUPPORTED', logical
    ? `${tableId(table)} is captured by logical decoding: incremental snapshots are built for trigger capture only so far`
    : `${tableId(table)} is not captured yet`, {
    errorClass: 'config',
    hint: logical ? 'to read the table again, `pgtunnel uninstall` then `pgtunnel install` (a full snapshot)' : 'run `pgtunnel install` (pgtunnel run does it for you) first',
  });
}

/** The operator's request (CLI, HTTP API): checked, then stored for the table's producer. */
export async function askForSnapshot(sourceUrl: string, tables: TableConfig[], name: string, predicate: string | null): Promise<{ signalId: string; table: string }> {
  const table = configuredTable(tables, name);
  return withClient(sourceUrl, 'source', async (client) => {
    await installed(client);
    await capturedByTriggers(client, table);
    if (predicate !== null) await checkPredicate(client, qualified(table.schema, table.name), predicate);
    return { signalId: await requestSnapshot(client, tableId(table), predicate), table: tableId(table) };
  });
}

export async function cancelSnapshotsOf(sourceUrl: string, tables: TableConfig[], name: string): Promise<{ cancelled: number; table: string }> {
  const table = configuredTable(tables, name);
  return withClient(sourceUrl, 'source', async (client) => {
    await installed(client);
    return { cancelled: await cancelSnapshots(client, tableId(table)), table: tableId(table) };
  });
}
