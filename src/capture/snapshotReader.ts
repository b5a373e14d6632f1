import type pg from 'pg';
import { qualified, quoteIdent } from '../pg.js';
import type { CapturedColumns } from './changeReader.js';
import { rowJson } from './changeReader.js';
import type { FilterCondition } from '../config/schema.js';
import { filterSql } from './rowFilter.js';

export interface SnapshotRow {
  row: string;
  key: string;
}

/** Reads the source table in primary-key chunks, inside the caller's REPEATABLE READ transaction. */
export class SnapshotReader {
  private chunkSql = '';
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
    const keyCols = captured.key.map((k) => `t.${quoteIdent(k)}`).join(', ');
    const lastCols = captured.key.map((k) => `l.${quoteIdent(k)}`).join(', ');
    // A row comparison on the key columns walks the primary-key index from the last key on; the last
    // key travels as exact JSON text (an int8 near 2^63 survives). Rows the filter excludes are not read.
    const filter = this.filter.length > 0 ? filterSql(this.filter, 't', 4) : undefined;
    this.filterValues = filter?.values ?? [];
    this.chunkSql = `
      WITH p AS (SELECT $3::text AS salt)
      SELECT ${rowJson('t', captured.columns, this.masked, 'p.salt', captured.json)} AS row, ${rowJson('t', captured.key)} AS key
      FROM ${this.table} t, p
      WHERE ($1::json IS NULL
         OR (${keyCols}) > (SELECT ${lastCols} FROM json_populate_record(NULL::${this.table}, $1::json) l))
        ${filter ? `AND ${filter.sql}` : ''}
        ${this.predicate === null ? '' : `AND (${this.predicate})\n`}
      ORDER BY ${keyCols}
      LIMIT $2`;
  }

  async readChunk(client: pg.Client, lastKey: string | null, size: number): Promise<SnapshotRow[]> {
    const { rows } = await client.query<SnapshotRow>(this.chunkSql, [lastKey, size, this.salt, ...this.filterValues]);
    return rows;
  }

  async countRows(client: pg.Client): Promise<number> {
    const { rows } = await client.query<{ n: number }>(this.countSql);
    return Number(rows[0]!.n);
  }
}
