import type pg from 'pg';
import { qualified, quoteIdent } from '../pg.js';
import type { CapturedColumns } from './changeReader.js';
import { rowJson } from './changeReader.js';
import type { FilterCondition } from '../config/schema.js';
import { filterSql } from './rowFilter.js';
import { readCopyRows, type CopyRows } from './copyRows.js';

/**
 * COPY takes no bind parameters: the byte path's values reach its query as transaction-local settings set
 * through `$n` parameters, so no value is ever written into SQL text.
 */
const copySettings = `SELECT set_config('pgtunnel.snapshot_last_key', coalesce($1::text, ''), true),
  set_config('pgtunnel.snapshot_limit', $2::text, true), set_config('pgtunnel.snapshot_salt', $3::text, true)`;
const copyParams = {
  lastKey: "nullif(current_setting('pgtunnel.snapshot_last_key'), '')",
  limit: "current_setting('pgtunnel.snapshot_limit')::bigint",
  salt: "current_setting('pgtunnel.snapshot_salt')",
};

export interface SnapshotRow {
  row: string;
  key: string;
}

/**
 * How a chunk's REPEATABLE READ transaction begins: the tables it reads are locked before its first query
 * takes the snapshot. A table rewrite (ALTER COLUMN … TYPE, on the source table and by sync_capture on the
 * change table) that commits after the snapshot leaves every row of the table invisible to it: a chunk read
 * behind one found the table empty and ended the snapshot. Holding the lock first, the rewrite is either in
 * the snapshot or waits for the chunk (as it already waited for the chunk's reads).
 */
export function chunkTransaction(tables: string[]): string {
  return `BEGIN ISOLATION LEVEL REPEATABLE READ; LOCK TABLE ${tables.map((t) => `ONLY ${t}`).join(', ')} IN ACCESS SHARE MODE`;
}

/** Reads the source table in primary-key chunks, inside the caller's REPEATABLE READ transaction. */
export class SnapshotReader {
  /** Each query twice: from the table's first key, and after a last key (see chunkQuery). */
  private chunkSql = { first: '', after: '' };
  private copySql = { first: '', after: '' };
  private readonly countSql: string;
  /** The source table, qualified and quoted. */
  readonly table: string;

  private filterValues: unknown[] = [];

  /**
   * `predicate`: an incremental snapshot's range, the operator's SQL checked by `checkPredicate` (signals.ts),
   * never data; it narrows the rows read and counted, beside the row filter.
   */
  constructor(schema: string, name: string, private readonly masked: ReadonlySet<string> = new Set(), private readonly salt = '', private readonly filter: FilterCondition[] = [], private readonly predicate: string | null = null) {
    this.table = qualified(schema, name);
    this.countSql = `SELECT count(*)::bigint AS n FROM ${this.table}${predicate === null ? '' : `\n      WHERE (${predicate})\n`}`;
  }

  /** The snapshot reads exactly the captured columns, as the change reader does. */
  use(captured: CapturedColumns): void {
    // Rows the filter excludes are not read; its values are `$4…` parameters (the object path only).
    const filter = this.filter.length > 0 ? filterSql(this.filter, 't', 4) : undefined;
    this.filterValues = filter?.values ?? [];
    const params = { lastKey: '$1', limit: '$2', salt: '$3' };
    this.chunkSql = { first: this.chunkQuery(captured, params, false, filter?.sql), after: this.chunkQuery(captured, params, true, filter?.sql) };
    this.copySql = { first: this.chunkQuery(captured, copyParams, false), after: this.chunkQuery(captured, copyParams, true) };
  }

  /** Whether chunks can leave as COPY bytes; a row filter's typed parameters need the object path. */
  get bytesPath(): boolean {
    return this.filter.length === 0;
  }

  /**
   * A row comparison on the key columns walks the primary-key index from the last key on; the last key
   * travels as exact JSON text (an int8 near 2^63 survives). The first chunk has a query of its own (its
   * `last IS NULL` a one-time filter): `last IS NULL OR key > last` is no index condition when `last` is no
   * constant at planning (the byte path's settings never are), so every chunk filtered every row before its
   * last key, a quadratic snapshot (500k rows skipped in 1.3 s for one piece in the middle of 1M).
   */
  private chunkQuery(captured: CapturedColumns, p: { lastKey: string; limit: string; salt: string }, after: boolean, filter?: string): string {
    const keyCols = captured.key.map((k) => `t.${quoteIdent(k)}`).join(', ');
    const lastCols = captured.key.map((k) => `l.${quoteIdent(k)}`).join(', ');
    return `
      WITH p AS (SELECT ${p.salt}::text AS salt)
      SELECT ${rowJson('t', captured.key)} AS key, ${rowJson('t', captured.columns, this.masked, 'p.salt', captured.json)} AS row
      FROM ${this.table} t, p
      WHERE ${after ? `(${keyCols}) > (SELECT ${lastCols} FROM json_populate_record(NULL::${this.table}, ${p.lastKey}::json) l)` : `${p.lastKey}::json IS NULL`}
        ${filter ? `AND ${filter}` : ''}
        ${this.predicate === null ? '' : `AND (${this.predicate})\n`}
      ORDER BY ${keyCols}
      LIMIT ${p.limit}`;
  }

  async readChunk(client: pg.Client, lastKey: string | null, size: number): Promise<SnapshotRow[]> {
    const { rows } = await client.query<SnapshotRow>(lastKey === null ? this.chunkSql.first : this.chunkSql.after, [lastKey, size, this.salt, ...this.filterValues]);
    return rows;
  }

  /** A chunk as binary COPY bytes: per row the key's text (field 0) and the row's (field 1), in key order. */
  async readChunkBytes(client: pg.Client, lastKey: string | null, size: number): Promise<CopyRows> {
    if (!this.bytesPath) throw new Error('a filtered snapshot is read as row objects');
    await client.query(copySettings, [lastKey, size, this.salt]);
    return readCopyRows(client, lastKey === null ? this.copySql.first : this.copySql.after, 2);
  }

  async countRows(client: pg.Client): Promise<number> {
    const { rows } = await client.query<{ n: number }>(this.countSql);
    return Number(rows[0]!.n);
  }
}
