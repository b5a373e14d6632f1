import type avro from 'avsc';
import { CopyOut, refused } from './byteScan.js';
import { copyText, Cursor, typeName, unsure, valueAt, type Shape } from './avroCursor.js';
import { columnsOfRecord, type AvroSchema } from './avroSchema.js';
import type { ColumnKind, ColumnType } from './columnKinds.js';
import type { Verdict } from './envelopeScanner.js';
import { RowScan, type ScanTable } from './rowScan.js';
import { fromAvro } from './values.js';

/**
 * The Avro decoder's verdict (recordDecoder.ts: avsc, fromAvro, envelopeOf, then route.ts decodeRecord)
 * reached over the writer's binary, and the row's COPY line written from it: zig-zag varints, union
 * branches and length-prefixed strings are walked in place, no object per record or value. Values are
 * written in fromAvro's forms. What it is not sure to judge as avsc does (a schema with arrays, composites
 * or a shape of another producer, a varint past 2^53, strings that are not UTF-8, records over 64 kB) is
 * `fallback`: the decoder decides. A property test holds it to the decoder.
 */

/** Records above this stay with the decoder: their JSON text could pass the strict reader's limits. */
const maxPayload = 64 * 1024;
const maxSafe = 10_000_000_000_000_000n;

/** One row field of the writer's schema: its column, the union branch that is null (-1: none), its target column. */
interface Field {
  column: ColumnType;
  branches: number;
  nullBranch: number;
  target: number;
}

const avroTypeOf: Partial<Record<ColumnKind, string>> = {
  int: 'int', long: 'long', float: 'float', double: 'double', decimal: 'bytes', numeric: 'string', boolean: 'boolean', string: 'string',
  date: 'int', timestamp: 'long', timestamptz: 'string', time: 'long', uuid: 'string', json: 'string', bytes: 'bytes', enum: 'string',
};


/** A type, or a two-branch union of it with null: the branch count and which branch is null. */
function optional(t: Shape): { inner: Shape; branches: number; nullBranch: number } | undefined {
  if (!t.typeName.startsWith('union')) return { inner: t, branches: 1, nullBranch: -1 };
  const types = t.types ?? [];
  const n = types.findIndex((x) => x.typeName === 'null');
  if (types.length !== 2 || n < 0) return undefined;
  return { inner: types[1 - n]!, branches: 2, nullBranch: n };
}

function fieldsOf(record: Shape, schema: Record<string, unknown>, table: ScanTable): Field[] | undefined {
  const columns = columnsOfRecord(schema as never);
  const fields: Field[] = [];
  for (let i = 0; i < columns.length; i++) {
    const column = columns[i]!;
    const o = optional(record.fields![i]!.type);
    if (!o || column.dims > 0 || avroTypeOf[column.kind] !== typeName(o.inner)) return undefined;
    fields.push({ column, branches: o.branches, nullBranch: o.nullBranch, target: table.columns.indexOf(column.name) });
  }
  return fields;
}

function recordSchema(t: AvroSchema | undefined): Record<string, unknown> | undefined {
  const branch = Array.isArray(t) ? t.find((x) => typeof x === 'object') : t;
  return branch && typeof branch === 'object' && !Array.isArray(branch) && branch.type === 'record' ? branch : undefined;
}

const envelopeFields = ['before', 'after', 'source', 'op', 'ts_ms'];
const sourceFields: Record<string, string> = {
  version: 'string', connector: 'string', name: 'string', ts_ms: 'long', snapshot: 'string', db: 'string', schema: 'string', table: 'string', txId: 'long', lsn: 'long', schema_version: 'int',
};
const markers = ['true', 'last', 'false', 'incremental'].map((m) => Buffer.from(m));

/** Whether the string at the cursor is a snapshot marker, compared as bytes (no string per record). */
function marker(c: Cursor): boolean {
  const n = c.length();
  const at = c.pos;
  c.pos += n;
  return markers.some((m) => m.length === n && c.b.compare(m, 0, n, at, at + n) === 0);
}

/** The op's text: one ASCII byte as its (interned) one-character string; anything else as its UTF-8, which no op is. */
function opAt(c: Cursor): string {
  const n = c.length();
  c.pos += n;
  return n === 1 && c.b[c.pos - 1]! < 0x80 ? String.fromCharCode(c.b[c.pos - 1]!) : c.b.toString('utf8', c.pos - n, c.pos);
}

/** Where each field of a row starts (-1: null); rows are read once and written from these. */
class RowAt {
  readonly at: Int32Array;
  present = false;
  constructor(n: number) {
    this.at = new Int32Array(n);
  }
}

/** One scanner per pair of writer schemas (key and value) and target table; scan() keeps its fields until the next. */
export class AvroScanner extends RowScan {
  /** False when the schemas are not the shape this scanner reads: every record is then `fallback`. */
  supported = false;
  private fields: Field[] = [];
  private keyFields: Field[] = [];
  /** The envelope's fields after the rows: each source field's plan, the top ts_ms's null branch, the transaction block. */
  private source: { name: string; inner: Shape; nullBranch: number }[] = [];
  private rowNull = [0, 0];
  private tsNull = -1;
  private transaction: Shape | undefined;
  private readonly fieldOfTarget: Int32Array;
  /** For each table key column: whether a value's JSON text has the key type's form. */
  private readonly keyForms: ((text: string) => boolean)[];
  /** For each table key column: its field in the row and in the key record. */
  private readonly keyPairs: [number, number][] = [];
  private readonly cursor = new Cursor();
  private readonly keyCursor = new Cursor();
  private rows = [new RowAt(0), new RowAt(0)];
  private keyRow = new RowAt(0);

  constructor(table: ScanTable, valueType: avro.Type, valueSchema: Record<string, unknown>, keyType: avro.Type, keySchema: Record<string, unknown>) {
    super(table);
    this.keyForms = table.key.map((k) => keyFormOf(table.types[k] ?? ''));
    this.fieldOfTarget = new Int32Array(table.columns.length).fill(-1);
    const top = (valueType as unknown as Shape).fields ?? [];
    const names = top.map((f) => f.name);
    if (names.slice(0, 5).join() !== envelopeFields.join() || names.length > 6 || (names.length === 6 && names[5] !== 'transaction')) return;
    const rowSchema = recordSchema((valueSchema.fields as { name: string; type: AvroSchema }[]).find((f) => f.name === 'before')?.type);
    const [before, after, ts] = [optional(top[0]!.type), optional(top[1]!.type), optional(top[4]!.type)];
    if (!rowSchema || before?.branches !== 2 || after?.branches !== 2 || after.inner !== before.inner || typeName(before.inner) !== 'record') return;
    if (!this.sourceOk(top[2]!.type) || typeName(top[3]!.type) !== 'string' || !ts || typeName(ts.inner) !== 'long') return;
    const fields = fieldsOf(before.inner, rowSchema, table);
    const keyFields = typeName(keyType as unknown as Shape) === 'record' ? fieldsOf(keyType as unknown as Shape, keySchema, table) : undefined;
    if (!fields || !keyFields || keyFields.length !== table.key.length) return;
    for (const k of table.key) this.keyPairs.push([fields.findIndex((f) => f.column.name === k), keyFields.findIndex((f) => f.column.name === k)]);
    if (this.keyPairs.some(([r, k]) => r < 0 || k < 0)) return;
    this.fields = fields;
    this.keyFields = keyFields;
    fields.forEach((f, i) => f.target >= 0 && (this.fieldOfTarget[f.target] = i));
    this.rows = [new RowAt(fields.length), new RowAt(fields.length)];
    this.keyRow = new RowAt(keyFields.length);
    this.rowNull = [before.nullBranch, after.nullBranch];
    this.tsNull = ts.branches === 2 ? ts.nullBranch : -1;
    this.transaction = top[5]?.type;
    this.supported = true;
  }

  private sourceOk(t: Shape): boolean {
    if (typeName(t) !== 'record' || t.fields?.length !== Object.keys(sourceFields).length) return false;
    for (const f of t.fields) {
      const o = optional(f.type);
      if (!o || sourceFields[f.name] !== typeName(o.inner)) return false;
      this.source.push({ name: f.name, inner: o.inner, nullBranch: o.branches === 2 ? o.nullBranch : -1 });
    }
    return true;
  }

  /** A record's payloads (after the 5-byte frame): its verdict, and for a row its key, op and COPY line. */
  scan(value: Buffer, key: Buffer): Verdict {
    if (!this.supported || value.length > maxPayload || key.length > maxPayload) return 'fallback';
    try {
      this.readEnvelope(value);
      if (this.op === 't') return 'truncate';
      const row = this.rows[this.op === 'd' ? 0 : 1]!;
      if (!row.present) throw refused;
      this.readKey(key, row);
      this.unknownColumns = this.fields.some((f) => f.target < 0);
      this.lineShape();
      return 'row';
    } catch (err) {
      if (err === refused) return 'poison';
      if (err === unsure) return 'fallback';
      throw err;
    }
  }

  private readEnvelope(b: Buffer): void {
    const c = this.cursor;
    c.b = b;
    c.pos = 0;
    this.readRow(c, this.rows[0]!, this.rowNull[0]!);
    this.readRow(c, this.rows[1]!, this.rowNull[1]!);
    let snapshotOk = false;
    let sourceTs: number | bigint = 0;
    for (const f of this.source) {
      if (f.nullBranch >= 0 && c.branch(2) === f.nullBranch) continue;
      if (f.name === 'snapshot') snapshotOk = marker(c);
      else if (f.name === 'ts_ms') sourceTs = c.short() ?? c.big();
      else if (f.name === 'txId' || f.name === 'lsn') {
        if ((c.short() ?? c.big()) < 0) throw refused;
      } else c.value(f.inner);
    }
    if (!snapshotOk || sourceTs >= maxSafe || sourceTs <= -maxSafe) throw refused;
    const op = opAt(c);
    if (op !== 'c' && op !== 'u' && op !== 'd' && op !== 'r' && op !== 't') throw refused;
    this.op = op;
    if (this.tsNull >= 0 && c.branch(2) === this.tsNull) throw refused;
    const tsMs = c.short() ?? c.big();
    if (tsMs >= maxSafe || tsMs <= -maxSafe) throw refused;
    if (this.transaction) c.value(this.transaction);
    if (c.pos !== b.length) throw refused;
    this.tsMs = Number(sourceTs);
  }

  /** A string as text (a numeric's, checked as fromAvro checks it). */
  private text(c: Cursor): string {
    const n = c.length();
    c.pos += n;
    return c.b.toString('utf8', c.pos - n, c.pos);
  }

  /** A row (or null) of the union `t`: each field's start, numerics checked as fromAvro checks them. */
  private readRow(c: Cursor, row: RowAt, nullBranch: number): void {
    row.present = c.branch(2) !== nullBranch;
    if (row.present) this.fieldsAt(c, row, this.fields);
  }

  private fieldsAt(c: Cursor, row: RowAt, fields: Field[]): void {
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!;
      if (f.branches === 2 && c.branch(2) === f.nullBranch) {
        row.at[i] = -1;
        continue;
      }
      row.at[i] = c.pos;
      switch (f.column.kind) {
        case 'int': case 'date': c.long(); break;
        case 'long': case 'timestamp': case 'time': c.skipLong(); break;
        case 'float': c.skip(4); break;
        case 'double': c.skip(8); break;
        case 'boolean': c.skip(1); break;
        case 'numeric': {
          const s = this.text(c);
          // fromAvro refuses what is not a numeric's text (an UnencodableError: poison)
          if (s !== 'NaN' && s !== 'Infinity' && s !== '-Infinity' && !/^-?\d+(?:\.\d+)?$/.test(s)) throw refused;
          break;
        }
        default: c.skip(c.length());
      }
    }
  }

  /** The key record: every key column non-null, its text equal to the row's, in the key type's form. */
  private readKey(k: Buffer, row: RowAt): void {
    const c = this.keyCursor;
    c.b = k;
    c.pos = 0;
    this.fieldsAt(c, this.keyRow, this.keyFields);
    if (c.pos !== k.length) throw refused;
    let text = '{';
    for (let j = 0; j < this.keyPairs.length; j++) {
      const [inRow, inKey] = this.keyPairs[j]!;
      if (this.keyRow.at[inKey]! < 0 || row.at[inRow]! < 0) throw refused;
      const value = this.json(this.cursor.b, row.at[inRow]!, this.fields[inRow]!.column);
      if (value !== this.json(k, this.keyRow.at[inKey]!, this.keyFields[inKey]!.column)) throw refused;
      if (!this.keyForms[j]!(value)) throw refused;
      text += `${j === 0 ? '' : ','}${this.keyJson[j]}:${value}`;
    }
    this.keyText = `${text}}`;
    if (this.keyText.length * 3 > 2048 && Buffer.byteLength(this.keyText) > 2048) throw refused;
  }

  /** A value's JSON text as fromAvro writes it (the key's canonical form). */
  private json(b: Buffer, at: number, column: ColumnType): string {
    const c = jsonCursor;
    c.b = b;
    c.pos = at;
    return fromAvro(column, valueAt(c, column));
  }

  protected carries(i: number): boolean {
    return this.fieldOfTarget[i]! >= 0;
  }

  /** Scalars only: a schema with arrays or composites is not read by this scanner. */
  protected plain(): boolean {
    return this.rows[1]!.present;
  }

  /** The after-row's COPY line (only when `copyable`), in the target's column order; false: leave the record to the decoder. */
  writeLine(out: CopyOut): boolean {
    const row = this.rows[1]!;
    const c = scratch;
    c.b = this.cursor.b;
    let first = true;
    for (let i = 0; i < this.fieldOfTarget.length; i++) {
      const f = this.fieldOfTarget[i]!;
      if (!this.table.writable[i] || f < 0) continue;
      if (!first) out.byte(0x09);
      first = false;
      const at = row.at[f]!;
      if (at < 0) out.text('\\N');
      else {
        c.pos = at;
        try {
          if (!copyText(c, this.fields[f]!.column, out)) return false;
        } catch (err) {
          // scan() read the same bytes: a value it let pass and cannot write is the decoder's to judge
          if (err === unsure || err === refused) return false;
          throw err;
        }
      }
    }
    out.byte(0x0a);
    return true;
  }
}

const scratch = new Cursor();
const jsonCursor = new Cursor();

/** checkKeyForm over a key value's JSON text, decided once per key column: integers plain, booleans as such, string types as strings. */
function keyFormOf(type: string): (text: string) => boolean {
  if (/^(smallint|integer|bigint)$/.test(type)) return (text) => /^(0|-?[1-9]\d*)$/.test(text);
  if (type === 'boolean') return (text) => text === 'true' || text === 'false';
  if (/^(text|character|uuid|date|time|timestamp|interval|name|citext|inet|cidr|macaddr)/.test(type)) return (text) => text.charCodeAt(0) === 0x22;
  return () => true;
}
