import type pg from 'pg';
import { qualified, quoteIdent, quoteLiteral } from '../pg.js';
import type { ChangeRow } from '../contracts/envelope.js';
import { rowJson, type CapturedColumns } from './changeReader.js';
import type { Relation, TupleValue } from './pgoutput.js';

/** A decoded row change waiting for its row text: the columns it carries (a TOASTed value left unchanged is not one). */
export interface LogicalChange {
  action: 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';
  lsn: bigint;
  xid: number;
  commitTimeMs: number;
  relation: Relation;
  values: TupleValue[];
}

/** json and jsonb: their text is read back as json, never through json_populate_record (a JSON null is not SQL NULL). */
const jsonTypes = new Set([114, 3802]);

/**
 * Turns pgoutput's text values into exactly the row text trigger capture publishes: the source itself
 * reads each value with its column type's input function (json_populate_record) and writes it with
 * row_to_json, so no value passes through a JS number and every type family comes out the same.
 * Rows are grouped by the columns they carry: an unchanged TOASTed column is left out of the row, so
 * the target keeps its value (apply writes only the columns a row carries).
 */
export class LogicalRows {
  private readonly sql = new Map<string, string>();
  private readonly table: string;

  constructor(
    schema: string,
    name: string,
    private readonly key: string[],
    private readonly excluded: ReadonlySet<string>,
    private readonly masked: ReadonlySet<string>,
    private readonly salt: string,
  ) {
    this.table = qualified(schema, name);
  }

  /** The captured columns a tuple carries, and the JSON object of their text (json values embedded). */
  private carried(change: LogicalChange): { columns: string[]; json: Set<string>; object: string } {
    const columns: string[] = [];
    const json = new Set<string>();
    const members: string[] = [];
    change.relation.columns.forEach((col, i) => {
      const v = change.values[i];
      if (v === undefined || (v !== null && typeof v === 'object') || this.excluded.has(col.name)) return;
      // a key-only image (delete, replica identity default) carries NULL for the others: not their value
      if (v === null && change.action === 'DELETE' && !col.isKey && change.relation.replicaIdentity !== 'f') return;
      columns.push(col.name);
      const isJson = jsonTypes.has(col.typeOid);
      if (isJson) json.add(col.name);
      members.push(`${JSON.stringify(col.name)}:${v === null ? 'null' : JSON.stringify(v)}`);
    });
    return { columns, json, object: `{${members.join(',')}}` };
  }

  private statement(columns: string[], json: Set<string>): string {
    const id = JSON.stringify(columns);
    let sql = this.sql.get(id);
    if (!sql) {
      const values = columns.map((c) => (json.has(c) ? `(e.v ->> ${quoteLiteral(c)})::json AS ${quoteIdent(c)}` : `p.${quoteIdent(c)}`));
      sql = `SELECT ${rowJson('q', columns, this.masked, 's.salt', json)} AS row, ${rowJson('q', this.key)} AS key
             FROM json_array_elements($1::json) WITH ORDINALITY e(v, n)
                  CROSS JOIN LATERAL json_populate_record(NULL::${this.table}, e.v) p
                  CROSS JOIN LATERAL (SELECT ${values.join(', ')}) q
                  CROSS JOIN (SELECT $2::text AS salt) s
             ORDER BY e.n`;
      if (this.sql.size > 64) this.sql.clear(); // column subsets are few; never an unbounded cache
      this.sql.set(id, sql);
    }
    return sql;
  }

  /** The changes as change rows (change id = LSN, txid = xid), in their order. */
  async rows(client: pg.Client, changes: LogicalChange[], schemaVersion: number): Promise<ChangeRow[]> {
    const out: ChangeRow[] = changes.map((c) => ({ changeId: c.lsn.toString(), action: c.action, txid: String(c.xid), capturedMs: c.commitTimeMs, row: '{}', key: '{}', schemaVersion }));
    const groups = new Map<string, { columns: string[]; json: Set<string>; at: number[]; objects: string[] }>();
    changes.forEach((change, i) => {
      if (change.action === 'TRUNCATE') return;
      const { columns, json, object } = this.carried(change);
      const id = JSON.stringify(columns);
      let g = groups.get(id);
      if (!g) groups.set(id, (g = { columns, json, at: [], objects: [] }));
      g.at.push(i);
      g.objects.push(object);
    });
    for (const g of groups.values()) {
      const { rows } = await client.query<{ row: string; key: string }>(this.statement(g.columns, g.json), [`[${g.objects.join(',')}]`, this.salt]);
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
 * Logical capture's captured columns: the source table's own, less the excluded ones (no change table
 * stands between). Version 1: schema changes by relation messages are issue 22 item 6.
 */
export async function logicalColumns(client: pg.Client, schema: string, name: string, key: string[], exclude: string[]): Promise<CapturedColumns> {
  const { rows } = await client.query<{ columns: string[]; json: string[] }>(
    `SELECT ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
                    AND NOT attname = ANY ($2::text[]) ORDER BY attnum) AS columns,
            ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
                    AND atttypid IN ('json'::regtype, 'jsonb'::regtype)) AS json`,
    [qualified(schema, name), exclude],
  );
  return { columns: rows[0]!.columns, key, schemaVersion: 1, json: new Set(rows[0]!.json) };
}
