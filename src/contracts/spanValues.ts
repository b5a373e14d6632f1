import { decodeString, Kind, type Span } from './byteScan.js';

/** Values at spans of a record's bytes, judged and written as the strict decoder and staging.ts do. */

/** A row's or key's member kinds and spans, by column index. */
export interface SpanSlots {
  kinds: Uint8Array;
  starts: Int32Array;
  ends: Int32Array;
}

/** COPY text escaping, as staging.ts writes a decoded string. */
export function copyString(s: string): string {
  return s.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
}

/** A short string member (op, snapshot): one unescaped byte is read without slicing the buffer. */
export function stringAt(b: Buffer, s: Span): string {
  return !s.escaped && s.end - s.start === 1 ? String.fromCharCode(b[s.start]!) : decodeString(b, s);
}

/** Absent, null, or a whole number of at most `digits` digits (a sign only when `signed`). */
export function optional(b: Buffer, s: SpanSlots, i: number, digits: number, signed: boolean): boolean {
  const kind = s.kinds[i];
  if (kind === Kind.Absent || kind === Kind.Null) return true;
  return kind === Kind.Number && whole(b, s.starts[i]!, s.ends[i]!, digits, signed);
}

export function whole(b: Buffer, start: number, end: number, digits: number, signed: boolean): boolean {
  if (signed && b[start] === 0x2d) start++;
  if (end - start < 1 || end - start > digits) return false;
  for (let p = start; p < end; p++) if (b[p]! < 0x30 || b[p]! > 0x39) return false;
  return true;
}

/** 0 or -?[1-9]\d*: an integer key as row_to_json writes it. */
export function integerText(b: Buffer, start: number, end: number): boolean {
  if (!whole(b, start, end, Infinity, true)) return false;
  const first = b[start] === 0x2d ? start + 1 : start;
  return b[first] !== 0x30 || (end - first === 1 && first === start);
}

export function sameValue(a: Buffer, as: Span, b: Buffer, bs: Span, kind: Kind): boolean {
  if (kind === Kind.True || kind === Kind.False || kind === Kind.Null) return true;
  if (kind === Kind.String && (as.escaped || bs.escaped)) return decodeString(a, as) === decodeString(b, bs);
  const length = as.end - as.start;
  if (length !== bs.end - bs.start) return false;
  // keys are short: a loop is cheaper than Buffer.compare's call
  if (length > 32) return a.compare(b, bs.start, bs.end, as.start, as.end) === 0;
  for (let i = 0; i < length; i++) if (a[as.start + i] !== b[bs.start + i]) return false;
  return true;
}

/** The value's canonical text (json.ts canonical): strings re-escaped as JSON.stringify does, the rest as written. */
export function canonicalAt(b: Buffer, s: Span, kind: Kind): string {
  if (kind === Kind.True) return 'true';
  if (kind === Kind.False) return 'false';
  if (kind === Kind.String) return s.escaped ? JSON.stringify(decodeString(b, s)) : `"${b.toString('utf8', s.start, s.end)}"`;
  return b.toString('utf8', s.start, s.end);
}
