import type pg from 'pg';
import { sqlState } from '../errors.js';
import type { TableShape } from '../capture/catalog.js';
import { rowJson } from '../capture/changeReader.js';
import { keyMatch, qualified, quoteIdent } from '../pg.js';
import { keyOfImage, type RowImage } from '../contracts/envelope.js';
import { copyableColumns, copyIn, copyLine, type Staging } from './staging.js';
import { compositeKey } from '../names.js';
import { LruCache } from './lruCache.js';
import type { ScanTable } from '../contracts/envelopeScanner.js';

/** Cached upserts per table: column subsets beyond these are built again when met (a few µs each). */
export const upsertCacheSize = 64;

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
  /** The target row `t` whose key equals key object `k`'s. */
  private readonly match: string;
  private readonly writable: Set<string>;
  private readonly upserts = new LruCache<string, string>(upsertCacheSize);
  /** The staging table's columns: every writable one COPY can fill (a domain's NOT NULL, say, never reaches it). */
  private readonly stagedColumns: string[];

  constructor(private readonly shape: TableShape) {
    this.key = shape.key;
    this.table = qualified(shape.schema, shape.name);
    this.writable = new Set(shape.columns.filter((c) => !shape.generated.includes(c)));
    this.stagedColumns = shape.columns.filter((c) => this.writable.has(c) && copyableColumns(shape.types, [c]));
    const match = (this.match = keyMatch(shape.key, 't', 'k'));
    this.keysSql = `SELECT ${rowJson('t', shape.key)} AS k FROM ${this.table} t`;
    this.existingKeysSql = `SELECT ${rowJson('t', shape.key)} AS k
      FROM ${this.table} t JOIN json_populate_recordset(NULL::${this.table}, $1::json) k ON ${match}`;
    this.deleteSql = this.deleteOf(1);
  }

  /** Column → SQL type in the target. */
  get types(): Record<string, string> {
    return this.shape.types;
  }

  /** json and jsonb arrive as JSON strings of their text (so a JSON null stays apart from SQL NULL). */
  private isJson(c: string): boolean {
    return /^jsonb?$/.test(this.shape.types[c] ?? '');
  }

  /** `name type` of each column as rows carry it (json as text), for a record set or a staging table. */
  private defs(columns: string[]): string {
    return columns.map((c) => `${quoteIdent(c)} ${this.isJson(c) ? 'text' : this.shape.types[c]}`).join(', ');
  }

  /** INSERT of `columns` from `source` (aliased r); with `upsert`, an existing key's row is updated. */
  private insertSql(columns: string[], source: string, upsert: boolean): string {
    const cols = columns.map(quoteIdent).join(', ');
    const overriding = columns.some((c) => this.shape.identityAlways.includes(c)) ? ' OVERRIDING SYSTEM VALUE' : '';
    const values = columns.map((c) => (this.isJson(c) ? `r.${quoteIdent(c)}::${this.shape.types[c]}` : `r.${quoteIdent(c)}`)).join(', ');
    const updates = columns.filter((c) => !this.key.includes(c)).map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
    const conflict = upsert ? ` ON CONFLICT (${this.key.map(quoteIdent).join(', ')}) DO ${updates.length > 0 ? `UPDATE SET ${updates.join(', ')}` : 'NOTHING'}` : '';
    return `INSERT INTO ${this.table} (${cols})${overriding} SELECT ${values} FROM ${source}${conflict}`;
  }

  /** The upsert for rows carrying exactly `columns` (already limited to writable target columns). */
  private upsertSql(columns: string[]): string {
    return this.upserts.getOrMake(compositeKey(...columns), () => this.insertSql(columns, `json_to_recordset($1::json) AS r(${this.defs(columns)})`, true));
  }

  /** The upsert of rows carrying `columns` from JSON parameter `$param`, writing only when `gate` (SQL) holds: a CTE's part. */
  gatedUpsertSql(columns: string[], param: number, gate: string): string {
    return this.insertSql(columns, `json_to_recordset($${param}::json) AS r(${this.defs(columns)}) WHERE ${gate}`, true);
  }

  /** The delete of the keys in JSON parameter `$param` (key objects), only when `gate` (SQL) holds: a CTE's part. */
  gatedDeleteSql(param: number, gate: string): string {
    return `${this.deleteOf(param)} AND ${gate}`;
  }

  private deleteOf(param: number): string {
    return `DELETE FROM ${this.table} t USING json_populate_recordset(NULL::${this.table}, $${param}::json) k WHERE ${this.match}`;
  }

  /** What the byte scanner needs: the target's columns in order, which are written, which COPY fills as text. */
  scanTable(): ScanTable {
    const { columns, types, key } = this.shape;
    return { key, columns, types, writable: columns.map((c) => this.writable.has(c)), copyable: columns.map((c) => copyableColumns(types, [c])) };
  }

  /** The table's quoted name: the staging back-off's key. */
  get name(): string {
    return this.table;
  }

  /** COPY of `columns` straight into the table (rows the target is not expected to have). */
  copySql(columns: string[]): string {
    return `COPY ${this.table} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`;
  }

  /** How many upserts are cached (at most upsertCacheSize). */
  get cachedUpserts(): number {
    return this.upserts.size;
  }

  /** Target columns a row writes, in the target's column order. */
  columnsOf(row: RowImage): string[] {
    return this.shape.columns.filter((c) => this.writable.has(c) && row.values.has(c));
  }

  /** Source columns a row carries that the target lacks (candidates for schema evolution). */
  unknownColumns(row: RowImage): string[] {
    return [...row.values.keys()].filter((c) => !this.shape.columns.includes(c));
  }

  /**
   * Writes the rows: through COPY into a staging table and one set-based INSERT when every column has a
   * plain text form (json_to_recordset parses each row's JSON again in the server, ~3× the cost), else
   * as JSON. `creates`: every row comes from an insert or a snapshot read, so a plain INSERT is tried first.
   */
  async upsert(client: pg.Client, rows: RowImage[], staging?: Staging, creates = false): Promise<void> {
    const groups = new Map<string, { columns: string[]; rows: RowImage[] }>();
    for (const row of rows) {
      const columns = this.columnsOf(row);
      const signature = compositeKey(...columns);
      let group = groups.get(signature);
      if (!group) groups.set(signature, (group = { columns, rows: [] }));
      group.rows.push(row);
    }
    for (const { columns, rows: group } of groups.values()) {
      if (staging && copyableColumns(this.shape.types, columns)) {
        const lines = group.map((row) => copyLine(row, columns));
        if (lines.every((l) => l !== undefined) && (await this.viaStaging(client, staging, columns, lines as string[], creates))) continue;
      }
      const sql = this.upsertSql(columns);
      for (const part of jsonArrays(group.map((row) => row.text))) await client.query(sql, [part]);
    }
  }

  /** False when no staging table can be had (no TEMP privilege): the rows then go as JSON. */
  private async viaStaging(client: pg.Client, staging: Staging, columns: string[], lines: string[], creates: boolean): Promise<boolean> {
    // one staging table for every subset: the columns a row lacks stay NULL there and the INSERT skips them
    const stage = await staging.table(client, this.table, this.defs(this.stagedColumns));
    if (stage === undefined) return false;
    await copyIn(client, `COPY ${stage} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`, lines);
    if (creates && staging.tryPlainInsert(this.table)) {
      await client.query('SAVEPOINT pgtunnel_insert');
      try {
        await client.query(this.insertSql(columns, `${stage} r`, false));
        await client.query('RELEASE SAVEPOINT pgtunnel_insert');
        return true;
      } catch (err) {
        if (sqlState(err) !== '23505') throw err; // unique_violation: a key the target has
        await client.query('ROLLBACK TO SAVEPOINT pgtunnel_insert');
        staging.conflicted(this.table);
      }
    }
    await client.query(this.insertSql(columns, `${stage} r`, true));
    return true;
  }

  async delete(client: pg.Client, rows: RowImage[]): Promise<void> {
    for (const part of jsonArrays(rows.map((r) => keyOfImage(r, this.key)))) await client.query(this.deleteSql, [part]);
  }
}
