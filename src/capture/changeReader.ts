import type pg from 'pg';
import { TunnelError } from '../errors.js';
import { qualified, quoteIdent, quoteLiteral } from '../pg.js';
import type { TableConfig } from '../config/load.js';
import type { ChangeRow } from '../contracts/envelope.js';
import type { Position } from './position.js';
import { saveStateSql } from './stateStore.js';
import { tableId } from '../names.js';
import { TransactionReader } from './transactions.js';
import { beforeImageJoin, beforeImagesCleanupSql } from './beforeImages.js';
import { filterSql } from './rowFilter.js';
import { pageFieldCount, pageFields, fieldInt } from '../contracts/changeFrames.js';
import { fieldText, readCopyRows, type CopyRows } from './copyRows.js';

export interface Page {
  cur: string;
  /** The page's changes as objects; empty when it was read as bytes. */
  changes: ChangeRow[];
  /** The byte path: the change rows as binary COPY fields in `pageFields` order (contracts/changeFrames.ts). */
  bytes?: CopyRows;
  count: number;
  /** The reader's schema version when the page was read (a change row's NULL version reads as it). */
  schemaVersion: number;
  /** The last change's id as the object path reads int8 (a number while it is a safe integer). */
  lastChangeId: number | undefined;
}

/**
 * COPY takes no bind parameters: a byte page's values reach its query as session settings set through `$n`
 * parameters (session-wide, since a stream page runs outside a transaction), never written into SQL text.
 */
const pageSettings = `SELECT set_config('pgtunnel.page_prev', coalesce($1::text, ''), false), set_config('pgtunnel.page_cur', coalesce($2::text, ''), false),
  set_config('pgtunnel.page_last', $3::text, false), set_config('pgtunnel.page_limit', $4::text, false),
  set_config('pgtunnel.page_salt', $5::text, false), set_config('pgtunnel.page_table', $6::text, false)`;
const setting = (name: string) => `current_setting('pgtunnel.page_${name}')`;
const copyParams = {
  prev: `nullif(${setting('prev')}, '')::pg_snapshot`, cur: `nullif(${setting('cur')}, '')::pg_snapshot`, last: `${setting('last')}::bigint`,
  limit: `${setting('limit')}::bigint`, salt: `${setting('salt')}::text`, table: setting('table'),
};
const queryParams = { prev: '$1::pg_snapshot', cur: '$2::pg_snapshot', last: '$3', limit: '$4', salt: '$5::text', table: '$6' };

/** int8 as the pg driver reads it (pg.ts): a number while safe, else its digits. */
const int8 = (text: string): number | string => (Number.isSafeInteger(Number(text)) ? Number(text) : text);

/** Columns of a change table that pgtunnel adds; every other column is a captured column of the source. */
export const controlColumns = ['action', 'change_id', 'txid', 'captured_at', 'schema_version'];

/** The captured columns a reader turns into the row image, and the version of the capture that wrote them. */
export interface CapturedColumns {
  columns: string[];
  key: string[];
  schemaVersion: number;
  /** json and jsonb columns: published as JSON strings of their exact text (a JSON null is not SQL NULL) */
  json: Set<string>;
}

/**
 * The captured columns: the change table's own columns (by name) that the source still has. A column the
 * source dropped before capture could follow it is no longer read, so the target keeps its last value.
 */
export async function capturedColumns(client: pg.Client, table: TableConfig, key: string[]): Promise<CapturedColumns> {
  const { rows } = await client.query<{ columns: string[] | null; json: string[] | null; schema_version: number | null }>(
    `SELECT ARRAY(SELECT a.attname::text FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid IN ('json'::regtype, 'jsonb'::regtype)) AS json,
            ARRAY(SELECT a.attname::text FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND NOT a.attname = ANY ($3::text[])
                    AND EXISTS (SELECT 1 FROM pg_attribute s WHERE s.attrelid = to_regclass($2) AND s.attname = a.attname AND s.attnum > 0 AND NOT s.attisdropped)
                  ORDER BY a.attnum) AS columns,
            (SELECT schema_version FROM pgtunnel.captures WHERE table_id = $4) AS schema_version`,
    [qualified(table.schema, table.changeTable), qualified(table.schema, table.name), controlColumns, tableId(table)],
  );
  return { columns: rows[0]?.columns ?? [], key, schemaVersion: rows[0]?.schema_version ?? 1, json: new Set(rows[0]?.json ?? []) };
}

/**
 * `(SELECT row_to_json(r) FROM (SELECT c.a, c.b) r)::text`: exact text of the named columns, in order.
 * A masked column becomes the hex sha256 of the salt (the SQL expression `saltParam`) and its text; a
 * column in `asText` becomes the JSON string of its text.
 */
export function rowJson(alias: string, columns: string[], masked: ReadonlySet<string> = new Set(), saltParam = 'NULL', asText: ReadonlySet<string> = new Set()): string {
  const select = columns.map((c) => {
    const value = `${alias}.${quoteIdent(c)}`;
    if (masked.has(c)) return `encode(sha256(convert_to(${saltParam}::text || ${value}::text, 'UTF8')), 'hex') AS ${quoteIdent(c)}`;
    return asText.has(c) ? `${value}::text AS ${quoteIdent(c)}` : value;
  });
  return `(SELECT row_to_json(pgtunnel_r.*) FROM (SELECT ${select.join(', ') || 'NULL AS "?"'}) pgtunnel_r)::text`;
}

/**
 * Reads the change table in snapshot-diff batches: the changes of transactions visible in `cur` and not
 * in `prev`, in change_id order, never `change_id > last` alone (that loses late commits). Each page walks
 * the change_id index from the last change on (both scans: a txid range as the index condition made the
 * planner read, sort and join the whole backlog on every page, so a 200k backlog cost 0.4–0.9 s a page).
 * Rows leave as row_to_json text and are never parsed on the way to Kafka, so every value stays exact.
 */
export class ChangeReader {
  private batchSql = '';
  private copySql = '';
  private readonly cleanupSql: string;
  private readonly vacuumSql: string;
  /** The change table, qualified and quoted. */
  readonly changeTable: string;
  private cleanedSinceVacuum = 0;
  private captured: CapturedColumns | undefined;
  /** With transaction metadata: each change's place in its transaction, and its BEGIN/END. */
  private readonly transactions: TransactionReader | undefined;
  /** `before: full`: updates carry their old row. */
  private readonly beforeFull: boolean;
  private extraParams: unknown[] = [];

  /**
   * `bytes`: pages may leave as binary COPY bytes (the JSON format). They do unless a row filter (typed `$n`
   * values, which COPY cannot bind) or transaction metadata (planned per change object) needs the objects.
   */
  constructor(private readonly table: TableConfig, private readonly masked: ReadonlySet<string> = new Set(), private readonly salt = '', transactionMetadata = false, private readonly bytes = false) {
    this.changeTable = qualified(table.schema, table.changeTable);
    this.beforeFull = table.before === 'full';
    if (transactionMetadata) this.transactions = new TransactionReader(tableId(table), this.changeTable);
    // No truncation: it waits for an ACCESS EXCLUSIVE lock (up to 5 s) against the capture triggers' inserts.
    this.vacuumSql = `VACUUM (TRUNCATE false) ${this.changeTable}`;
    this.cleanupSql = `DELETE FROM ${this.changeTable} WHERE txid < pg_snapshot_xmax($1::pg_snapshot) AND pg_visible_in_snapshot(txid, $1::pg_snapshot)`;
    this.checkpointSql = this.transactions ? undefined : this.checkpointStatement();
  }

  /** Whether pages are read as bytes, and why (logged once by the producer). */
  get path(): { bytes: boolean; why: string } {
    if (!this.bytes) return { bytes: false, why: 'the table\'s format encodes each row\'s values' };
    if (this.table.filter.length > 0) return { bytes: false, why: 'the row filter is read with typed parameters' };
    if (this.transactions) return { bytes: false, why: 'transaction metadata numbers each change' };
    return { bytes: true, why: 'JSON envelopes framed around the rows\' bytes' };
  }

  get schemaVersion(): number {
    return this.captured?.schemaVersion ?? 1;
  }

  /** Re-reads which columns are captured (after DDL on the source, or a new capture version). */
  async refresh(client: pg.Client, key: string[]): Promise<CapturedColumns> {
    const captured = await capturedColumns(client, this.table, key);
    this.captured = captured;
    // parameters after the five every page binds: the table id (before-images), then the filter's values
    const filter = this.table.filter.length > 0 ? filterSql(this.table.filter, 'c', this.beforeFull ? 7 : 6) : undefined;
    this.extraParams = [...(this.beforeFull ? [tableId(this.table)] : []), ...(filter?.values ?? [])];
    // The page's ids are chosen first (once: MATERIALIZED) and only those rows are fetched, each by its
    // key (OFFSET 0 keeps the planner from flattening the lookup into a join it may order badly — with a
    // change table's stale statistics it re-ran the page for every change row, 10k rows ~10 s) and turned
    // into JSON: a large transaction read in pages must not pay for every one of its rows on every page.
    // `intact`: the change table's file as the catalog has it now (pg_relation_filenode reads the catalog cache,
    // current once the statement holds its lock) is the one the statement's snapshot sees. COPY takes its snapshot
    // before it locks the table: a table rewrite (sync_capture's ALTER COLUMN TYPE) committed while it waited leaves
    // every row invisible to it, and the batch would complete empty. Such a statement returns no row at all.
    const relation = `${quoteLiteral(this.changeTable)}::regclass`;
    const query = (p: typeof queryParams) => `
      WITH s AS MATERIALIZED (SELECT COALESCE(${p.cur}, pg_current_snapshot()) AS cur, ${p.prev} AS prev, ${p.salt} AS salt,
                                     current_setting('track_commit_timestamp')::bool AS commit_ts,
                                     pg_relation_filenode(${relation}) = (SELECT relfilenode FROM pg_catalog.pg_class WHERE oid = ${relation}) AS intact),
      page AS MATERIALIZED (
        SELECT c.change_id FROM ${this.changeTable} c, s
        WHERE pg_visible_in_snapshot(c.txid, s.cur) AND NOT pg_visible_in_snapshot(c.txid, s.prev)
          AND c.change_id > ${p.last}
        ORDER BY c.change_id
        LIMIT ${p.limit})
      SELECT s.cur::text AS cur, b.*
      FROM s LEFT JOIN LATERAL (
        SELECT c.change_id, c.action, c.txid::text AS txid, c.schema_version,
               -- the source commit time when PostgreSQL tracks it (latency is measured from commit), else the statement's
               extract(epoch FROM COALESCE(CASE WHEN s.commit_ts THEN pg_xact_commit_timestamp((c.txid::text::bigint % 4294967296)::text::xid) END,
                                           c.captured_at))::float8 * 1000 AS captured_ms,
               ${rowJson('c', captured.columns, this.masked, 's.salt', captured.json)} AS row,
               ${rowJson('c', key)} AS key,
               ${this.beforeFull ? `CASE WHEN bi.image IS NOT NULL THEN ${rowJson('bb', captured.columns, this.masked, 's.salt', captured.json)} END` : 'NULL::text'} AS before,
               ${filter ? filter.sql : 'true'} AS passes
        FROM page p CROSS JOIN LATERAL (SELECT * FROM ${this.changeTable} x WHERE x.change_id = p.change_id OFFSET 0) c
        ${this.beforeFull ? beforeImageJoin(this.changeTable, p.table) : ''}
        ORDER BY p.change_id) b ON true
      WHERE s.intact`;
    this.batchSql = query(queryParams);
    // the same query's columns as text (the capture time as its float8), in pageFields order
    this.copySql = `SELECT q.cur, q.change_id::text, q.action, q.txid, q.schema_version::text, q.captured_ms, q.row, q.key, q.before FROM (${query(copyParams)}) q`;
    return captured;
  }

  /** One page of the batch after `position.prev`; `position.cur` pins the batch's snapshot across pages. */
  async readPage(client: pg.Client, position: Position, pageSize: number, cur: string | null = position.cur, retried = false): Promise<Page> {
    if (!this.captured) throw new Error('ChangeReader.refresh must run before readPage');
    if (this.path.bytes) return this.readPageBytes(client, position, pageSize, cur, retried);
    const { rows } = await client.query<{ cur: string; change_id: number | null; action: string; txid: string; schema_version: number | null; captured_ms: number; row: string; key: string; before: string | null; passes: boolean }>(
      this.batchSql,
      [position.prev, cur, position.lastChangeId, pageSize, this.salt, ...this.extraParams],
    );
    if (rows.length === 0) return this.rewritten(retried, () => this.readPage(client, position, pageSize, cur, true));
    const changes: ChangeRow[] = [];
    for (const r of rows) {
      if (r.change_id === null) continue;
      changes.push({ changeId: r.change_id, action: r.action, txid: r.txid, capturedMs: r.captured_ms, row: r.row, key: r.key, schemaVersion: r.schema_version ?? this.schemaVersion, ...(r.before === null ? {} : { before: r.before }), ...(r.passes ? {} : { filteredOut: true }) });
    }
    await this.transactions?.plan(client, changes, position.lastChangeId);
    return { cur: rows[0]!.cur, changes, count: changes.length, schemaVersion: this.schemaVersion, lastChangeId: changes.at(-1)?.changeId as number | undefined };
  }

  /** The page as binary COPY: the same rows and values, never parsed into objects (pipeline/batchPublisher.ts frames them). */
  private async readPageBytes(client: pg.Client, position: Position, pageSize: number, cur: string | null, retried: boolean): Promise<Page> {
    await client.query(pageSettings, [position.prev, cur, position.lastChangeId, pageSize, this.salt, tableId(this.table)]);
    const rows = await readCopyRows(client, this.copySql, pageFieldCount);
    if (rows.count === 0) return this.rewritten(retried, () => this.readPageBytes(client, position, pageSize, cur, true));
    // an empty page is one row of only the snapshot (the LEFT JOIN in the query)
    const count = fieldText(rows, 0, pageFields.changeId) === null ? 0 : rows.count;
    const last = count > 0 ? int8(fieldText(rows, count - 1, pageFields.changeId)!) : undefined;
    return { cur: fieldText(rows, 0, pageFields.cur)!, changes: [], ...(count > 0 ? { bytes: rows } : {}), count, schemaVersion: this.schemaVersion, lastChangeId: last as number | undefined };
  }

  /**
   * A page statement returned no row: the change table was rewritten after its snapshot (`intact`), and a new
   * statement, with a new snapshot, reads it again. Twice in a row (a snapshot held by a transaction, or
   * rewrites one after another) is left to the producer's retry, which starts over from the checkpoint.
   */
  private rewritten(retried: boolean, again: () => Promise<Page>): Promise<Page> {
    if (!retried) return again();
    throw new TunnelError('PGT_CHANGE_TABLE_REWRITTEN', `the change table ${this.changeTable} was rewritten (ALTER COLUMN … TYPE) after the page's snapshot was taken, twice in a row`, {
      errorClass: 'retryable',
      hint: 'nothing to do: the producer reads the batch again from its checkpoint',
    });
  }

  /** True when a page holds rows written by a capture version newer than the columns this reader reads. */
  isStale(page: Page): boolean {
    if (page.bytes) {
      for (let i = 0; i < page.count; i++) if (fieldInt(page.bytes, i, pageFields.schemaVersion) > this.schemaVersion) return true;
      return false;
    }
    return page.changes.some((c) => c.schemaVersion > this.schemaVersion);
  }

  /** A byte page's row as the object path reads it (for the row the byte path does not frame). */
  static changeAt(rows: CopyRows, i: number, schemaVersion: number): ChangeRow {
    const text = (f: number) => fieldText(rows, i, f);
    const slot = (i * rows.fields + pageFields.capturedMs) * 2;
    const before = text(pageFields.before);
    return {
      changeId: int8(text(pageFields.changeId)!), action: text(pageFields.action)!, txid: text(pageFields.txid)!,
      capturedMs: rows.spans[slot]! < 0 ? Number.NaN : rows.data.readDoubleBE(rows.spans[slot]!), row: text(pageFields.row)!, key: text(pageFields.key)!,
      schemaVersion: fieldInt(rows, i, pageFields.schemaVersion) < 0 ? schemaVersion : fieldInt(rows, i, pageFields.schemaVersion), ...(before === null ? {} : { before }),
    };
  }

  /**
   * The checkpoint as one statement (item 6 of issue 21): the state, and when `$11` (the checkpoint of a
   * completed batch) is not NULL the change rows and before-images it covers. One statement is its own
   * transaction, so it can be queued on the producer's session without awaiting it. Undefined with
   * transaction metadata, whose cleanup reads what its own first statement marked.
   */
  readonly checkpointSql: string | undefined;

  private checkpointStatement(): string {
    const covered = '$11::pg_snapshot IS NOT NULL AND txid < pg_snapshot_xmax($11::pg_snapshot) AND pg_visible_in_snapshot(txid, $11::pg_snapshot)';
    const images = this.beforeFull ? `, images AS (DELETE FROM pgtunnel.before_images WHERE table_id = $1 AND ${covered})` : '';
    return `WITH saved AS (${saveStateSql}),
      cleaned AS (DELETE FROM ${this.changeTable} WHERE ${covered} RETURNING 1)${images}
      SELECT (SELECT updated_at FROM saved) AS updated_at, (SELECT count(*) FROM cleaned)::int AS cleaned`;
  }

  /** Counts rows a one-statement checkpoint cleaned (towards the next vacuum). */
  cleaned(rows: number): void {
    this.cleanedSinceVacuum += rows;
  }

  /** Removes the change rows of every transaction visible in a checkpointed snapshot. */
  async cleanup(client: pg.Client, checkpoint: string): Promise<number> {
    const result = await client.query(this.cleanupSql, [checkpoint]);
    await this.transactions?.cleanup(client, checkpoint);
    if (this.beforeFull) await client.query(beforeImagesCleanupSql, [checkpoint, tableId(this.table)]);
    this.cleanedSinceVacuum += result.rowCount ?? 0;
    return result.rowCount ?? 0;
  }

  /**
   * Deleted change rows leave dead tuples; autovacuum may wait a minute or more, so after enough
   * cleanups the producer vacuums the (small) change table itself and its size stays bounded.
   * Must run outside a transaction.
   */
  async vacuumIfDue(client: pg.Client, threshold = 20_000): Promise<boolean> {
    if (this.cleanedSinceVacuum < threshold) return false;
    this.cleanedSinceVacuum = 0;
    await client.query(this.vacuumSql);
    return true;
  }
}
