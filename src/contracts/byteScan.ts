/**
 * JSON grammar over a record's bytes, exactly as the strict reader (json.ts) judges the same text: what it
 * refuses, this refuses; no value becomes a JavaScript object. Values are left as spans of the buffer for
 * the caller; only rare forms (escaped names and strings) are decoded into strings.
 */

/** The value kinds a span can hold. `raw`: a nested object or array, kept as its text. */
export const enum Kind {
  Absent = 0,
  Null,
  True,
  False,
  Number,
  String,
  Raw,
  Object,
}

/** Thrown (one shared instance, nothing allocated) when the bytes break the grammar or a limit. */
export const refused = { refused: true } as const;

/** A string value's span (inside the quotes) and whether it holds an escape. */
export interface Span {
  start: number;
  end: number;
  escaped: boolean;
}

/** Member names of one object level, looked up by bytes; an escaped or unknown name goes through a Map. */
export class NameTable {
  readonly bytes: Buffer[];
  private readonly byName = new Map<string, number>();

  constructor(readonly names: readonly string[]) {
    this.bytes = names.map((n) => Buffer.from(n));
    names.forEach((n, i) => this.byName.set(n, i));
  }

  /** The name's index (trying `hint` first: rows come in column order), or -1 with the name in `unknown`. */
  find(b: Buffer, s: Span, hint: number, out: { unknown: string }): number {
    if (!s.escaped) {
      if (hint >= 0 && hint < this.bytes.length && same(b, s, this.bytes[hint]!)) return hint;
      for (let i = 0; i < this.bytes.length; i++) if (same(b, s, this.bytes[i]!)) return i;
    }
    const name = decodeString(b, s);
    const i = this.byName.get(name);
    if (i !== undefined) return i;
    out.unknown = name;
    return -1;
  }
}

function same(b: Buffer, s: Span, name: Buffer): boolean {
  if (s.end - s.start !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (b[s.start + i] !== name[i]) return false;
  return true;
}

/** A string span's value (escapes resolved): the rare path, for escaped or unknown text. */
export function decodeString(b: Buffer, s: Span): string {
  const body = b.toString('utf8', s.start, s.end);
  return s.escaped ? (JSON.parse(`"${body}"`) as string) : body;
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

/** A cursor over one buffer, with the strict reader's depth limit. */
export class ByteCursor {
  pos = 0;
  b: Buffer = Buffer.alloc(0);
  /** The last string read, and the last scalar's span and kind. */
  readonly str: Span = { start: 0, end: 0, escaped: false };
  valueStart = 0;
  valueEnd = 0;

  constructor(readonly maxDepth: number) {}

  reset(b: Buffer): void {
    this.b = b;
    this.pos = 0;
  }

  ws(): void {
    const b = this.b;
    while (this.pos < b.length) {
      const c = b[this.pos];
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  expect(c: number): void {
    if (this.b[this.pos++] !== c) throw refused;
  }

  /** A string at pos, its body's span in `str`. */
  string(): void {
    const b = this.b;
    if (b[this.pos] !== 0x22) throw refused;
    const start = ++this.pos;
    let escaped = false;
    for (;;) {
      if (this.pos >= b.length) throw refused;
      const c = b[this.pos]!;
      if (c === 0x22) break;
      if (c < 0x20) throw refused;
      if (c === 0x5c) {
        escaped = true;
        const e = b[this.pos + 1];
        if (e === 0x75) {
          if (!(isHex(b[this.pos + 2]) && isHex(b[this.pos + 3]) && isHex(b[this.pos + 4]) && isHex(b[this.pos + 5]))) throw refused;
          this.pos += 6;
          continue;
        }
        // " \ / b f n r t
        if (e !== 0x22 && e !== 0x5c && e !== 0x2f && e !== 0x62 && e !== 0x66 && e !== 0x6e && e !== 0x72 && e !== 0x74) throw refused;
        this.pos += 2;
        continue;
      }
      this.pos++;
    }
    this.str.start = start;
    this.str.end = this.pos;
    this.str.escaped = escaped;
    this.pos++;
  }

  private literal(text: string, kind: Kind): Kind {
    const b = this.b;
    for (let i = 0; i < text.length; i++) if (b[this.pos + i] !== text.charCodeAt(i)) throw refused;
    this.pos += text.length;
    return kind;
  }

  /** A scalar at pos: its kind, its span in valueStart/valueEnd (a string's without the quotes, in `str`). */
  scalar(): Kind {
    const b = this.b;
    const c = b[this.pos];
    this.valueStart = this.pos;
    let kind: Kind;
    if (c === 0x22) {
      this.string();
      kind = Kind.String;
    } else if (c === 0x74) kind = this.literal('true', Kind.True);
    else if (c === 0x66) kind = this.literal('false', Kind.False);
    else if (c === 0x6e) kind = this.literal('null', Kind.Null);
    else {
      this.number();
      kind = Kind.Number;
    }
    this.valueEnd = this.pos;
    return kind;
  }

  /** -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? — an optional part that does not complete is left unread. */
  private number(): void {
    const b = this.b;
    let p = this.pos;
    if (b[p] === 0x2d) p++;
    if (b[p] === 0x30) p++;
    else if (isDigit(b[p]) && b[p] !== 0x30) while (isDigit(b[p])) p++;
    else throw refused;
    if (b[p] === 0x2e && isDigit(b[p + 1])) {
      p += 2;
      while (isDigit(b[p])) p++;
    }
    if (b[p] === 0x65 || b[p] === 0x45) {
      let q = p + 1;
      if (b[q] === 0x2b || b[q] === 0x2d) q++;
      if (isDigit(b[q])) {
        while (isDigit(b[q])) q++;
        p = q;
      }
    }
    this.pos = p;
  }

  /** Skips any value, checking grammar and depth (as the strict reader's skip). */
  skip(depth: number): void {
    if (depth > this.maxDepth) throw refused;
    this.ws();
    const c = this.b[this.pos];
    if (c === 0x7b || c === 0x5b) {
      const close = c === 0x7b ? 0x7d : 0x5d;
      this.pos++;
      this.ws();
      if (this.b[this.pos] === close) {
        this.pos++;
        return;
      }
      for (;;) {
        if (c === 0x7b) {
          this.ws();
          this.string();
          this.ws();
          this.expect(0x3a);
        }
        this.skip(depth + 1);
        this.ws();
        const next = this.b[this.pos++];
        if (next === close) return;
        if (next !== 0x2c) throw refused;
      }
    }
    this.scalar();
  }

  /**
   * A member value at pos, after its ":" and whitespace: a scalar, or a nested object or array skipped as
   * raw text (at `depth`). `Kind.Object` is never returned: objects read deeper are the caller's.
   */
  memberValue(depth: number): Kind {
    const c = this.b[this.pos];
    if (c === 0x7b || c === 0x5b) {
      this.valueStart = this.pos;
      this.skip(depth);
      this.valueEnd = this.pos;
      return Kind.Raw;
    }
    return this.scalar();
  }
}

/** Spans up to this many bytes are copied by a loop: below it Buffer.copy's call costs more than the bytes. */
const shortSpan = 32;

/** A growing buffer of COPY text, written from spans without strings in between. */
export class CopyOut {
  buf: Buffer;
  length = 0;

  constructor(size = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** Makes room for n more bytes (Avro's varints write into it directly: avroRows.ts). */
  room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  bytes(from: Buffer, start: number, end: number): void {
    this.room(end - start);
    if (end - start > shortSpan) {
      this.length += from.copy(this.buf, this.length, start, end);
      return;
    }
    // most values are a few bytes: a loop costs a third of Buffer.copy's call there (bench/RESULTS.md, snap3)
    const buf = this.buf;
    let at = this.length;
    for (let i = start; i < end; i++) buf[at++] = from[i]!;
    this.length = at;
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.length++] = c;
  }

  text(s: string): void {
    const n = Buffer.byteLength(s);
    this.room(n);
    this.length += this.buf.write(s, this.length);
  }

  /** Empty again, its buffer kept for the next set's lines. */
  clear(): void {
    this.length = 0;
  }

  /** The text written so far (a view, valid until the next write). */
  view(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}
