import type pg from 'pg';
import type { TableConfig, TunnelConfig } from '../config/load.js';
import { describeTable } from '../capture/catalog.js';
import { keyObject, qualified, quoteIdent, withClient } from '../pg.js';

export interface TableDifference {
  table: string;
  sourceRows: number;
  targetRows: number;
  /** Keys whose row differs, is missing in the target, or is extra in the target (at most `limit`). */
  differingKeys: string[];
  truncated: boolean;
  /** Every differing key, for repair. */
  allKeys: string[];
}

interface Bucket {
  rows: number;
  hash: string;
}

/**
 * Chunked comparison computed inside each database: rows are hashed and summed per key-range bucket,
 * and only buckets that differ are listed key by key. Column order does not matter (jsonb hashes).
 */
class TableHasher {
  private readonly bucketExpr: string;
  private readonly keyExpr: string;
  private readonly table: string;

  constructor(schema: string, name: string, key: string[], integerKey: boolean, private readonly width = 1000) {
    this.table = qualified(schema, name);
    this.keyExpr = `${keyObject(key, 't')}::text`;
    this.bucketExpr = integerKey ? `(t.${quoteIdent(key[0]!)} / ${this.width})::bigint` : `abs(hashtext(${this.keyExpr}) % 1024)::bigint`;
  }

  async buckets(client: pg.Client): Promise<Map<string, Bucket>> {
    const { rows } = await client.query<{ b: string; n: number; h: string }>(
      `SELECT ${this.bucketExpr}::text AS b, count(*)::int AS n,
              sum(('x' || substr(md5(to_jsonb(t)::text), 1, 15))::bit(60)::bigint::numeric)::text AS h
       FROM ${this.table} t GROUP BY 1`,
    );
    return new Map(rows.map((r) => [r.b, { rows: r.n, hash: r.h }]));
  }

  async rowsIn(client: pg.Client, buckets: string[]): Promise<Map<string, string>> {
    const { rows } = await client.query<{ k: string; h: string }>(
      `SELECT ${this.keyExpr} AS k, md5(to_jsonb(t)::text) AS h FROM ${this.table} t WHERE ${this.bucketExpr}::text = ANY($1::text[])`,
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
      await describeTable(target, { ...table, key: shape.key }, 'target');
      const hasher = new TableHasher(table.schema, table.name, shape.key, await isIntegerKey(source, table, shape.key));
      const [s, t] = await Promise.all([hasher.buckets(source), hasher.buckets(target)]);
      const differing = [...new Set([...s.keys(), ...t.keys()])].filter((b) => s.get(b)?.hash !== t.get(b)?.hash || s.get(b)?.rows !== t.get(b)?.rows);
      const keys: string[] = [];
      if (differing.length > 0) {
        const [sr, tr] = await Promise.all([hasher.rowsIn(source, differing), hasher.rowsIn(target, differing)]);
        for (const k of new Set([...sr.keys(), ...tr.keys()])) if (sr.get(k) !== tr.get(k)) keys.push(k);
      }
      keys.sort();
      const sum = (m: Map<string, Bucket>) => [...m.values()].reduce((n, b) => n + b.rows, 0);
      return { table: `${table.schema}.${table.name}`, sourceRows: sum(s), targetRows: sum(t), differingKeys: keys.slice(0, limit), truncated: keys.length > limit, allKeys: keys };
    }),
  );
}
