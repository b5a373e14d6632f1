import type pg from 'pg';
import type { TableShape } from '../capture/catalog.js';
import { rowJson } from '../capture/changeReader.js';
import { keyMatch, qualified, quoteIdent } from '../pg.js';
import { keyOfImage, type RowImage } from '../transport/envelope.js';

/** One statement's parameter stays under this many bytes: a poll of wide rows is written in parts. */
const maxParamBytes = 4 * 1024 * 1024;

/** `[row,row,…]` from exact row texts, cut into parts of at most maxParamBytes. */
export function jsonArrays(texts: string[], limit = maxParamBytes): string[] {
  const out: string[] = [];
  let part: string[] = [];
  let bytes = 2;
  for (const t of texts) {
    const size = Buffer.byteLength(t) + 1;
    if (part.length > 0 && bytes + size > limit) {
      out.push(`[${part.join(',')}]`);
      part = [];
      bytes = 2;
    }
    part.push(t);
    bytes += size;
  }
  if (part.length > 0) out.push(`[${part.join(',')}]`);
  return out;
}

/**
 * Set-based statements for one target table. Columns map by name: an upsert writes exactly the columns its
 * rows carry that the target has and may write (never a generated column, never a column only the target
 * has), so a column added on the source and not yet on the target is skipped, not an error. Rows travel as
 * their exact JSON text into json_to_recordset: no value passes through a JS number.
 */
export class TableStatements {
  /** Every key of the target table, for a truncate that clears one partition's keys. */
  readonly keysSql: string;
  /** Which of the given keys ($1, JSON key objects) the target has. */
  readonly existingKeysSql: string;
  readonly deleteSql: string;
  readonly key: string[];
  private readonly table: string;
  private readonly writable: Set<string>;
  private readonly upserts = new Map<string, string>();

  constructor(private readonly shape: TableShape) {
    this.key = shape.key;
    this.table = qualified(shape.schema, shape.name);
    this.writable = new Set(shape.columns.filter((c) => !shape.generated.includes(c)));
    const match = keyMatch(shape.key, 't', 'k');
    this.keysSql = `SELECT ${rowJson('t', shape.key)} AS k FROM ${this.table} t`;
    this.existingKeysSql = `SELECT ${rowJson('t', shape.key)} AS k
      FROM ${this.table} t JOIN json_populate_recordset(NULL::${this.table}, $1::json) k ON ${match}`;
    this.deleteSql = `DELETE FROM ${this.table} t USING json_populate_recordset(NULL::${this.table}, $1::json) k WHERE ${match}`;
  }

  /** Column → SQL type in the target. */
  get types(): Record<string, string> {
    return this.shape.types;
  }

  /** The upsert for rows carrying exactly `columns` (already limited to writable target columns). */
  private upsertSql(columns: string[]): string {
    const signature = columns.join('\u0000');
    let sql = this.upserts.get(signature);
    if (sql === undefined) {
      const cols = columns.map(quoteIdent).join(', ');
      const updates = columns.filter((c) => !this.key.includes(c)).map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
      const overriding = columns.some((c) => this.shape.identityAlways.includes(c)) ? ' OVERRIDING SYSTEM VALUE' : '';
      // json and jsonb arrive as JSON strings of their text (so a JSON null stays apart from SQL NULL)
      const isJson = (c: string) => /^jsonb?$/.test(this.shape.types[c] ?? '');
      const defs = columns.map((c) => `${quoteIdent(c)} ${isJson(c) ? 'text' : this.shape.types[c]}`).join(', ');
      const values = columns.map((c) => (isJson(c) ? `r.${quoteIdent(c)}::${this.shape.types[c]}` : `r.${quoteIdent(c)}`)).join(', ');
      sql = `INSERT INTO ${this.table} (${cols})${overriding} SELECT ${values} FROM json_to_recordset($1::json) AS r(${defs})
        ON CONFLICT (${this.key.map(quoteIdent).join(', ')}) DO ${updates.length > 0 ? `UPDATE SET ${updates.join(', ')}` : 'NOTHING'}`;
      this.upserts.set(signature, sql);
    }
    return sql;
  }

  /** Target columns a row writes, in the target's column order. */
  columnsOf(row: RowImage): string[] {
    return this.shape.columns.filter((c) => this.writable.has(c) && row.values.has(c));
  }

  /** Source columns a row carries that the target lacks (candidates for schema evolution). */
  unknownColumns(row: RowImage): string[] {
    return [...row.values.keys()].filter((c) => !this.shape.columns.includes(c));
  }

  async upsert(client: pg.Client, rows: RowImage[]): Promise<void> {
    const groups = new Map<string, { columns: string[]; texts: string[] }>();
    for (const row of rows) {
      const columns = this.columnsOf(row);
      const signature = columns.join('\u0000');
      let group = groups.get(signature);
      if (!group) groups.set(signature, (group = { columns, texts: [] }));
      group.texts.push(row.text);
    }
    for (const { columns, texts } of groups.values()) {
      const sql = this.upsertSql(columns);
      for (const part of jsonArrays(texts)) await client.query(sql, [part]);
    }
  }

  async delete(client: pg.Client, rows: RowImage[]): Promise<void> {
    for (const part of jsonArrays(rows.map((r) => keyOfImage(r, this.key)))) await client.query(this.deleteSql, [part]);
  }
}
