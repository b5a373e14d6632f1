import { JsonNumber, RawJson, type JsonScalar } from './json.js';
import { type Envelope, type EnvelopeSource, type RowImage } from './envelope.js';
import { avroName } from './avroSchema.js';
import type { ColumnType } from './columnKinds.js';
import { fromAvro } from './values.js';

/**
 * An Avro record read straight into what the apply reads — row images with their exact row_to_json text
 * and values — instead of into envelope text that is then parsed again.
 */

/** Each column with its Avro field name and its JSON member name, computed once per writer schema. */
export type NamedColumns = { column: ColumnType; field: string; member: string }[];

export function namedColumns(columns: ColumnType[]): NamedColumns {
  return columns.map((column) => ({ column, field: avroName(column.name), member: JSON.stringify(column.name) }));
}

/**
 * The value readObject would give for a column's JSON text `text` (fromAvro's output for the Avro value
 * `v`): numbers as JsonNumber, strings unescaped, arrays and composites as RawJson.
 */
function jsonValueOf(c: ColumnType, v: unknown, text: string): JsonScalar {
  if (text === 'null') return null;
  if (c.dims > 0) return new RawJson(text);
  switch (c.kind) {
    case 'int':
    case 'long':
    case 'decimal':
      return new JsonNumber(text);
    case 'float':
    case 'double':
    case 'numeric':
      // quoted only as "NaN", "Infinity", "-Infinity": nothing to unescape
      return text.charCodeAt(0) === 0x22 ? text.slice(1, -1) : new JsonNumber(text);
    case 'boolean':
      return v as boolean;
    case 'date':
    case 'timestamp':
    case 'time':
      return text.slice(1, -1);
    case 'bytes':
      return `\\x${(v as Buffer).toString('hex')}`;
    case 'raw': {
      const first = text.charCodeAt(0);
      if (first === 0x7b || first === 0x5b) return new RawJson(text);
      const scalar = JSON.parse(text) as unknown;
      return typeof scalar === 'number' ? new JsonNumber(text) : (scalar as JsonScalar);
    }
    default:
      return v as string;
  }
}

/** A row record as the image readObject would have read from its text. */
export function rowImage(columns: NamedColumns, row: Record<string, unknown>): RowImage {
  const values = new Map<string, JsonScalar>();
  let text = '{';
  for (let i = 0; i < columns.length; i++) {
    const { column, field, member } = columns[i]!;
    const v = row[field];
    const t = fromAvro(column, v);
    values.set(column.name, jsonValueOf(column, v, t));
    text += `${i === 0 ? '' : ','}${member}:${t}`;
  }
  return {
    values,
    text: `${text}}`,
  };
}


const text = (v: unknown) => JSON.stringify(v ?? null);
const int = (v: unknown) => (v === null || v === undefined ? 'null' : String(v));
const snapshotMarkers = new Set<unknown>(['true', 'last', 'false', 'incremental']);
const ops = new Set<unknown>(['c', 'u', 'd', 'r', 't']);
const maxSafe = 10n ** 16n;

/** The envelope's text (format json's), for the paths that keep records as text (letters, replay). */
export function envelopeText(e: Record<string, unknown>, before: RowImage | null, after: RowImage | null): string {
  const s = e.source as Record<string, unknown>;
  const source = `{"version":${text(s.version)},"connector":${text(s.connector)},"name":${text(s.name)},"ts_ms":${int(s.ts_ms)},"snapshot":${text(s.snapshot)},${sourceTable(s)}"txId":${int(s.txId)},"lsn":${int(s.lsn)},"schema_version":${int(s.schema_version)}}`;
  return `{"before":${before?.text ?? 'null'},"after":${after?.text ?? 'null'},"source":${source},"op":${text(e.op)},"ts_ms":${int(e.ts_ms)}}`;
}

/** `"db":…,"schema":…,"table":…,` of the last source seen: a topic's records all name the same table. */
let lastTable = { db: '', schema: '', table: '', text: '"db":"","schema":"","table":"",' };
function sourceTable(s: Record<string, unknown>): string {
  if (s.db !== lastTable.db || s.schema !== lastTable.schema || s.table !== lastTable.table) {
    lastTable = { db: s.db as string, schema: s.schema as string, table: s.table as string, text: `"db":${text(s.db)},"schema":${text(s.schema)},"table":${text(s.table)},` };
  }
  return lastTable.text;
}

/**
 * The envelope of an Avro record when it has the shape decodeEnvelope accepts; undefined when it does not
 * (the caller then leaves it to decodeEnvelope, which names what is wrong).
 */
export function envelopeOf(e: Record<string, unknown>, before: RowImage | null, after: RowImage | null): Envelope | undefined {
  const s = e.source as Record<string, unknown>;
  const op = e.op;
  const whole = (n: unknown) => typeof n === 'bigint' && n < maxSafe && n > -maxSafe;
  const digits = (n: unknown) => n === null || (typeof n === 'bigint' && n >= 0n);
  if (!ops.has(op) || !snapshotMarkers.has(s.snapshot) || !whole(s.ts_ms) || !whole(e.ts_ms) || !digits(s.txId) || !digits(s.lsn)) return undefined;
  const source: EnvelopeSource = {
    version: s.version as string,
    connector: s.connector as string,
    name: s.name as string,
    db: s.db as string,
    schema: s.schema as string,
    table: s.table as string,
    txId: s.txId === null ? null : String(s.txId),
    lsn: s.lsn === null ? null : String(s.lsn),
    snapshot: s.snapshot as EnvelopeSource['snapshot'],
    tsMs: Number(s.ts_ms),
    schemaVersion: (s.schema_version ?? null) as number | null,
  };
  if (op === 't') return { op, before: null, after: null, source, tsMs: Number(e.ts_ms) };
  return { op: op as Envelope['op'], before, after, source, tsMs: Number(e.ts_ms) };
}

