import { CopyOut } from './byteScan.js';
import type { ColumnType } from './columnKinds.js';
import { decimalBytes, daysFromCivil } from './values.js';

/**
 * Avro records written straight from row_to_json's bytes (the snapshot's COPY bytes), no string, object or
 * avsc call per value: a plan of one writer per column, in the order row_to_json writes them. It takes only
 * the forms it is sure to write exactly as `toAvro` + avsc do (tests hold it to them); anything else —
 * another member order, an escape it would have to judge, a value beyond its exact ranges, arrays,
 * composites — returns false and the row takes the general encoder, which writes it or letters it.
 */

const quote = 0x22;
const backslash = 0x5c;
const comma = 0x2c;
const closeBrace = 0x7d;
const minus = 0x2d;
const dayMicros = 86_400_000_000;

type Kind = ColumnType['kind'];
const stringKinds: ReadonlySet<Kind> = new Set(['string', 'timestamptz', 'uuid', 'json', 'enum']);
const planned: ReadonlySet<Kind> = new Set([...stringKinds, 'int', 'long', 'float', 'double', 'boolean', 'numeric', 'decimal', 'date', 'timestamp']);

/** The output of a piece's records: COPY's growing buffer, with Avro's varints. */
export class AvroOut extends CopyOut {
  constructor() {
    super(1 << 20);
  }

  /** A zig-zag varint of an integer with |n| < 2^52 (a double holds 2|n| + 1 exactly there). */
  long(n: number): void {
    this.room(10);
    let z = n >= 0 ? 2 * n : -2 * n - 1;
    while (z >= 128) {
      this.buf[this.length++] = (z % 128) | 0x80;
      z = Math.floor(z / 128);
    }
    this.buf[this.length++] = z;
  }
}

/** Where a value ends: the byte after a number or literal, after a string's closing quote; -1 when malformed. */
function stringEnd(data: Buffer, at: number, end: number): number {
  for (let i = at + 1; i < end; i++) {
    const b = data[i]!;
    if (b === quote) return i + 1;
    if (b === backslash) i++;
  }
  return -1;
}

/** The integer of an optional minus and 1–15 digits in data[at, end), or undefined. */
function integer(data: Buffer, at: number, end: number): number | undefined {
  const negative = data[at] === minus;
  let i = negative ? at + 1 : at;
  if (i >= end || end - i > 15) return undefined;
  let n = 0;
  for (; i < end; i++) {
    const d = data[i]! - 48;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return negative ? -n : n;
}

/** Digits at a fixed place (a date's or time's fields), or -1. */
function digits(data: Buffer, at: number, count: number): number {
  let n = 0;
  for (let i = at; i < at + count; i++) {
    const d = data[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** Days since 1970 of a `"YYYY-MM-DD…` string at `at` (the quote), years 1900–2099 only (exact as micros below 2^52). */
function daysAt(data: Buffer, at: number): number | undefined {
  const y = digits(data, at + 1, 4);
  const m = digits(data, at + 6, 2);
  const d = digits(data, at + 9, 2);
  if (y < 1900 || y > 2099 || m < 1 || d < 1 || data[at + 5] !== minus || data[at + 8] !== minus) return undefined;
  return daysFromCivil(y, m, d);
}

/** A row record's plan: each column's JSON member name and kind; `union` when every field is ["null", T]. */
export class AvroRowPlan {
  private readonly names: Buffer[];
  private readonly kinds: Kind[];
  private readonly scales: number[];

  constructor(columns: ColumnType[], private readonly union: boolean) {
    this.names = columns.map((c) => Buffer.from(`${JSON.stringify(c.name)}:`));
    this.kinds = columns.map((c) => (c.dims === 0 && planned.has(c.kind) ? c.kind : 'raw'));
    this.scales = columns.map((c) => c.scale ?? 0);
  }

  /** Whether any row can take this plan (a table of arrays or composites only never can). */
  get usable(): boolean {
    return this.kinds.some((k) => k !== 'raw');
  }

  /** Writes the record of the JSON object data[start, end) to `out`; false (out unchanged) when the row needs the general encoder. */
  write(data: Buffer, start: number, end: number, out: AvroOut): boolean {
    const mark = out.length;
    if (this.fields(data, start, end, out)) return true;
    out.length = mark;
    return false;
  }

  private fields(data: Buffer, start: number, end: number, out: AvroOut): boolean {
    if (data[start] !== 0x7b || data[end - 1] !== closeBrace) return false;
    let at = start + 1;
    for (let c = 0; c < this.names.length; c++) {
      const name = this.names[c]!;
      if (at + name.length > end) return false;
      // names are a few bytes: a loop costs less than compare's call
      for (let i = 0; i < name.length; i++) if (data[at + i] !== name[i]) return false;
      at += name.length;
      const valueEnd = data[at] === quote ? stringEnd(data, at, end) : this.literalEnd(data, at, end);
      if (valueEnd < 0 || !this.value(c, data, at, valueEnd, out)) return false;
      at = valueEnd;
      if (data[at] !== (c === this.names.length - 1 ? closeBrace : comma)) return false;
      at++;
    }
    return at === end;
  }

  private literalEnd(data: Buffer, at: number, end: number): number {
    for (let i = at; i < end; i++) if (data[i] === comma || data[i] === closeBrace) return i;
    return -1;
  }

  private value(c: number, data: Buffer, at: number, end: number, out: AvroOut): boolean {
    const kind = this.kinds[c]!;
    if (end - at === 4 && data[at] === 0x6e && data[at + 1] === 0x75 && data[at + 2] === 0x6c && data[at + 3] === 0x6c) {
      if (!this.union) return false;
      out.byte(0);
      return true;
    }
    if (kind === 'raw') return false;
    if (this.union) out.byte(2);
    const string = data[at] === quote;
    if (stringKinds.has(kind)) return string && this.string(data, at, end, out);
    switch (kind) {
      case 'int': {
        const n = string ? undefined : integer(data, at, end);
        if (n === undefined || n < -0x80000000 || n > 0x7fffffff) return false;
        out.long(n);
        return true;
      }
      case 'long': {
        const n = string ? undefined : integer(data, at, end);
        if (n === undefined) return false;
        out.long(n);
        return true;
      }
      case 'boolean': {
        const text = end - at === 4 || end - at === 5 ? data.toString('latin1', at, end) : '';
        if (text !== 'true' && text !== 'false') return false;
        out.byte(text === 'true' ? 1 : 0);
        return true;
      }
      case 'float':
      case 'double': {
        if (string || end === at) return false;
        const x = Number(data.toString('latin1', at, end));
        if (Number.isNaN(x)) return false;
        out.room(8);
        out.length = kind === 'float' ? out.buf.writeFloatLE(x, out.length) : out.buf.writeDoubleLE(x, out.length);
        return true;
      }
      case 'numeric':
        // the number's text is its Avro string
        if (string || !/^-?\d+(?:\.\d+)?$/.test(data.toString('latin1', at, end))) return false;
        out.long(end - at);
        out.bytes(data, at, end);
        return true;
      case 'decimal': {
        const m = string ? null : /^(-?)(\d+)(?:\.(\d+))?$/.exec(data.toString('latin1', at, end));
        const frac = m?.[3] ?? '';
        if (!m || frac.length > this.scales[c]!) return false;
        const unscaled = BigInt(m[2]! + frac.padEnd(this.scales[c]!, '0'));
        const bytes = decimalBytes(m[1] ? -unscaled : unscaled);
        out.long(bytes.length);
        out.bytes(bytes, 0, bytes.length);
        return true;
      }
      case 'date': {
        const days = string && end - at === 12 ? daysAt(data, at) : undefined;
        if (days === undefined) return false;
        out.long(days);
        return true;
      }
      case 'timestamp': {
        // "YYYY-MM-DDTHH:MM:SS" and up to six fraction digits
        const length = end - at;
        if (!string || length < 21 || length === 22 || length > 28 || data[at + 11] !== 0x54 || data[at + 14] !== 0x3a || data[at + 17] !== 0x3a) return false;
        const days = daysAt(data, at);
        const h = digits(data, at + 12, 2);
        const mi = digits(data, at + 15, 2);
        const s = digits(data, at + 18, 2);
        if (days === undefined || h < 0 || mi < 0 || s < 0) return false;
        let frac = 0;
        if (length > 21) {
          if (data[at + 20] !== 0x2e) return false;
          const f = digits(data, at + 21, length - 22);
          if (f < 0) return false;
          frac = f * 10 ** (6 - (length - 22));
        }
        // years 1900–2099: the micros stay below 2^52
        out.long(days * dayMicros + ((h * 60 + mi) * 60 + s) * 1_000_000 + frac);
        return true;
      }
    }
    return false;
  }

  /** A JSON string's UTF-8: its bytes when plain ASCII, else decoded and encoded again as the general encoder does. */
  private string(data: Buffer, at: number, end: number, out: AvroOut): boolean {
    for (let i = at + 1; i < end - 1; i++) {
      if (data[i]! >= 0x80 || data[i] === backslash) {
        const text = JSON.parse(data.toString('utf8', at, end)) as string;
        out.long(Buffer.byteLength(text));
        out.text(text);
        return true;
      }
    }
    out.long(end - at - 2);
    out.bytes(data, at + 1, end - 1);
    return true;
  }
}

/** The wire bytes around snapshot rows' Avro records: key = keyHeader + key record, value = prefix + row record + suffix. */
export interface AvroSnapshotFrame {
  keyHeader: Buffer;
  key: AvroRowPlan;
  row: AvroRowPlan;
  prefix: Buffer;
  suffix: Buffer;
}

/**
 * Snapshot rows' keys and values (binary COPY spans, 4 ints a row: the key's text, then the row's) written
 * into `out` from its start; the last row with `lastFrame`. Per row: where its key starts, its value starts
 * and ends, or -1 for a row the plans do not take or whose value exceeds `limit` bytes.
 */
export function writeSnapshotRows(data: Buffer, spans: Int32Array, count: number, frame: AvroSnapshotFrame, lastFrame: AvroSnapshotFrame, limit: number, out: AvroOut): Int32Array {
  const at = new Int32Array(count * 3).fill(-1);
  out.length = 0;
  for (let i = 0; i < count; i++) {
    const f = i === count - 1 ? lastFrame : frame;
    const start = out.length;
    out.bytes(f.keyHeader, 0, f.keyHeader.length);
    const keyDone = f.key.write(data, spans[i * 4]!, spans[i * 4 + 1]!, out);
    const valueAt = out.length;
    out.bytes(f.prefix, 0, f.prefix.length);
    if (!keyDone || !f.row.write(data, spans[i * 4 + 2]!, spans[i * 4 + 3]!, out)) {
      out.length = start;
      continue;
    }
    out.bytes(f.suffix, 0, f.suffix.length);
    if (out.length - valueAt > limit) {
      out.length = start;
      continue;
    }
    at[i * 3] = start;
    at[i * 3 + 1] = valueAt;
    at[i * 3 + 2] = out.length;
  }
  return at;
}
