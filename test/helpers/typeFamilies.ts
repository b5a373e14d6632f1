import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import pg from 'pg';
import { query, tunnelDatabases, waitFor } from './services.js';
import { InProcessTunnel } from './inProcessTunnel.js';

/**
 * Every value exact: each family gets a source table with edge values, the target table is created by
 * autoCreate, and the tables' text must be equal after the snapshot and again after streamed updates.
 */
export interface Family {
  name: string;
  /** column definitions after `id <keyType> PRIMARY KEY` */
  columns: string;
  keyType?: string;
  /** setup run in the source before the table (types) */
  types?: string;
  /** rows as VALUES lists, the key first */
  rows: string[];
  /** an UPDATE (SET … ) applied to every row while streaming */
  update: string;
}

export const families: Family[] = [
  {
    name: 'numbers',
    keyType: 'bigint',
    columns: 'i2 smallint, i8 bigint, n numeric, n2 numeric(40,20), f4 real, f8 double precision, m money',
    rows: [
      "(9223372036854775807, 32767, -9223372036854775808, 'NaN', 12345678901234567890.12345678901234567890, 'Infinity', '-0', 12.34)",
      "(-9223372036854775807, -32768, 9007199254740993, 0.1000000000000000000000000000001, -0.00000000000000000001, 'NaN', '-Infinity', -1.5)",
      "(9007199254740993, 0, 1, 123456789012345678901234567890, 1, 1.17549435e-38, 2.2250738585072014e-308, 0)",
    ],
    update: "n = n * 3, f8 = CASE WHEN f8 = 'NaN' THEN 'Infinity' ELSE -0.0::float8 END, i8 = i8 / 2",
  },
  {
    name: 'time',
    columns: 'd date, ts timestamp, tstz timestamptz, t time, ttz timetz, iv interval',
    rows: [
      "(1, '2024-02-29', '2000-01-01 00:00:00.000001', 'infinity', '23:59:59.999999', '12:00:00+05:30', '1 year 2 mons 3 days 04:05:06.789012')",
      "(2, '-infinity', '-infinity', '1999-12-31 23:59:59.999999+14', '00:00', '00:00:00-12', '-1 day +00:00:00.000001')",
      "(3, '0044-03-15 BC', '294276-12-31 23:59:59.999999', '4713-11-24 00:00:00+00 BC', '24:00:00', '24:00:00-15:59', '178000000 years')",
    ],
    update: "ts = ts - interval '1 microsecond', iv = iv / 2, tstz = tstz + interval '1 microsecond'",
  },
  {
    name: 'text_and_json',
    keyType: 'text',
    columns: 'v varchar(10), c char(3), t text, j json, jb jsonb, b bytea',
    rows: [
      "('a''b\"c\\\\d', 'é', 'x', 'line1\nline2\ttab \\u0001 😀 𝄞', '{\"b\":1, \"a\":2, \"b\":3,  \"big\": 123456789012345678901234567890}', '{\"n\": 12345678901234567890.5, \"s\": \"\\u00e9\\n\"}', '\\x00ff10')",
      "('𝄞 key', NULL, 'ab ', repeat('toast ', 200000), '[1, 2.50, -0]', '[]', '')",
      "('', '', '', '', 'null', 'null', NULL)",
    ],
    update: "t = t || '!', j = ('{\"again\": ' || coalesce(j::text, 'null') || '}')::json",
  },
  {
    name: 'identifiers_and_network',
    keyType: 'uuid',
    columns: 'u uuid, ip inet, cidr cidr, mac macaddr, mac8 macaddr8, bits bit(5), vb varbit, bool boolean',
    rows: [
      "('00000000-0000-0000-0000-000000000000', gen_random_uuid(), '::1', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', B'10101', B'', true)",
      "('ffffffff-ffff-ffff-ffff-ffffffffffff', NULL, '2001:db8::1/64', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00:00:00', B'00000', B'1', false)",
    ],
    update: 'bits = ~bits, bool = NOT bool',
  },
  {
    name: 'arrays_enums_domains_composites_ranges',
    types: `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy "quoted"');
            CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
            CREATE TYPE pair AS (a integer, b text, m mood)`,
    columns: 'ai integer[], a2 text[][], am mood[], m mood, d posint, p pair, pa pair[], r int4range, tr tstzrange, nr numrange, mr int4multirange',
    rows: [
      "(1, '{1,NULL,3}', '{{\"a b\",NULL},{\"\\\"\",\"}\"}}', '{sad,\"happy \\\"quoted\\\"\"}', 'ok', 5, '(1,\"x, y\",sad)', ARRAY['(2,z,ok)'::pair, NULL], '[1,5)', '[2020-01-01,infinity)', '(,0.1000000000000000000001]', '{[1,2),[5,9)}')",
      "(2, '{}', NULL, '{}', NULL, NULL, '(,,)', '{}', 'empty', NULL, 'empty', '{}')",
    ],
    update: "m = 'happy \"quoted\"', d = 7, ai = ai || 4",
  },
  {
    name: 'composite_key',
    keyType: 'bigint, k2 text, k3 date',
    columns: 'v text',
    rows: ["(9223372036854775806, 'a', '2020-01-01', 'x')", "(9223372036854775806, 'b', '2020-01-01', 'y')", "(-1, '', '-infinity', NULL)"],
    update: "v = coalesce(v, '') || '+'",
  },
];

export function tableDdl(f: Family): string {
  const key = f.name === 'composite_key' ? 'id bigint, k2 text, k3 date, PRIMARY KEY (id, k2, k3)' : `id ${f.keyType ?? 'integer'} PRIMARY KEY`;
  return `CREATE TABLE ${quoted(f.name)} (${key}, ${f.columns})`;
}

const quoted = (name: string) => `"${name}"`;

/** md5 of the table's text in one time zone (timestamptz prints in the session's zone). */
async function tableText(url: string, table: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("SET TimeZone TO 'UTC'");
    const { rows } = await client.query<{ h: string; n: number }>(`SELECT md5(string_agg(whole_row_::text, ',' ORDER BY whole_row_::text)) AS h, count(*)::int AS n FROM ${quoted(table)} whole_row_`);
    return `${rows[0]!.n} rows, md5 ${rows[0]!.h}`;
  } finally {
    await client.end();
  }
}

/** `env`: extra settings of the tunnel (a format and its registry). */
export async function runFamily(t: TestContext, f: Family, env: Record<string, string> = {}): Promise<void> {
  const db = await tunnelDatabases(t, { createTables: false });
  // A session time zone different from the target's: timestamptz must still arrive as the same instant.
  await query(db.sourceUrl, `ALTER DATABASE ${db.topicPrefix} SET TimeZone TO 'Asia/Kathmandu'`);
  if (f.types) {
    await query(db.sourceUrl, f.types);
    if (f.name.startsWith('arrays')) await query(db.targetUrl, "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy \"quoted\"')"); // a type the target already has
  }
  await query(db.sourceUrl, tableDdl(f));
  await query(db.sourceUrl, `INSERT INTO ${quoted(f.name)} VALUES ${f.rows.join(', ')}`);
  const tunnelEnv = { ...db.env, ...env, PGTUNNEL_TABLES: f.name };
  const tunnel = await InProcessTunnel.start(t, tunnelEnv);
  const source = await tableText(db.sourceUrl, f.name);
  await waitFor(`${f.name}: the snapshot equal in the target`, async () => (await tableText(db.targetUrl, f.name)) === source, 30_000, 100);
  await query(db.sourceUrl, `UPDATE ${quoted(f.name)} SET ${f.update}`);
  const updated = await tableText(db.sourceUrl, f.name);
  assert.notEqual(updated, source, 'the update changed the source');
  await waitFor(`${f.name}: the streamed updates equal in the target`, async () => (await tableText(db.targetUrl, f.name)) === updated, 30_000, 100);
  assert.deepEqual(await tunnel.differences(), [], 'verify finds every value equal');
  await tunnel.stop();
}

