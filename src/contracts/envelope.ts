import { readFileSync } from 'node:fs';
import { transactionBlockText, type TransactionBlock, type TransactionEnd } from './transaction.js';
import { canonical, JsonError, JsonNumber, readObject, type JsonLimits, type JsonObject, type JsonScalar } from './json.js';

/** A change as read from the change table: the row and its key as exact row_to_json text. */
export interface ChangeRow {
  changeId: number | string;
  action: string;
  txid: string;
  capturedMs: number;
  /** `{"emp_id":7,"first_name":"Ada",…}`, never parsed on the producer's side */
  row: string;
  /** `{"emp_id":7}`: the key columns in key order */
  key: string;
  schemaVersion: number;
  /** The table's row filter excludes the new row: an insert is dropped, an update becomes a delete. */
  filteredOut?: boolean;
  /** `before: full`: an update's old row, exact row_to_json text like `row`. */
  before?: string;
  /** With transaction metadata: the change's place in its source transaction. */
  transaction?: TransactionBlock;
  /** The first change of its transaction (from the producer that speaks for it): BEGIN precedes it. */
  transactionBegin?: boolean;
  /** The last one: END, with the counts, follows it. */
  transactionEnd?: TransactionEnd;
}

export type { TransactionBlock, TransactionEnd };

/** Debezium's ops: create, update, delete, read (snapshot), truncate. */
export type Op = 'c' | 'u' | 'd' | 'r' | 't';

/** Debezium's snapshot marker: "last" on the final snapshot row when known, "incremental" on a signalled snapshot's rows. */
export type SnapshotMarker = 'true' | 'last' | 'false' | 'incremental';

/**
 * `source` as Debezium names it (version, connector, name, ts_ms, snapshot, db, schema, table, txId, lsn)
 * plus schema_version; lsn is our position, the change_id (null for snapshot rows).
 */
export interface EnvelopeSource {
  version: string;
  connector: string;
  /** The topic prefix, Debezium's logical server name. */
  name: string;
  db: string;
  schema: string;
  table: string;
  txId: string | null;
  lsn: string | null;
  snapshot: SnapshotMarker;
  tsMs: number;
  /** The capture version (pgtunnel.captures.schema_version) the row was written with. */
  schemaVersion: number | null;
}

/** The version every envelope names in source.version. */
export const pgtunnelVersion = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** A row image as read from an envelope: each column's value (numbers as their exact text) and the row's text. */
export type RowImage = JsonObject;

export interface Envelope {
  op: Op;
  before: RowImage | null;
  after: RowImage | null;
  source: EnvelopeSource;
  tsMs: number;
}

export interface OutMessage {
  topic: string;
  key: string | undefined;
  value: string | undefined;
  /** Unset: by key. 'all': one copy in every partition (a truncate must pass every key's changes). */
  partition?: number | 'all';
  headers?: Map<string, string>;
  /** What `value`'s text was built from: Avro encodes these parts without reading the text back. */
  parts?: EnvelopeParts;
}

export interface EnvelopeParts {
  table: TableRef;
  op: Op;
  row: string | null;
  source: SourceFields;
  tsMs: number;
  transaction?: TransactionBlock;
  /** An update's old row (`before: full`). */
  before?: string;
}

/** A message as Kafka gets it: JSON text, or the Confluent wire format once encoded. */
export interface WireMessage extends Omit<OutMessage, 'value'> {
  /** `key` stays the key's JSON text: partitions follow it whatever the format. */
  value: string | Buffer | undefined;
  /** The key as written when encoded; else `key` is written. */
  keyBytes?: Buffer;
  /** Without `key`: the key's JSON text as UTF-8, when `keyBytes` are encoded (a row encoded from its bytes). */
  partitionKey?: Buffer;
}

const opOfAction: Record<string, Op> = { INSERT: 'c', UPDATE: 'u', DELETE: 'd', TRUNCATE: 't' };

export function opOf(action: string): Op | undefined {
  return opOfAction[action];
}

export interface TableRef {
  db: string;
  schema: string;
  name: string;
  key: string[];
  topic: string;
  /** Debezium's logical server name: the topic prefix. */
  topicPrefix: string;
  /** Transaction metadata is on: envelopes may carry a `transaction` block. */
  transactions?: boolean;
}

export interface SourceFields {
  txId: string | null;
  lsn: string | null;
  snapshot: SnapshotMarker;
  tsMs: number;
  schemaVersion: number;
}

const digits = /^\d{1,20}$/;

/** An int64 field's JSON text: txid and change_id come from PostgreSQL as digits, written as they are. */
function int64(v: string | null): string {
  if (v === null) return 'null';
  if (!digits.test(v)) throw new Error(`not an int64: ${v}`);
  return v;
}

/** The constant parts of a table's `source`, built once per table (not once per message). */
const sourceParts = new WeakMap<TableRef, { head: string; tail: string }>();

function partsOf(table: TableRef): { head: string; tail: string } {
  let parts = sourceParts.get(table);
  if (!parts) {
    parts = {
      head: `{"version":${JSON.stringify(pgtunnelVersion)},"connector":"pgtunnel","name":${JSON.stringify(table.topicPrefix)},"ts_ms":`,
      tail: `,"db":${JSON.stringify(table.db)},"schema":${JSON.stringify(table.schema)},"table":${JSON.stringify(table.name)},"txId":`,
    };
    sourceParts.set(table, parts);
  }
  return parts;
}

/**
 * The envelope's text (Debezium's field names), assembled around the row's exact text: no value is
 * parsed or re-printed.
 */
function envelopeText(table: TableRef, op: Op, row: string | null, s: SourceFields, nowMs: number, transaction?: TransactionBlock, oldRow?: string): string {
  const before = op === 'd' ? row : op === 'u' ? oldRow ?? null : null;
  const after = op === 'd' || op === 't' ? null : row;
  const { head, tail } = partsOf(table);
  const source = `${head}${s.tsMs},"snapshot":"${s.snapshot}"${tail}${int64(s.txId)},"lsn":${int64(s.lsn)},"schema_version":${s.schemaVersion}}`;
  const tx = transaction ? `,"transaction":${transactionBlockText(transaction)}` : '';
  return `{"before":${before ?? 'null'},"after":${after ?? 'null'},"source":${source},"op":"${op}","ts_ms":${nowMs}${tx}}`;
}

/** One change becomes its envelope, and a delete also a tombstone so compacted topics forget the key. */
export function changeToMessages(table: TableRef, change: ChangeRow, op: Op, nowMs: number): OutMessage[] {
  const source = { txId: change.txid, lsn: String(change.changeId), snapshot: 'false' as const, tsMs: Math.round(change.capturedMs), schemaVersion: change.schemaVersion };
  const value = envelopeText(table, op, op === 't' ? null : change.row, source, nowMs, change.transaction, change.before);
  const parts = { table, op, row: op === 't' ? null : change.row, source, tsMs: nowMs, transaction: change.transaction, before: change.before };
  if (op === 't') return [{ topic: table.topic, key: undefined, value, partition: 'all', parts }];
  const messages: OutMessage[] = [{ topic: table.topic, key: change.key, value, parts }];
  if (op === 'd') messages.push({ topic: table.topic, key: change.key, value: undefined });
  return messages;
}

/**
 * A row read by the snapshot (op "r"), as exact text with its key; `last` marks the initial snapshot's final
 * row, `incremental` a row of an incremental snapshot (a signal), as Debezium marks them.
 */
export function snapshotRowToMessage(table: TableRef, row: { row: string; key: string }, schemaVersion: number, nowMs: number, last = false, incremental = false): OutMessage {
  const snapshot: SnapshotMarker = incremental ? 'incremental' : last ? 'last' : 'true';
  const source = { txId: null, lsn: null, snapshot, tsMs: nowMs, schemaVersion };
  return { topic: table.topic, key: row.key, value: envelopeText(table, 'r', row.row, source, nowMs), parts: { table, op: 'r', row: row.row, source, tsMs: nowMs } };
}

export class PoisonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PoisonError';
  }
}

/** The canonical key of a row: its key columns in key order, compact, as row_to_json writes them. */
export function keyOfImage(image: RowImage, key: string[]): string {
  return `{${key.map((k) => `${JSON.stringify(k)}:${canonical(image.values.get(k))}`).join(',')}}`;
}

/** Integer key columns, which row_to_json writes as plain whole numbers. */
const integerTypes = /^(smallint|integer|bigint)$/;
/** Key columns row_to_json writes as JSON strings. */
const stringTypes = /^(text|character|uuid|date|time|timestamp|interval|name|citext|inet|cidr|macaddr)/;

/**
 * A key value in the form row_to_json writes for its column's type. Else one row has two canonical keys
 * (`7` and `"7"` both reach emp_id 7): two upserts of one row in a set, a delete and an upsert applied out
 * of order, a parked key passed by. Types not listed here (numeric, floats, …) are not checked.
 */
export function checkKeyForm(image: RowImage, key: string[], types: Record<string, string>): void {
  for (const k of key) {
    const v = image.values.get(k);
    const type = types[k] ?? '';
    const ok = integerTypes.test(type) ? v instanceof JsonNumber && /^(0|-?[1-9]\d*)$/.test(v.text)
      : type === 'boolean' ? typeof v === 'boolean'
      : stringTypes.test(type) ? typeof v === 'string'
      : true;
    if (!ok) throw new PoisonError(`key column ${k} is ${type}: its value must be written as row_to_json writes it (${integerTypes.test(type) ? 'a whole number without fraction or exponent' : type === 'boolean' ? 'true or false' : 'a string'}), not ${canonical(v)}`);
  }
}

/** A plain object of a row's values, for rules: numbers stay JsonNumber (exact), nested values raw text. */
export function rowValues(image: RowImage): Record<string, unknown> {
  return Object.fromEntries(image.values);
}

/** Records are bounded before they are read: a value larger than this is a dead letter, not a crash. */
export const envelopeLimits: JsonLimits = { maxBytes: 8 * 1024 * 1024, maxDepth: 64 };

function image(v: JsonScalar | JsonObject | undefined, field: string): RowImage | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'object' && 'values' in v) return v;
  throw new PoisonError(`"${field}" must be a row object or null`);
}

function text(v: JsonScalar | JsonObject | undefined, field: string, nullable = false): string | null {
  if (typeof v === 'string') return v;
  if (nullable && (v === null || v === undefined)) return null;
  throw new PoisonError(`"${field}" must be a string`);
}

function integer(v: JsonScalar | JsonObject | undefined, field: string, nullable = false): number | null {
  if (nullable && (v === null || v === undefined)) return null;
  if (v instanceof JsonNumber && /^-?\d{1,16}$/.test(v.text)) return Number(v.text);
  throw new PoisonError(`"${field}" must be a whole number`);
}

/** An int64 kept as its digits (txId, lsn): never through a JS number. */
function int64Text(v: JsonScalar | JsonObject | undefined, field: string): string | null {
  if (v === null || v === undefined) return null;
  if (v instanceof JsonNumber && digits.test(v.text)) return v.text;
  throw new PoisonError(`"${field}" must be a whole number or null`);
}

const snapshotMarkers = new Set<unknown>(['true', 'last', 'false', 'incremental']);

function readSource(v: JsonScalar | JsonObject | undefined): EnvelopeSource {
  if (v === null || v === undefined || typeof v !== 'object' || !('values' in v)) throw new PoisonError('"source" is missing or not an object');
  const s = v.values;
  const snapshot = s.get('snapshot');
  if (!snapshotMarkers.has(snapshot)) throw new PoisonError('"source.snapshot" must be "true", "last", "false" or "incremental"');
  return {
    version: text(s.get('version'), 'source.version')!,
    connector: text(s.get('connector'), 'source.connector')!,
    name: text(s.get('name'), 'source.name')!,
    db: text(s.get('db'), 'source.db')!,
    schema: text(s.get('schema'), 'source.schema')!,
    table: text(s.get('table'), 'source.table')!,
    txId: int64Text(s.get('txId'), 'source.txId'),
    lsn: int64Text(s.get('lsn'), 'source.lsn'),
    snapshot: snapshot as SnapshotMarker,
    tsMs: integer(s.get('ts_ms'), 'source.ts_ms')!,
    schemaVersion: integer(s.get('schema_version'), 'source.schema_version', true),
  };
}

function poisonOnError<T>(read: () => T, what: string): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof JsonError) throw new PoisonError(`${what}: ${err.message}`);
    throw err;
  }
}

/**
 * The one strict decoder every record passes before anything uses it: bounded in bytes and depth, an
 * object of the envelope's shape with `source`, and a key consistent with the row in canonical form.
 * Anything else is poison (a dead letter), never a crash. With `keyColumns`, the key must name exactly them.
 */
export function decodeEnvelope(key: string | undefined, value: string, keyColumns?: string[], limits: JsonLimits = envelopeLimits): Envelope {
  const e = poisonOnError(() => readObject(value, 2, limits), 'value is not a valid envelope');
  const op = e.values.get('op');
  if (op !== 'c' && op !== 'u' && op !== 'd' && op !== 'r' && op !== 't') throw new PoisonError(`unknown op ${JSON.stringify(canonical(op as JsonScalar))}`);
  const source = readSource(e.values.get('source'));
  const tsMs = integer(e.values.get('ts_ms'), 'ts_ms')!;
  const before = image(e.values.get('before'), 'before');
  const after = image(e.values.get('after'), 'after');
  if (op === 't') return { op, before: null, after: null, source, tsMs };
  const k = key === undefined ? undefined : poisonOnError(() => readObject(key, 1, limits), 'key is not a JSON object');
  return keyedEnvelope({ envelope: { op, before, after, source, tsMs }, key: k }, keyColumns);
}

/** An envelope decoded from text or Avro, its key not yet checked against the row. */
export interface DecodedEnvelope {
  envelope: Envelope;
  key: JsonObject | undefined;
}

/** The key checks of every decoded envelope: the key names the key columns and matches the row. */
export function keyedEnvelope({ envelope, key }: DecodedEnvelope, keyColumns?: string[]): Envelope {
  const { op } = envelope;
  if (op === 't') return envelope;
  const row = op === 'd' ? envelope.before : envelope.after;
  if (row === null) throw new PoisonError(`op ${op} needs a row object in "${op === 'd' ? 'before' : 'after'}"`);
  if (key === undefined) throw new PoisonError('message has no key');
  if (key.values.size === 0) throw new PoisonError('key names no column');
  if (keyColumns && (key.values.size !== keyColumns.length || keyColumns.some((c) => !key.values.has(c)))) {
    throw new PoisonError(`key ${key.text} must name exactly the key column(s) ${keyColumns.join(', ')}`);
  }
  for (const [name, v] of key.values) {
    const rowValue = row.values.get(name);
    if (v === null || rowValue === undefined || canonical(rowValue) !== canonical(v)) throw new PoisonError(`key ${key.text} does not match the row's ${name}`);
  }
  return envelope;
}
