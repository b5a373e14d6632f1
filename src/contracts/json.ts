/**
 * A strict, lossless JSON reader for records from Kafka. `JSON.parse` rounds int8 above 2^53 and numeric
 * beyond ~15 digits, rewrites json text (key order, duplicates, whitespace), overflows the stack on deep
 * nesting and reads input of any size; this reader keeps every number as its text, keeps the raw text of
 * each object member, and refuses input over a byte or depth limit before it allocates much.
 */

/** A JSON number kept as the text it was written with. */
export class JsonNumber {
  constructor(readonly text: string) {}
  toJSON(): unknown {
    return new RawJson(this.text);
  }
  toString(): string {
    return this.text;
  }
}

/** A nested object or array, kept as its exact text (a json column's value, an array, a composite). */
export class RawJson {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type JsonScalar = string | boolean | null | JsonNumber | RawJson;

/** An object read one level deep: each member's value. */
export interface JsonObject {
  values: Map<string, JsonScalar | JsonObject>;
  /** The object's own text, exactly as it arrived. */
  text: string;
}

export class JsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JsonError';
  }
}

export interface JsonLimits {
  maxBytes: number;
  maxDepth: number;
}

export const defaultJsonLimits: JsonLimits = { maxBytes: 16 * 1024 * 1024, maxDepth: 64 };

const numberPattern = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class Reader {
  pos = 0;
  constructor(private readonly s: string, private readonly limits: JsonLimits) {}

  fail(what: string): never {
    throw new JsonError(`${what} at character ${this.pos}`);
  }

  ws(): void {
    const s = this.s;
    while (this.pos < s.length) {
      const c = s.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  string(): string {
    const s = this.s;
    if (s[this.pos] !== '"') this.fail('expected a string');
    const start = ++this.pos;
    let plain = true;
    for (;;) {
      if (this.pos >= s.length) this.fail('unterminated string');
      const c = s.charCodeAt(this.pos);
      if (c === 0x22) break;
      if (c < 0x20) this.fail('control character in string');
      if (c === 0x5c) {
        plain = false;
        const e = s[this.pos + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(s.slice(this.pos + 2, this.pos + 6))) this.fail('bad \\u escape');
          this.pos += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) this.fail('bad escape');
        this.pos += 2;
        continue;
      }
      this.pos++;
    }
    const body = s.slice(start, this.pos);
    this.pos++;
    return plain ? body : (JSON.parse(`"${body}"`) as string);
  }

  /** Skips any value, checking its grammar and depth; returns nothing (the caller slices the text). */
  skip(depth: number): void {
    if (depth > this.limits.maxDepth) this.fail(`nested deeper than ${this.limits.maxDepth} levels`);
    this.ws();
    const c = this.s[this.pos];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      this.pos++;
      this.ws();
      if (this.s[this.pos] === close) {
        this.pos++;
        return;
      }
      for (;;) {
        if (c === '{') {
          this.ws();
          this.string();
          this.ws();
          if (this.s[this.pos++] !== ':') this.fail('expected ":"');
        }
        this.skip(depth + 1);
        this.ws();
        const next = this.s[this.pos++];
        if (next === close) return;
        if (next !== ',') this.fail(`expected "," or "${close}"`);
      }
    }
    this.scalar();
  }

  scalar(): JsonScalar {
    const s = this.s;
    const c = s.charCodeAt(this.pos);
    if (c === 0x22) return this.string();
    if (c === 0x74 && s.startsWith('true', this.pos)) return (this.pos += 4), true;
    if (c === 0x66 && s.startsWith('false', this.pos)) return (this.pos += 5), false;
    if (c === 0x6e && s.startsWith('null', this.pos)) return (this.pos += 4), null;
    numberPattern.lastIndex = this.pos;
    const m = numberPattern.exec(s);
    if (!m) this.fail('expected a value');
    this.pos += m[0].length;
    return new JsonNumber(m[0]);
  }

  /** An object whose members are read `levels` deep; deeper values stay raw text. */
  object(depth: number, levels: number): JsonObject {
    if (depth > this.limits.maxDepth) this.fail(`nested deeper than ${this.limits.maxDepth} levels`);
    const s = this.s;
    const start = this.pos;
    if (s.charCodeAt(this.pos) !== 0x7b) this.fail('expected an object');
    this.pos++;
    const values = new Map<string, JsonScalar | JsonObject>();
    this.ws();
    if (s.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return { values, text: s.slice(start, this.pos) };
    }
    for (;;) {
      this.ws();
      const name = this.string();
      if (values.has(name)) this.fail(`duplicate member "${name}"`);
      this.ws();
      if (s.charCodeAt(this.pos++) !== 0x3a) this.fail('expected ":"');
      this.ws();
      const valueStart = this.pos;
      const c = s.charCodeAt(this.pos);
      let value: JsonScalar | JsonObject;
      if (c === 0x7b && levels > 1) value = this.object(depth + 1, levels - 1);
      else if (c === 0x7b || c === 0x5b) {
        this.skip(depth + 1);
        value = new RawJson(s.slice(valueStart, this.pos));
      } else value = this.scalar();
      values.set(name, value);
      this.ws();
      const next = s.charCodeAt(this.pos++);
      if (next === 0x7d) break;
      if (next !== 0x2c) this.fail('expected "," or "}"');
    }
    return { values, text: s.slice(start, this.pos) };
  }

  end(): void {
    this.ws();
    if (this.pos !== this.s.length) this.fail('unexpected text after the value');
  }
}

/**
 * Reads a JSON object `levels` deep (an envelope is read 2 deep: the envelope, then its row and source
 * objects; a column value that is an object or array stays raw text, duplicates and all).
 * Anything else — not an object, over the limits, bad grammar, a duplicate member — is a JsonError.
 */
export function readObject(text: string, levels: number, limits: JsonLimits = defaultJsonLimits): JsonObject {
  if (Buffer.byteLength(text) > limits.maxBytes) throw new JsonError(`larger than ${limits.maxBytes} bytes`);
  const reader = new Reader(text, limits);
  reader.ws();
  const obj = reader.object(1, levels);
  reader.end();
  return obj;
}

/** The canonical text of a scalar, as PostgreSQL's row_to_json writes it: strings re-escaped, numbers as written. */
export function canonical(value: JsonScalar | JsonObject | undefined): string {
  if (value === undefined || value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'boolean') return String(value);
  if (value instanceof JsonNumber || value instanceof RawJson) return value.text;
  return value.text;
}
