import type pg from 'pg';

/**
 * How a column travels in Avro, chosen from its PostgreSQL type with Debezium's mapping as the model.
 * Each kind knows the JSON form row_to_json writes for it, so values go text → Avro → the same text.
 */
export type ColumnKind =
  | 'int' // int2, int4
  | 'long' // int8
  | 'float' // float4 (NaN and ±Infinity as IEEE values)
  | 'double' // float8
  | 'decimal' // numeric(p,s): bytes decimal(p,s)
  | 'numeric' // numeric without typmod: its exact text as a string ("NaN", "Infinity" too)
  | 'boolean'
  | 'string' // text, varchar, char, and every type row_to_json writes as a JSON string (inet, interval, money, …)
  | 'date' // int days since 1970-01-01 (io.debezium.time.Date)
  | 'timestamp' // long micros since 1970-01-01 (io.debezium.time.MicroTimestamp)
  | 'timestamptz' // ISO-8601 string with offset (io.debezium.time.ZonedTimestamp)
  | 'time' // long micros since midnight (io.debezium.time.MicroTime)
  | 'uuid' // string (io.debezium.data.Uuid)
  | 'json' // json/jsonb: the exact text as a string (io.debezium.data.Json)
  | 'bytes' // bytea
  | 'enum' // string (io.debezium.data.Enum, allowed values as parameter)
  | 'raw'; // composites and arrays of them: the exact JSON text row_to_json wrote (io.debezium.data.Json)

export interface ColumnType {
  name: string;
  kind: ColumnKind;
  nullable: boolean;
  /** Array dimensions (0: not an array); each level is an Avro array of nullable elements. */
  dims: number;
  precision?: number;
  scale?: number;
  /** Enum labels, in order. */
  allowed?: string[];
  /** The type as format_type prints it, for messages. */
  pgType: string;
}

interface TypeRow {
  oid: number;
  typtype: string;
  typbasetype: number;
  typtypmod: number;
  typelem: number;
  typcategory: string;
  labels: string[] | null;
}

const byOid: Record<number, ColumnKind> = {
  21: 'int', 23: 'int', 20: 'long', 700: 'float', 701: 'double', 16: 'boolean', 25: 'string', 1043: 'string', 1042: 'string', 19: 'string',
  1082: 'date', 1114: 'timestamp', 1184: 'timestamptz', 1083: 'time', 2950: 'uuid', 114: 'json', 3802: 'json', 17: 'bytes',
};

/** numeric's typmod: precision and scale; a scale Avro's decimal cannot hold (negative, above precision) is none. */
export function numericTypmod(typmod: number): { precision: number; scale: number } | undefined {
  if (typmod < 4) return undefined;
  const precision = ((typmod - 4) >> 16) & 0xffff;
  const scale = ((((typmod - 4) & 0x7ff) ^ 1024) - 1024);
  return scale >= 0 && scale <= precision ? { precision, scale } : undefined;
}

/**
 * The kinds of the named columns of a table (in the given order): domains resolve to their base type,
 * arrays to their element's kind and declared dimensions. Masked columns travel as their hex digest.
 */
export async function columnKinds(client: pg.Client, table: string, columns: string[], masked: ReadonlySet<string> = new Set()): Promise<ColumnType[]> {
  return kindsOf(client, await attributes(client, table, columns), columns, masked);
}

interface Attribute {
  attname: string;
  atttypid: number;
  atttypmod: number;
  attndims: number;
  attnotnull: boolean;
  type: string;
}

async function attributes(client: pg.Client, table: string, columns: string[]): Promise<Attribute[]> {
  const { rows } = await client.query<Attribute>(
    `SELECT attname, atttypid::int, atttypmod, attndims, attnotnull, format_type(atttypid, atttypmod) AS type
     FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attname = ANY ($2::text[])`,
    [table, columns],
  );
  return rows;
}

/**
 * The kinds of columns declared by type and typmod (logical capture's relation messages): a column the
 * table no longer has with that type (dropped, renamed, retyped since the WAL was written) is described
 * by the declared type alone (nullable, arrays of one declared dimension).
 */
export async function declaredKinds(client: pg.Client, table: string, declared: { name: string; typeOid: number; typeMod: number }[], masked: ReadonlySet<string> = new Set()): Promise<ColumnType[]> {
  const names = declared.map((c) => c.name);
  const now = new Map((await attributes(client, table, names)).map((a) => [a.attname, a]));
  const cols: Attribute[] = [];
  for (const c of declared) {
    const a = now.get(c.name);
    if (a && a.atttypid === c.typeOid && a.atttypmod === c.typeMod) cols.push(a);
    else {
      const { rows } = await client.query<{ type: string | null }>('SELECT format_type($1::oid, $2::int) AS type', [c.typeOid, c.typeMod]);
      cols.push({ attname: c.name, atttypid: c.typeOid, atttypmod: c.typeMod, attndims: 0, attnotnull: false, type: rows[0]?.type ?? 'text' });
    }
  }
  return kindsOf(client, cols, names, masked);
}

async function kindsOf(client: pg.Client, cols: Attribute[], columns: string[], masked: ReadonlySet<string>): Promise<ColumnType[]> {
  const types = new Map<number, TypeRow>();
  const typeOf = async (oid: number): Promise<TypeRow> => {
    let t = types.get(oid);
    if (!t) {
      const { rows } = await client.query<TypeRow>(
        `SELECT oid::int, typtype, typbasetype::int, typtypmod, typelem::int, typcategory,
                CASE WHEN typtype = 'e' THEN ARRAY(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = t.oid ORDER BY enumsortorder) END AS labels
         FROM pg_type t WHERE oid = $1`,
        [oid],
      );
      t = rows[0]!;
      types.set(oid, t);
    }
    return t;
  };
  const resolve = async (oid: number, typmod: number): Promise<Omit<ColumnType, 'name' | 'nullable' | 'pgType' | 'dims'> & { array: boolean }> => {
    const t = await typeOf(oid);
    if (t.typtype === 'd') return resolve(t.typbasetype, t.typtypmod);
    if (t.typcategory === 'A' && t.typelem !== 0) return { ...(await resolve(t.typelem, typmod)), array: true };
    if (t.typtype === 'e') return { kind: 'enum', allowed: t.labels ?? [], array: false };
    if (t.typtype === 'c') return { kind: 'raw', array: false };
    if (oid === 1700) {
      const ps = numericTypmod(typmod);
      return ps ? { kind: 'decimal', ...ps, array: false } : { kind: 'numeric', array: false };
    }
    return { kind: byOid[oid] ?? 'string', array: false };
  };
  const found = new Map(cols.map((c) => [c.attname, c]));
  const out: ColumnType[] = [];
  for (const name of columns) {
    const c = found.get(name);
    if (!c) continue;
    if (masked.has(name)) {
      out.push({ name, kind: 'string', nullable: !c.attnotnull, dims: 0, pgType: c.type });
      continue;
    }
    const { array, ...r } = await resolve(c.atttypid, c.atttypmod);
    const dims = array ? Math.max(1, c.attndims) : 0;
    // a json value inside an array, or an array of composites: one exact JSON text, not an Avro array
    if (dims > 0 && (r.kind === 'json' || r.kind === 'raw')) out.push({ name, kind: 'raw', nullable: !c.attnotnull, dims: 0, pgType: c.type });
    else out.push({ name, ...r, nullable: !c.attnotnull, dims, pgType: c.type });
  }
  return out;
}
