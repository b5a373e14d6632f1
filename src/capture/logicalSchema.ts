import type pg from 'pg';
import { qualified } from '../pg.js';
import { formatLsn, type Relation } from './pgoutput.js';

/** A captured column as logical capture versions it: a new name, type or typmod is a new schema version. */
export interface ShapeColumn {
  name: string;
  typeOid: number;
  typeMod: number;
}

export interface Version {
  version: number;
  /** The first WAL position (a commit's) this version describes. */
  fromLsn: bigint;
  columns: ShapeColumn[];
}

/** The captured columns a relation message describes (excluded ones left out), in the table's order. */
export function relationShape(relation: Relation, excluded: ReadonlySet<string>): ShapeColumn[] {
  return relation.columns.filter((c) => !excluded.has(c.name)).map(({ name, typeOid, typeMod }) => ({ name, typeOid, typeMod }));
}

export function sameShape(a: ShapeColumn[], b: ShapeColumn[]): boolean {
  return a.length === b.length && a.every((c, i) => c.name === b[i]!.name && c.typeOid === b[i]!.typeOid && c.typeMod === b[i]!.typeMod);
}

/**
 * Pure: the version of `columns` seen in the WAL at `lsn`, given the versions numbered so far (in order), or
 * the next version to number. WAL before the newest version's start is WAL replayed after a restart: it gets
 * the version in force there, or the newest with its columns.
 */
export function versionFor(versions: Version[], columns: ShapeColumn[], lsn: bigint): { known: number } | { next: Version } {
  const latest = versions.at(-1);
  if (latest && lsn < latest.fromLsn) {
    const inForce = versions.filter((v) => v.fromLsn <= lsn).at(-1);
    if (inForce && sameShape(inForce.columns, columns)) return { known: inForce.version };
    return { known: versions.filter((v) => sameShape(v.columns, columns)).at(-1)?.version ?? latest.version };
  }
  if (latest && sameShape(latest.columns, columns)) return { known: latest.version };
  return { next: { version: (latest?.version ?? 0) + 1, fromLsn: lsn, columns } };
}

/** The same from the catalog, as the snapshot reads the table (pgoutput sends no generated column). */
export async function catalogShape(client: pg.Client, schema: string, name: string, excluded: string[]): Promise<ShapeColumn[]> {
  const { rows } = await client.query<ShapeColumn>(
    `SELECT attname AS name, atttypid::int AS "typeOid", atttypmod AS "typeMod" FROM pg_attribute
     WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attgenerated = '' AND NOT attname = ANY ($2::text[])
     ORDER BY attnum`,
    [qualified(schema, name), excluded],
  );
  return rows;
}

/** A logical table's newest schema version (null before its first), for status. */
export async function logicalSchemaVersion(client: pg.Client, tableId: string): Promise<number | null> {
  const { rows: present } = await client.query<{ ok: boolean }>("SELECT to_regclass('pgtunnel.logical_schemas') IS NOT NULL AS ok");
  if (!present[0]!.ok) return null;
  const { rows } = await client.query<{ v: number | null }>('SELECT max(schema_version) AS v FROM pgtunnel.logical_schemas WHERE table_id = $1', [tableId]);
  return rows[0]?.v ?? null;
}

/**
 * Logical capture's schema versions of one table (`pgtunnel.logical_schemas`): what the DDL event trigger's
 * `sync_capture` numbers in trigger mode, numbered here from relation messages. Each version starts at the
 * LSN of the first change it describes, so WAL replayed after a restart gets the version it had; a relation
 * message whose columns differ from the version in force is a new version. Only the table's leader writes.
 */
export class LogicalSchemas {
  private versions: Version[] | undefined;

  constructor(private readonly tableId: string) {}

  /** The version of these captured columns, seen in the WAL at `lsn` (numbered and stored when new). */
  async versionAt(client: pg.Client, columns: ShapeColumn[], lsn: bigint): Promise<number> {
    const versions = (this.versions ??= await this.load(client));
    const found = versionFor(versions, columns, lsn);
    if ('known' in found) return found.known;
    const { next } = found;
    await client.query(
      'INSERT INTO pgtunnel.logical_schemas (table_id, schema_version, from_lsn, columns) VALUES ($1, $2, $3::pg_lsn, $4::jsonb) ON CONFLICT DO NOTHING',
      [this.tableId, next.version, formatLsn(lsn), JSON.stringify(columns)],
    );
    versions.push(next);
    return next.version;
  }

  /** The version of the catalog's columns now (the snapshot's). */
  async current(client: pg.Client, columns: ShapeColumn[]): Promise<number> {
    const { rows } = await client.query<{ lsn: string }>("SELECT (pg_current_wal_lsn() - '0/0')::text AS lsn");
    return this.versionAt(client, columns, BigInt(rows[0]!.lsn));
  }

  private async load(client: pg.Client): Promise<Version[]> {
    const { rows } = await client.query<{ version: number; lsn: string; columns: ShapeColumn[] }>(
      "SELECT schema_version AS version, (from_lsn - '0/0')::text AS lsn, columns FROM pgtunnel.logical_schemas WHERE table_id = $1 ORDER BY schema_version",
      [this.tableId],
    );
    return rows.map((r) => ({ version: r.version, fromLsn: BigInt(r.lsn), columns: r.columns }));
  }
}
