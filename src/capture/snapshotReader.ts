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

/** Reads the source table in primary-key chunks, inside the caller's REPEATABLE READ transaction. */
export class SnapshotReader {
  private chunkSql = '';
  private copySql = '';
  private readonly countSql: string;
  private readonly table: string;

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
    this.chunkSql = this.chunkQuery(captured, { lastKey: '$1', limit: '$2', salt: '$3' }, filter?.sql);
    this.copySql = this.chunkQuery(captured, copyParams);
  }

  /** Whether chunks can leave as COPY bytes; a row filter's typed parameters need the object path. */
  get bytesPath(): boolean {
    return this.filter.length === 0;
  }

  private chunkQuery(captured: CapturedColumns, p: { lastKey: string; limit: string; salt: string }, filter?: string): string {
    const keyCols = captured.key.map((k) => `t.${quoteIdent(k)}`).join(', ');
    const lastCols = captured.key.map((k) => `l.${quoteIdent(k)}`).join(', ');
    // A row comparison on the key columns walks the primary-key index from the last key on; the last
    // key travels as exact JSON text (an int8 near 2^63 survives).
    return `
      WITH p AS (SELECT ${p.salt}::text AS salt)
      SELECT ${rowJson('t', captured.key)} AS key, ${rowJson('t', captured.columns, this.masked, 'p.salt', captured.json)} AS row
      FROM ${this.table} t, p
      WHERE (${p.lastKey}::json IS NULL
         OR (${keyCols}) > (SELECT ${lastCols} FROM json_populate_record(NULL::${this.table}, ${p.lastKey}::json) l))
        ${filter ? `AND ${filter}` : ''}
        ${this.predicate === null ? '' : `AND (${this.predicate})\n`}
      ORDER BY ${keyCols}
      LIMIT ${p.limit}`;
  }

  async readChunk(client: pg.Client, lastKey: string | null, size: number): Promise<SnapshotRow[]> {
    const { rows } = await client.query<SnapshotRow>(this.chunkSql, [lastKey, size, this.salt, ...this.filterValues]);
    return rows;
  }

  /** A chunk as binary COPY bytes: per row the key's text (field 0) and the row's (field 1), in key order. */
  async readChunkBytes(client: pg.Client, lastKey: string | null, size: number): Promise<CopyRows> {
    if (!this.bytesPath) throw new Error('a filtered snapshot is read as row objects');
    await client.query(copySettings, [lastKey, size, this.salt]);
    return readCopyRows(client, this.copySql, 2);
  }

  async countRows(client: pg.Client): Promise<number> {
    const { rows } = await client.query<{ n: number }>(this.countSql);
    return Number(rows[0]!.n);
  }
}
