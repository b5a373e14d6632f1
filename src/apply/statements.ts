import type { TableShape } from '../capture/catalog.js';
import { keyMatch, keyObject, qualified, quoteIdent } from '../pg.js';

/** Set-based statements for one target table: a whole polled set is one DELETE and one upsert. */
export class TableStatements {
  readonly upsertSql: string;
  readonly deleteSql: string;
  /** Every key of the target table, for a truncate that clears one partition's keys. */
  readonly keysSql: string;
  /** Which of the given keys ($1, JSON rows) the target has. */
  readonly existingKeysSql: string;
  readonly key: string[];

  constructor(shape: TableShape) {
    this.key = shape.key;
    const table = qualified(shape.schema, shape.name);
    const cols = shape.columns.map(quoteIdent).join(', ');
    const key = shape.key.map(quoteIdent).join(', ');
    const updates = shape.columns.filter((c) => !shape.key.includes(c)).map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
    this.upsertSql = `INSERT INTO ${table} (${cols}) SELECT ${cols} FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb)
      ON CONFLICT (${key}) DO ${updates.length > 0 ? `UPDATE SET ${updates.join(', ')}` : 'NOTHING'}`;
    const match = keyMatch(shape.key, 't', 'k');
    this.keysSql = `SELECT ${keyObject(shape.key)} AS k FROM ${table}`;
    this.existingKeysSql = `SELECT ${keyObject(shape.key, 't')} AS k
      FROM ${table} t JOIN jsonb_populate_recordset(NULL::${table}, $1::jsonb) k ON ${match}`;
    this.deleteSql = `DELETE FROM ${table} t USING jsonb_populate_recordset(NULL::${table}, $1::jsonb) k WHERE ${match}`;
  }
}
