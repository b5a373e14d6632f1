import type pg from 'pg';
import { qualified, quoteIdent, withCatalogPath } from '../pg.js';
import type { ChangeRow } from '../contracts/envelope.js';
import { rowJson, type CapturedColumns } from './changeReader.js';
import type { Relation, RelationColumn, TupleValue } from './pgoutput.js';

/** A decoded row change waiting for its row text: the columns it carries (a TOASTed value left unchanged is not one). */
export interface LogicalChange {
  action: 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';
  lsn: bigint;
  xid: number;
  commitTimeMs: number;
  relation: Relation;
  /** The logical schema version of `relation` (logicalSchema.ts). */
  schemaVersion: number;
  values: TupleValue[];
}

const typeKey = (c: RelationColumn) => `${c.typeOid}/${c.typeMod}`;

/** json and jsonb: their text is read back as json, never through json_populate_record (a JSON null is not SQL NULL). */
const jsonTypes = new Set([114, 3802]);

/** A value's JSON as row_to_json writes it, from its text; undefined when that is not provably a function of the text alone. */
type LocalJson = (text: string) => string | undefined;
const jsonString: LocalJson = (text) => JSON.stringify(text);
/** row_to_json writes a number as its text when the text is a JSON number; NaN and ±Infinity go to the source. */
const jsonNumber: LocalJson = (text) => (/^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(text) ? text : undefined);
/**
 * Types whose row_to_json output is a fixed function of their text output, whatever the session's settings
 * (the property test logicalRowsLocal.test compares them byte for byte with the source's row_to_json).
 * Floats (extra_float_digits), times (DateStyle, TimeZone, IntervalStyle), bytea, money, arrays, enums,
 * domains and composites (their oids are not these) are read by the source as before.
 */
const localTypes = new Map<number, LocalJson>([
  [16, (text) => (text === 't' ? 'true' : text === 'f' ? 'false' : undefined)],
  [20, jsonNumber], [21, jsonNumber], [23, jsonNumber], [1700, jsonNumber],
  [19, jsonString], [25, jsonString], [26, jsonString], [1042, jsonString], [1043, jsonString], [2950, jsonString],
  // row_to_json writes a date as ISO: the text is that only under DateStyle ISO, and BC and infinities differ
  [1082, (text) => (/^[0-9]{4,}-[0-9]{2}-[0-9]{2}$/.test(text) ? JSON.stringify(text.trim()) : undefined)],
]);

/**
 * Turns pgoutput's text values into exactly the row text trigger capture publishes: the source itself
 * reads each value with its column type's input function (json_to_record) and writes it with
 * row_to_json, so no value passes through a JS number and every type family comes out the same.
 * The columns and types are the relation message's, not the table's now: a change written before a
 * DROP, RENAME or ALTER TYPE still reads as it was written (the schema change path, issue 22 item 6).
 * Rows are grouped by the columns they carry: an unchanged TOASTed column is left out of the row, so
 * the target keeps its value (apply writes only the columns a row carries).
 * A change whose carried columns are all of `localTypes` is written here instead, as row_to_json would
 * write it: no round trip to the source on the page's path.
 */
export class LogicalRows {
  private readonly sql = new Map<string, string>();
  /** `oid/typmod` → the type as format_type writes it, schema-qualified. */
  private readonly types = new Map<string, string>();

  constructor(
    private readonly key: string[],
    private readonly excluded: ReadonlySet<string>,
    private readonly masked: ReadonlySet<string>,
    private readonly salt: string,
  ) {}

  /** The captured columns a tuple carries, with their values (text or SQL NULL). */
  private carried(change: LogicalChange): { columns: RelationColumn[]; values: (string | null)[] } {
    const columns: RelationColumn[] = [];
    const values: (string | null)[] = [];
    change.relation.columns.forEach((col, i) => {
      const v = change.values[i];
      if (v === undefined || (v !== null && typeof v === 'object') || this.excluded.has(col.name)) return;
      // a key-only image (delete, replica identity default) carries NULL for the others: not their value
      if (v === null && change.action === 'DELETE' && !col.isKey && change.relation.replicaIdentity !== 'f') return;
      columns.push(col);
      values.push(v);
    });
    return { columns, values };
  }

  /**
   * The row and key text built here when every carried column's JSON is its text's (localTypes): no round
   * trip to the source. Undefined when one is not, or is masked (the source hashes it), or a key column is missing.
   */
  private local(columns: RelationColumn[], values: (string | null)[]): { row: string; key: string } | undefined {
    if (columns.length === 0) return undefined;
    const members: string[] = [];
    const byName = new Map<string, string>();
    for (const [i, col] of columns.entries()) {
      const v = values[i]!;
      const json = v === null ? 'null' : jsonTypes.has(col.typeOid) ? JSON.stringify(v) : localTypes.get(col.typeOid)?.(v);
      if (json === undefined || this.masked.has(col.name)) return undefined;
      // a json key would be embedded, not quoted: the source writes it
      if (!jsonTypes.has(col.typeOid)) byName.set(col.name, json);
      members.push(`${JSON.stringify(col.name)}:${json}`);
    }
    const key: string[] = [];
    for (const name of this.key) {
      const json = byName.get(name);
      if (json === undefined) return undefined;
      key.push(`${JSON.stringify(name)}:${json}`);
    }
    return { row: `{${members.join(',')}}`, key: `{${key.join(',')}}` };
  }

  /** Reads the names of types not seen yet (a DDL brings new ones); a type dropped since reads as text. */
  private async useTypes(client: pg.Client, columns: RelationColumn[]): Promise<void> {
    const missing = [...new Map(columns.filter((c) => !this.types.has(typeKey(c))).map((c) => [typeKey(c), c])).values()];
    if (missing.length === 0) return;
    const { rows } = await withCatalogPath(client, () => client.query<{ t: string | null }>(
      'SELECT (SELECT format_type(u.oid, u.mod) FROM pg_type WHERE pg_type.oid = u.oid) AS t FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY u(oid, mod, n) ORDER BY u.n',
      [missing.map((c) => c.typeOid), missing.map((c) => c.typeMod)],
    ));
    missing.forEach((c, i) => this.types.set(typeKey(c), rows[i]?.t ?? 'text'));
  }

  private statement(columns: RelationColumn[]): { id: string; sql: string } {
    const id = JSON.stringify(columns.map((c) => [c.name, typeKey(c)]));
    let sql = this.sql.get(id);
    if (!sql) {
      const names = columns.map((c) => c.name);
      const json = new Set(columns.filter((c) => jsonTypes.has(c.typeOid)).map((c) => c.name));
      // json's text is taken as text, then read as json: never through jsonb nor a JSON null as SQL NULL
      const defs = columns.map((c) => `${quoteIdent(c.name)} ${json.has(c.name) ? 'text' : this.types.get(typeKey(c))!}`);
      const values = names.map((c) => (json.has(c) ? `p.${quoteIdent(c)}::json AS ${quoteIdent(c)}` : `p.${quoteIdent(c)}`));
      sql = `SELECT ${rowJson('q', names, this.masked, 's.salt', json)} AS row, ${rowJson('q', this.key)} AS key
             FROM json_array_elements($1::json) WITH ORDINALITY e(v, n)
                  CROSS JOIN LATERAL json_to_record(e.v) AS p(${defs.join(', ') || 'pgtunnel_none text'})
                  CROSS JOIN LATERAL (SELECT ${values.join(', ') || 'NULL AS pgtunnel_none'}) q
                  CROSS JOIN (SELECT $2::text AS salt) s
             ORDER BY e.n`;
      if (this.sql.size > 64) this.sql.clear(); // column subsets are few; never an unbounded cache
      this.sql.set(id, sql);
    }
    return { id, sql };
  }

  /** The changes as change rows (change id = LSN, txid = xid), in their order. */
  async rows(client: pg.Client, changes: LogicalChange[]): Promise<ChangeRow[]> {
    const out: ChangeRow[] = changes.map((c) => ({ changeId: c.lsn.toString(), action: c.action, txid: String(c.xid), capturedMs: c.commitTimeMs, row: '{}', key: '{}', schemaVersion: c.schemaVersion }));
    const groups = new Map<string, { sql: string; at: number[]; objects: string[] }>();
    for (const [i, change] of changes.entries()) {
      if (change.action === 'TRUNCATE') continue;
      const { columns, values } = this.carried(change);
      const local = this.local(columns, values);
      if (local) {
        out[i]!.row = local.row;
        out[i]!.key = local.key;
        continue;
      }
      await this.useTypes(client, columns);
      const { id, sql } = this.statement(columns);
      let g = groups.get(id);
      if (!g) groups.set(id, (g = { sql, at: [], objects: [] }));
      g.at.push(i);
      g.objects.push(`{${columns.map((c, j) => `${JSON.stringify(c.name)}:${values[j] === null ? 'null' : JSON.stringify(values[j])}`).join(',')}}`);
    }
    for (const g of groups.values()) {
      const { rows } = await client.query<{ row: string; key: string }>(g.sql, [`[${g.objects.join(',')}]`, this.salt]);
      rows.forEach((r, j) => {
        const row = out[g.at[j]!]!;
        row.row = r.row;
        row.key = r.key;
      });
    }
    return out;
  }
}

/**
 * Logical capture's captured columns as the catalog has them now (the snapshot's): the source table's own,
 * less the excluded ones (no change table stands between); `schemaVersion` from logicalSchema.ts.
 */
export async function logicalColumns(client: pg.Client, schema: string, name: string, key: string[], exclude: string[], schemaVersion: number): Promise<CapturedColumns> {
  const { rows } = await client.query<{ columns: string[]; json: string[] }>(
    `SELECT ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
                    AND NOT attname = ANY ($2::text[]) ORDER BY attnum) AS columns,
            ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
                    AND atttypid IN ('json'::regtype, 'jsonb'::regtype)) AS json`,
    [qualified(schema, name), exclude],
  );
  return { columns: rows[0]!.columns, key, schemaVersion, json: new Set(rows[0]!.json) };
}
