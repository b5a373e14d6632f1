import { isUtf8 } from 'node:buffer';
import { CopyOut, refused } from './byteScan.js';
import type { ColumnType } from './columnKinds.js';
import { decimalFromBytes, decimalString, floatText, fromAvro } from './values.js';

/** Reads of Avro binary in place, for the scanner (avroScanner.ts): values in avsc's forms and as COPY text. */

/** Thrown when avsc's own verdict is needed. */
export const unsure = { unsure: true } as const;

/** What the reads need of avsc's types (their documented properties). */
export type Shape = { typeName: string; name?: string; fields?: { name: string; type: Shape }[]; types?: Shape[]; symbols?: string[]; size?: number };

export const typeName = (t: Shape) => (t.typeName === 'abstract:long' ? 'long' : t.typeName);

/** Reads of one payload: each throws `refused` (avsc refuses too: truncated, a bad branch) or `unsure`. */
export class Cursor {
  b: Buffer = Buffer.alloc(0);
  pos = 0;

  /** A zig-zag varint as a number; one past 2^49 is read exactly by `big` (or left to avsc beyond 64 bits). */
  long(): number {
    const b = this.b;
    const at = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= b.length) throw refused;
      const c = b[this.pos++]!;
      value += (c & 0x7f) * scale;
      if ((c & 0x80) === 0) return value % 2 === 0 ? value / 2 : -(value + 1) / 2;
      scale *= 128;
    }
    this.pos = at;
    const big = this.big();
    if (big > 9007199254740991n || big < -9007199254740991n) throw unsure;
    return Number(big);
  }

  /** A varint of at most 7 bytes (below 2^48 either way) as a number; undefined, nothing read, for a longer one. */
  short(): number | undefined {
    const b = this.b;
    let value = 0;
    let scale = 1;
    for (let i = this.pos; i < this.pos + 7 && i < b.length; i++) {
      const c = b[i]!;
      value += (c & 0x7f) * scale;
      if ((c & 0x80) === 0) {
        this.pos = i + 1;
        return value % 2 === 0 ? value / 2 : -(value + 1) / 2;
      }
      scale *= 128;
    }
    return undefined;
  }

  /** A long's decimal text, exact to 64 bits. */
  longText(): string {
    const at = this.pos;
    for (let i = 0; i < 7 && this.pos < this.b.length; i++) {
      if ((this.b[this.pos++]! & 0x80) === 0) {
        this.pos = at;
        return String(this.long());
      }
    }
    this.pos = at;
    return String(this.big());
  }

  /** A zig-zag varint of at most 64 bits, exactly (as avsc's long reads it). */
  big(): bigint {
    const b = this.b;
    let value = 0n;
    let shift = 0n;
    for (let i = 0; ; i++) {
      if (this.pos >= b.length) throw refused;
      const c = b[this.pos++]!;
      if (i === 9 && c > 1) throw unsure;
      value |= BigInt(c & 0x7f) << shift;
      if ((c & 0x80) === 0) break;
      shift += 7n;
    }
    return (value >> 1n) ^ -(value & 1n);
  }

  /** Skips a varint: its bytes, whatever its value (the value checks are the caller's). */
  skipLong(): void {
    for (let i = 0; ; i++) {
      if (i === 10) throw unsure;
      if (this.pos >= this.b.length) throw refused;
      const c = this.b[this.pos++]!;
      // a tenth byte above 1 is past 64 bits, which avsc's long reads its own way
      if (i === 9 && c > 1) throw unsure;
      if ((c & 0x80) === 0) return;
    }
  }

  branch(count: number): number {
    const i = this.long();
    if (i < 0 || i >= count) throw refused;
    return i;
  }

  /** A string's or bytes' length; the bytes follow at pos. */
  length(): number {
    const n = this.long();
    if (n < 0 || n > this.b.length - this.pos) throw refused;
    return n;
  }

  skip(n: number): void {
    if (n > this.b.length - this.pos) throw refused;
    this.pos += n;
  }

  /** Any value of a type without arrays or maps (the envelope's transaction block). */
  value(t: Shape): void {
    switch (typeName(t)) {
      case 'null': return;
      case 'boolean': return this.skip(1);
      case 'int': case 'long': return this.skipLong();
      case 'float': return this.skip(4);
      case 'double': return this.skip(8);
      case 'string': case 'bytes': return this.skip(this.length());
      case 'fixed': return this.skip(t.size ?? 0);
      case 'enum': this.branch(t.symbols?.length ?? 0); return;
      case 'record': for (const f of t.fields ?? []) this.value(f.type); return;
      default:
        if (t.typeName.startsWith('union')) return this.value(t.types![this.branch(t.types!.length)]!);
        throw unsure;
    }
  }
}


/** A value as avsc decodes it (numbers, bigints, strings, buffers), for fromAvro. */
export function valueAt(c: Cursor, column: ColumnType): unknown {
  switch (column.kind) {
    case 'int': case 'date': return c.long();
    case 'long': case 'timestamp': case 'time': return c.big();
    case 'float': return c.b.readFloatLE(c.pos);
    case 'double': return c.b.readDoubleLE(c.pos);
    case 'boolean': return c.b[c.pos] !== 0;
    case 'bytes': case 'decimal': {
      const n = c.length();
      return c.b.subarray(c.pos, c.pos + n);
    }
    default: {
      const n = c.length();
      const end = c.pos + n;
      if (!isUtf8(c.b.subarray(c.pos, end))) throw unsure;
      return c.b.toString('utf8', c.pos, end);
    }
  }
}

/**
 * The COPY text of a value (staging.ts copyLine of what the decoder reads): escapes as copyString writes
 * them. False for a string that is not UTF-8 (the decoder reads it through replacement characters).
 */
export function copyText(c: Cursor, column: ColumnType, out: CopyOut): boolean {
  const b = c.b;
  switch (column.kind) {
    case 'int': out.text(String(c.long())); break;
    case 'long': out.text(c.longText()); break;
    case 'float': case 'double': {
      const t = floatText(column.kind === 'float' ? b.readFloatLE(c.pos) : b.readDoubleLE(c.pos), column.kind === 'float');
      out.text(t.charCodeAt(0) === 0x22 ? t.slice(1, -1) : t);
      break;
    }
    case 'boolean': out.text(b[c.pos] !== 0 ? 'true' : 'false'); break;
    case 'decimal': {
      const n = c.length();
      out.text(decimalString(decimalFromBytes(b.subarray(c.pos, c.pos + n)), column.scale!));
      break;
    }
    case 'bytes': {
      const n = c.length();
      out.text('\\\\x');
      out.text(b.toString('hex', c.pos, c.pos + n));
      break;
    }
    case 'date': case 'timestamp': case 'time': out.text(fromAvro(column, valueAt(c, column)).slice(1, -1)); break;
    default: {
      const n = c.length();
      return escapedCopy(b, c.pos, n, out);
    }
  }
  return true;
}

/** A string's UTF-8 bytes with COPY's escapes; bytes that are not UTF-8 leave the record to avsc. */
function escapedCopy(b: Buffer, start: number, n: number, out: CopyOut): boolean {
  const end = start + n;
  let run = start;
  let high = false;
  for (let p = start; p < end; p++) {
    const ch = b[p]!;
    if (ch >= 0x80) high = true;
    else if (ch === 0x5c || ch === 0x0a || ch === 0x0d || ch === 0x09) {
      out.bytes(b, run, p);
      out.byte(0x5c);
      out.byte(ch === 0x5c ? 0x5c : ch === 0x0a ? 0x6e : ch === 0x0d ? 0x72 : 0x74);
      run = p + 1;
    }
  }
  out.bytes(b, run, end);
  return !high || isUtf8(b.subarray(start, end));
}
