import pg from 'pg';
import { quoteIdent } from '../pg.js';
import { JsonNumber } from '../contracts/json.js';
import type { RowImage } from '../contracts/envelope.js';

/**
 * Column types whose value PostgreSQL reads from the same text in COPY as in json_to_recordset (a JSON
 * string's text, a number's digits, true/false): a row of only these can be staged through COPY. Arrays,
 * composites, enums and domains keep the json_to_recordset path, which reads their JSON forms.
 */
const copyableType = /^(smallint|integer|bigint|numeric(\(\d+(,\d+)?\))?|real|double precision|money|boolean|text|character varying(\(\d+\))?|character(\(\d+\))?|"char"|name|citext|uuid|bytea|jsonb?|date|time(stamp)?(\(\d\))?( with(out)? time zone)?|interval.*|inet|cidr|macaddr8?|oid|xml)$/;

export function copyableColumns(types: Record<string, string>, columns: string[]): boolean {
  return columns.every((c) => copyableType.test(types[c] ?? ''));
}

const specials = /[\\\n\r\t]/;

/** COPY text escaping of one string: the value reaches the column's input function unchanged. */
function copyString(s: string): string {
  if (!specials.test(s)) return s;
  return s.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

/**
 * A row's COPY text line for `columns`, or undefined when a value has no plain text form (a nested object
 * or array, which json_to_recordset reads differently): the caller then writes the rows as JSON.
 */
export function copyLine(row: RowImage, columns: string[]): string | undefined {
  let line = '';
  for (let i = 0; i < columns.length; i++) {
    const v = row.values.get(columns[i]!);
    let text: string;
    if (v === null || v === undefined) text = '\\N';
    else if (typeof v === 'string') text = copyString(v);
    else if (v instanceof JsonNumber) text = v.text;
    else if (typeof v === 'boolean') text = v ? 'true' : 'false';
    else return undefined;
    line += i === 0 ? text : `\t${text}`;
  }
  return `${line}\n`;
}

/** COPY … FROM STDIN with the data in hand (pg's Query answers the server's CopyInResponse with it). */
class CopyIn extends pg.Query {
  constructor(text: string, private readonly chunks: Buffer[], callback: (err: Error | undefined) => void) {
    super(text, undefined, callback);
  }

  handleCopyInResponse(connection: { sendCopyFromChunk(b: Buffer): void; endCopyFrom(): void }): void {
    for (const chunk of this.chunks) connection.sendCopyFromChunk(chunk);
    connection.endCopyFrom();
  }
}

/** One COPY message stays under this size; a set of wide rows travels in several. */
const chunkBytes = 256 * 1024;

export function copyIn(client: pg.Client, sql: string, lines: string[]): Promise<void> {
  const chunks: Buffer[] = [];
  let part = '';
  for (const line of lines) {
    part += line;
    if (part.length >= chunkBytes) {
      chunks.push(Buffer.from(part));
      part = '';
    }
  }
  if (part.length > 0) chunks.push(Buffer.from(part));
  return copyChunks(client, sql, chunks);
}

/** COPY of text already in one buffer (the scanner's lines), sent in views of it: nothing copied again. */
export function copyInBuffer(client: pg.Client, sql: string, data: Buffer): Promise<void> {
  const chunks: Buffer[] = [];
  for (let at = 0; at < data.length; at += chunkBytes) chunks.push(data.subarray(at, Math.min(data.length, at + chunkBytes)));
  return copyChunks(client, sql, chunks);
}

function copyChunks(client: pg.Client, sql: string, chunks: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    client.query(new CopyIn(sql, chunks, (err) => (err ? reject(err) : resolve())) as unknown as pg.QueryConfig);
  });
}

/** A staging table of the session: its name and its columns, as committed and as this transaction made them. */
interface StagingTable {
  name: string;
  committed?: string;
  pending?: string;
}

/**
 * The session's temporary staging tables: ONE per target table, with all its writable columns (emptied at
 * each commit), so however many column subsets records carry, the session holds one table per target
 * table. A row's COPY names the columns it carries; the others stay NULL and the INSERT never names them.
 */
export class Staging {
  private readonly filled = new Set<string>();
  private readonly tables = new Map<string, StagingTable>();
  /** table → sets to go before a plain INSERT is tried again, after one met an existing key */
  private readonly upsertOnly = new Map<string, number>();

  /** Whether the role may create temporary tables here (PUBLIC may by default; a hardened database may revoke it). */
  private allowed: boolean | undefined;

  /** How many staging tables this session has made (one per target table written). */
  get count(): number {
    return this.tables.size;
  }

  /** The staging table of `target`, with columns `defs`, empty, in this transaction; undefined without the TEMP privilege. */
  async table(client: pg.Client, target: string, defs: string): Promise<string | undefined> {
    if (this.allowed === undefined) {
      const { rows } = await client.query<{ ok: boolean }>("SELECT has_database_privilege(current_database(), 'TEMP') AS ok");
      this.allowed = rows[0]?.ok === true;
    }
    if (!this.allowed) return undefined;
    let t = this.tables.get(target);
    if (t === undefined) this.tables.set(target, (t = { name: quoteIdent(`pgtunnel_stage_${this.tables.size}`) }));
    const qualifiedName = `pg_temp.${t.name}`;
    if ((t.pending ?? t.committed) !== defs) {
      // the target's columns changed (or first use): the old table goes, in this transaction
      await client.query(`DROP TABLE IF EXISTS ${qualifiedName}`);
      await client.query(`CREATE TEMP TABLE ${t.name} (${defs}) ON COMMIT DELETE ROWS`);
      t.pending = defs;
    } else if (!this.filled.has(t.name)) {
      // asked for in each transaction: behind a pooler the session may not have it
      await client.query(`CREATE TEMP TABLE IF NOT EXISTS ${t.name} (${defs}) ON COMMIT DELETE ROWS`);
    } else {
      await client.query(`TRUNCATE ${qualifiedName}`);
    }
    this.filled.add(t.name);
    return qualifiedName;
  }

  /**
   * Rows that all come from inserts or snapshot reads are tried as a plain INSERT first (no conflict
   * arbiter: about half the upsert's cost); an existing key fails it, and the upsert runs instead. After
   * such a failure the table's next sets go straight to the upsert for a while (a re-snapshot, say).
   */
  tryPlainInsert(target: string): boolean {
    const left = this.upsertOnly.get(target) ?? 0;
    if (left > 0) this.upsertOnly.set(target, left - 1);
    return left === 0;
  }

  conflicted(target: string): void {
    this.upsertOnly.set(target, 64);
  }

  /** The transaction committed or rolled back: the staging tables are empty, and as it left them. */
  ended(committed: boolean): void {
    for (const t of this.tables.values()) {
      if (committed && t.pending !== undefined) t.committed = t.pending;
      t.pending = undefined;
    }
    this.filled.clear();
  }
}
