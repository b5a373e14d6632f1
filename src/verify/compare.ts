import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { describeTable } from '../capture/catalog.js';
import { keyObject, qualified, quoteIdent, withClient } from '../pg.js';
import { rowJson } from '../capture/changeReader.js';

export interface TableDifference {
  table: string;
  sourceRows: number;
  targetRows: number;
  /** Keys whose row differs, is missing in the target, or is extra in the target (at most `limit`). */
  differingKeys: string[];
  truncated: boolean;
  /** Every differing key, for repair. */
  allKeys: string[];
  /** Source columns (not excluded) the target table lacks: their values can never be equal there. */
  missingColumns: string[];
}

interface Bucket {
  rows: number;
  hash: string;
}

/**
 * Chunked comparison computed inside each database: rows are hashed and summed per key-range bucket,
 * and only buckets that differ are listed key by key. Columns are compared by name.
 */
class TableHasher {
  private readonly bucketExpr: string;
  private readonly keyExpr: string;
  private readonly rowExpr: string;
  private readonly table: string;

  constructor(schema: string, name: string, key: string[], columns: string[], json: Set<string>, integerKey: boolean, private readonly width = 1000) {
    this.table = qualified(schema, name);
    this.keyExpr = `${keyObject(key, 't')}::text`;
    // the exact text of the compared columns (row_to_json keeps -0, json text and every digit)
    this.rowExpr = rowJson('t', columns, new Set(), 'NULL', json);
    this.bucketExpr = integerKey ? `(t.${quoteIdent(key[0]!)} / ${this.width})::bigint` : `abs(hashtext(${this.keyExpr}) % 1024)::bigint`;
  }

  async buckets(client: pg.Client): Promise<Map<string, Bucket>> {
    const { rows } = await client.query<{ b: string; n: number; h: string }>(
      `SELECT ${this.bucketExpr}::text AS b, count(*)::int AS n,
              sum(('x' || substr(md5(${this.rowExpr}), 1, 15))::bit(60)::bigint::numeric)::text AS h
       FROM ${this.table} t GROUP BY 1`,
    );
    return new Map(rows.map((r) => [r.b, { rows: r.n, hash: r.h }]));
  }

  async rowsIn(client: pg.Client, buckets: string[]): Promise<Map<string, string>> {
    const { rows } = await client.query<{ k: string; h: string }>(
      `SELECT ${this.keyExpr} AS k, md5(${this.rowExpr}) AS h FROM ${this.table} t WHERE ${this.bucketExpr}::text = ANY($1::text[])`,
      [buckets],
    );
    return new Map(rows.map((r) => [r.k, r.h]));
  }
}

async function isIntegerKey(client: pg.Client, table: TableConfig, key: string[]): Promise<boolean> {
  if (key.length !== 1) return false;
  const { rows } = await client.query<{ t: string }>(
    'SELECT atttypid::regtype::text AS t FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2',
    [qualified(table.schema, table.name), key[0]],
  );
  return ['smallint', 'integer', 'bigint'].includes(rows[0]?.t ?? '');
}

export async function compareTable(config: TunnelConfig, table: TableConfig, limit = 100): Promise<TableDifference> {
  return withClient(config.sourceUrl, 'source', (source) =>
    withClient(config.targetUrl, 'target', async (target) => {
      const shape = await describeTable(source, table, 'source');
      const targetShape = await describeTable(target, { ...table, key: shape.key }, 'target');
      // Compared: the source's columns the target has, less excluded and masked ones (the target holds hashes).
      const skipped = new Set([...table.exclude, ...Object.keys(table.mask)]);
      const columns = shape.columns.filter((c) => targetShape.columns.includes(c) && !skipped.has(c));
      const missingColumns = shape.columns.filter((c) => !targetShape.columns.includes(c) && !table.exclude.includes(c));
      const json = new Set(columns.filter((c) => /^jsonb?$/.test(shape.types[c] ?? '')));
      const hasher = new TableHasher(table.schema, table.name, shape.key, columns, json, await isIntegerKey(source, table, shape.key));
      for (const c of [source, target]) await c.query("SET TimeZone TO 'UTC'");
      const [s, t] = await Promise.all([hasher.buckets(source), hasher.buckets(target)]);
      const differing = [...new Set([...s.keys(), ...t.keys()])].filter((b) => s.get(b)?.hash !== t.get(b)?.hash || s.get(b)?.rows !== t.get(b)?.rows);
      const keys: string[] = [];
      if (differing.length > 0) {
        const [sr, tr] = await Promise.all([hasher.rowsIn(source, differing), hasher.rowsIn(target, differing)]);
        for (const k of new Set([...sr.keys(), ...tr.keys()])) if (sr.get(k) !== tr.get(k)) keys.push(k);
      }
      keys.sort();
      const sum = (m: Map<string, Bucket>) => [...m.values()].reduce((n, b) => n + b.rows, 0);
      return { table: `${table.schema}.${table.name}`, sourceRows: sum(s), targetRows: sum(t), differingKeys: keys.slice(0, limit), truncated: keys.length > limit, allKeys: keys, missingColumns };
    }),
  );
}
