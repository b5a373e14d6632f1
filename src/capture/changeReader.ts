import type pg from 'pg';
import { qualified, quoteIdent } from '../pg.js';
import type { TableConfig } from '../config/load.js';
import type { ChangeRow } from '../contracts/envelope.js';
import type { Position } from './position.js';
import { tableId } from '../names.js';
import { TransactionReader } from './transactions.js';
import { beforeImageJoin, beforeImagesCleanupSql } from './beforeImages.js';
import { filterSql } from './rowFilter.js';

export interface Page {
  cur: string;
  changes: ChangeRow[];
}

/** Columns of a change table that pgtunnel adds; every other column is a captured column of the source. */
export const controlColumns = ['action', 'change_id', 'txid', 'captured_at', 'schema_version'];

/** The captured columns a reader turns into the row image, and the version of the capture that wrote them. */
export interface CapturedColumns {
  columns: string[];
  key: string[];
  schemaVersion: number;
  /** json and jsonb columns: published as JSON strings of their exact text (a JSON null is not SQL NULL) */
  json: Set<string>;
}

/**
 * The captured columns: the change table's own columns (by name) that the source still has. A column the
 * source dropped before capture could follow it is no longer read, so the target keeps its last value.
 */
export async function capturedColumns(client: pg.Client, table: TableConfig, key: string[]): Promise<CapturedColumns> {
  const { rows } = await client.query<{ columns: string[] | null; json: string[] | null; schema_version: number | null }>(
    `SELECT ARRAY(SELECT a.attname::text FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid IN ('json'::regtype, 'jsonb'::regtype)) AS json,
            ARRAY(SELECT a.attname::text FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname = ANY ($3::text[])
                    AND EXISTS (SELECT 1 FROM pg_attribute s WHERE s.attrelid = to_regclass($2) AND s.attname = a.attname AND s.attnum > 0 AND NOT s.attisdropped)
                  ORDER BY a.attnum) AS columns,
            (SELECT schema_version FROM pgtunnel.captures WHERE table_id = $4) AS schema_version`,
    [qualified(table.schema, table.changeTable), qualified(table.schema, table.name), controlColumns, tableId(table)],
  );
  return { columns: rows[0]?.columns ?? [], key, schemaVersion: rows[0]?.schema_version ?? 1, json: new Set(rows[0]?.json ?? []) };
}

/**
 * `(SELECT row_to_json(r) FROM (SELECT c.a, c.b) r)::text`: exact text of the named columns, in order.
 * A masked column becomes the hex sha256 of the salt (the SQL expression `saltParam`) and its text; a
 * column in `asText` becomes the JSON string of its text.
 */
export function rowJson(alias: string, columns: string[], masked: ReadonlySet<string> = new Set(), saltParam = 'NULL', asText: ReadonlySet<string> = new Set()): string {
  const select = columns.map((c) => {
    const value = `${alias}.${quoteIdent(c)}`;
    if (masked.has(c)) return `encode(sha256(convert_to(${saltParam}::text || ${value}::text, 'UTF8')), 'hex') AS ${quoteIdent(c)}`;
    return asText.has(c) ? `${value}::text AS ${quoteIdent(c)}` : value;
  });
  return `(SELECT row_to_json(pgtunnel_r.*) FROM (SELECT ${select.join(', ') || 'NULL AS "?"'}) pgtunnel_r)::text`;
}

/**
 * Reads the change table in snapshot-diff batches: the changes of transactions visible in `cur` and not
 * in `prev`, in change_id order, never `change_id > last` alone (that loses late commits). Each page walks
 * the change_id index from the last change on (both scans: a txid range as the index condition made the
 * planner read, sort and join the whole backlog on every page, so a 200k backlog cost 0.4–0.9 s a page).
 * Rows leave as row_to_json text and are never parsed on the way to Kafka, so every value stays exact.
 */
export class ChangeReader {
  private batchSql = '';
  private readonly cleanupSql: string;
  private readonly vacuumSql: string;
  /** The change table, qualified and quoted. */
  readonly changeTable: string;
  private cleanedSinceVacuum = 0;
  private captured: CapturedColumns | undefined;
  /** With transaction metadata: each change's place in its transaction, and its BEGIN/END. */
  private readonly transactions: TransactionReader | undefined;
  /** `before: full`: updates carry their old row. */
  private readonly beforeFull: boolean;
  private extraParams: unknown[] = [];

  constructor(private readonly table: TableConfig, private readonly masked: ReadonlySet<string> = new Set(), private readonly salt = '', transactionMetadata = false) {
    this.changeTable = qualified(table.schema, table.changeTable);
    this.beforeFull = table.before === 'full';
    if (transactionMetadata) this.transactions = new TransactionReader(tableId(table), this.changeTable);
    // No truncation: it waits for an ACCESS EXCLUSIVE lock (up to 5 s) against the capture triggers' inserts.
    this.vacuumSql = `VACUUM (TRUNCATE false) ${this.changeTable}`;
    this.cleanupSql = `DELETE FROM ${this.changeTable} WHERE txid < pg_snapshot_xmax($1::pg_snapshot) AND pg_visible_in_snapshot(txid, $1::pg_snapshot)`;
  }

  get schemaVersion(): number {
    return this.captured?.schemaVersion ?? 1;
  }

  /** Re-reads which columns are captured (after DDL on the source, or a new capture version). */
  async refresh(client: pg.Client, key: string[]): Promise<CapturedColumns> {
    const captured = await capturedColumns(client, this.table, key);
    this.captured = captured;
    // parameters after the five every page binds: the table id (before-images), then the filter's values
    const filter = this.table.filter.length > 0 ? filterSql(this.table.filter, 'c', this.beforeFull ? 7 : 6) : undefined;
    this.extraParams = [...(this.beforeFull ? [tableId(this.table)] : []), ...(filter?.values ?? [])];
    // The page's ids are chosen first (once: MATERIALIZED) and only those rows are fetched, each by its
    // key (OFFSET 0 keeps the planner from flattening the lookup into a join it may order badly — with a
    // change table's stale statistics it re-ran the page for every change row, 10k rows ~10 s) and turned
    // into JSON: a large transaction read in pages must not pay for every one of its rows on every page.
    this.batchSql = `
      WITH s AS MATERIALIZED (SELECT COALESCE($2::pg_snapshot, pg_current_snapshot()) AS cur, $1::pg_snapshot AS prev, $5::text AS salt,
                                     current_setting('track_commit_timestamp')::bool AS commit_ts),
      page AS MATERIALIZED (
        SELECT c.change_id FROM ${this.changeTable} c, s
        WHERE pg_visible_in_snapshot(c.txid, s.cur) AND NOT pg_visible_in_snapshot(c.txid, s.prev)
          AND c.change_id > $3
        ORDER BY c.change_id
        LIMIT $4)
      SELECT s.cur::text AS cur, b.*
      FROM s LEFT JOIN LATERAL (
        SELECT c.change_id, c.action, c.txid::text AS txid, c.schema_version,
               -- the source commit time when PostgreSQL tracks it (latency is measured from commit), else the statement's
               extract(epoch FROM COALESCE(CASE WHEN s.commit_ts THEN pg_xact_commit_timestamp((c.txid::text::bigint % 4294967296)::text::xid) END,
                                           c.captured_at))::float8 * 1000 AS captured_ms,
               ${rowJson('c', captured.columns, this.masked, 's.salt', captured.json)} AS row,
               ${rowJson('c', key)} AS key,
               ${this.beforeFull ? `CASE WHEN bi.image IS NOT NULL THEN ${rowJson('bb', captured.columns, this.masked, 's.salt', captured.json)} END` : 'NULL::text'} AS before,
               ${filter ? filter.sql : 'true'} AS passes
        FROM page p CROSS JOIN LATERAL (SELECT * FROM ${this.changeTable} x WHERE x.change_id = p.change_id OFFSET 0) c
        ${this.beforeFull ? beforeImageJoin(this.changeTable, '$6') : ''}
        ORDER BY p.change_id) b ON true`;
    return captured;
  }

  /** One page of the batch after `position.prev`; `position.cur` pins the batch's snapshot across pages. */
  async readPage(client: pg.Client, position: Position, pageSize: number, cur: string | null = position.cur): Promise<Page> {
    if (!this.captured) throw new Error('ChangeReader.refresh must run before readPage');
    const { rows } = await client.query<{ cur: string; change_id: number | null; action: string; txid: string; schema_version: number | null; captured_ms: number; row: string; key: string; before: string | null; passes: boolean }>(
      this.batchSql,
      [position.prev, cur, position.lastChangeId, pageSize, this.salt, ...this.extraParams],
    );
    const changes: ChangeRow[] = [];
    for (const r of rows) {
      if (r.change_id === null) continue;
      changes.push({ changeId: r.change_id, action: r.action, txid: r.txid, capturedMs: r.captured_ms, row: r.row, key: r.key, schemaVersion: r.schema_version ?? this.schemaVersion, ...(r.before === null ? {} : { before: r.before }), ...(r.passes ? {} : { filteredOut: true }) });
    }
    await this.transactions?.plan(client, changes, position.lastChangeId);
    return { cur: rows[0]!.cur, changes };
  }

  /** True when a page holds rows written by a capture version newer than the columns this reader reads. */
  isStale(page: Page): boolean {
    return page.changes.some((c) => c.schemaVersion > this.schemaVersion);
  }

  /** Removes the change rows of every transaction visible in a checkpointed snapshot. */
  async cleanup(client: pg.Client, checkpoint: string): Promise<number> {
    const result = await client.query(this.cleanupSql, [checkpoint]);
    await this.transactions?.cleanup(client, checkpoint);
    if (this.beforeFull) await client.query(beforeImagesCleanupSql, [checkpoint, tableId(this.table)]);
    this.cleanedSinceVacuum += result.rowCount ?? 0;
    return result.rowCount ?? 0;
  }

  /**
   * Deleted change rows leave dead tuples; autovacuum may wait a minute or more, so after enough
   * cleanups the producer vacuums the (small) change table itself and its size stays bounded.
   * Must run outside a transaction.
   */
  async vacuumIfDue(client: pg.Client, threshold = 20_000): Promise<boolean> {
    if (this.cleanedSinceVacuum < threshold) return false;
    this.cleanedSinceVacuum = 0;
    await client.query(this.vacuumSql);
    return true;
  }
}
