import type pg from 'pg';
import { qualified, quoteIdent } from '../pg.js';
import type { TableShape } from './catalog.js';

/** Reads the source table in primary-key chunks, inside the caller's REPEATABLE READ transaction. */
export class SnapshotReader {
  private readonly chunkSql: string;
  private readonly countSql: string;

  constructor(shape: TableShape) {
    const table = qualified(shape.schema, shape.name);
    const keyCols = shape.key.map((k) => `t.${quoteIdent(k)}`).join(', ');
    const lastCols = shape.key.map((k) => `l.${quoteIdent(k)}`).join(', ');
    // A row comparison on the key columns walks the primary-key index from the last key on.
    this.chunkSql = `
      SELECT to_jsonb(t) AS row FROM ${table} t
      WHERE $1::jsonb IS NULL
         OR (${keyCols}) > (SELECT ${lastCols} FROM jsonb_populate_record(NULL::${table}, $1::jsonb) l)
      ORDER BY ${keyCols}
      LIMIT $2`;
    this.countSql = `SELECT count(*)::bigint AS n FROM ${table}`;
  }

  async readChunk(client: pg.Client, lastKey: Record<string, unknown> | null, size: number): Promise<Record<string, unknown>[]> {
    const { rows } = await client.query<{ row: Record<string, unknown> }>(this.chunkSql, [lastKey === null ? null : JSON.stringify(lastKey), size]);
    return rows.map((r) => r.row);
  }

  async countRows(client: pg.Client): Promise<number> {
    const { rows } = await client.query<{ n: number }>(this.countSql);
    return Number(rows[0]!.n);
  }
}
