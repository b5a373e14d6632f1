import { JsonNumber, RawJson, type JsonObject, type JsonScalar } from './json.js';
import type { ColumnType } from './columnKinds.js';

/**
 * Values between the text row_to_json writes and Avro, both ways, exactly: the text rebuilt on the
 * consumer's side is the text the source wrote (numerics digit for digit, timestamps to the microsecond,
 * -0 and NaN of floats), so json_to_recordset stores the same value and keys compare equal.
 */

/** A value that has no form in the column's Avro type: a dead letter with this reason, never a wrong value. */
export class UnencodableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnencodableError';
  }
}

/** Sentinels for PostgreSQL's infinite dates and timestamps (PostgreSQL stores them the same way). */
export const dateInfinity = 2147483647;
export const dateMinusInfinity = -2147483648;
export const timestampInfinity = 9223372036854775807n;
export const timestampMinusInfinity = -9223372036854775808n;

const dayMicros = 86_400_000_000n;

/** Days since 1970-01-01 of a proleptic Gregorian date (astronomical year: 1 BC is 0), any year. */
export function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

export function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [era * 400 + yoe + (m <= 2 ? 1 : 0), m, d];
}

const dateText = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/;
const timestampText = /^(\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?( BC)?$/;
const timeText = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/;

function days(year: string, month: string, day: string, bc: string | undefined): number {
  const y = Number(year);
  return daysFromCivil(bc ? 1 - y : y, Number(month), Number(day));
}

function dateString(days: number): string {
  const [y, m, d] = civilFromDays(days);
  const year = y <= 0 ? 1 - y : y;
  return `${String(year).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}${y <= 0 ? ' BC' : ''}`;
}

function micros(h: string, m: string, s: string, frac: string | undefined): bigint {
  return BigInt(Number(h) * 3600 + Number(m) * 60 + Number(s)) * 1_000_000n + BigInt((frac ?? '').padEnd(6, '0'));
}

function timeString(us: bigint): string {
  const seconds = us / 1_000_000n;
  const frac = us % 1_000_000n;
  const hh = seconds / 3600n;
  const mm = (seconds / 60n) % 60n;
  const ss = seconds % 60n;
  const pad = (n: bigint) => String(n).padStart(2, '0');
  return `${pad(hh)}:${pad(mm)}:${pad(ss)}${frac === 0n ? '' : `.${String(frac).padStart(6, '0').replace(/0+$/, '')}`}`;
}

/** PostgreSQL's float output (shortest exact digits; exponent below 1e-4 or from 10^15, 10^6 for float4). */
export function floatText(x: number, single: boolean): string {
  if (Number.isNaN(x)) return '"NaN"';
  if (x === Infinity) return '"Infinity"';
  if (x === -Infinity) return '"-Infinity"';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  let p = single ? 1 : 17;
  if (single) while (p < 9 && Math.fround(Number(x.toPrecision(p))) !== x) p++;
  const e = single ? x.toExponential(p - 1) : x.toExponential();
  const [mantissa, exp] = e.split('e') as [string, string];
  const digits = mantissa;
  const exponent = Number(exp);
  if (exponent < -4 || exponent >= (single ? 6 : 15)) return `${digits}e${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
  const sign = digits.startsWith('-') ? '-' : '';
  const plain = digits.replace('-', '').replace('.', '');
  if (exponent < 0) return `${sign}0.${'0'.repeat(-exponent - 1)}${plain}`;
  const int = plain.slice(0, exponent + 1).padEnd(exponent + 1, '0');
  const frac = plain.slice(exponent + 1);
  return `${sign}${int}${frac ? `.${frac}` : ''}`;
}

/** A decimal's unscaled value as big-endian two's complement (Avro's decimal bytes). */
export function decimalBytes(unscaled: bigint): Buffer {
  let hex = (unscaled < 0n ? -unscaled : unscaled).toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  if (unscaled >= 0n) return bytes;
  // two's complement of the magnitude
  const out = Buffer.from(bytes.map((b) => ~b & 0xff));
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = (out[i]! + 1) & 0xff;
    if (out[i] !== 0) break;
  }
  return out;
}

export function decimalFromBytes(bytes: Buffer): bigint {
  if (bytes.length === 0) return 0n;
  const n = BigInt(`0x${bytes.toString('hex')}`);
  return bytes[0]! & 0x80 ? n - (1n << BigInt(bytes.length * 8)) : n;
}

export function decimalString(unscaled: bigint, scale: number): string {
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return negative ? `-${text}` : text;
}

const decimalPattern = /^(-?)(\d+)(?:\.(\d+))?$/;
const numericPattern = /^-?\d+(?:\.\d+)?$/;

type Scalar = JsonScalar | JsonObject | undefined;

function fail(column: ColumnType, value: unknown, why: string): never {
  const shown = value instanceof JsonNumber || value instanceof RawJson ? value.text : JSON.stringify(value);
  throw new UnencodableError(`column ${column.name} (${column.pgType}): ${String(shown).slice(0, 80)} ${why}`);
}

/** One value (an element when inside an array) as row_to_json wrote it → its Avro value. */
function toAvroScalar(c: ColumnType, v: unknown): unknown {
  if (v === null) return null;
  switch (c.kind) {
    case 'int':
      if (v instanceof JsonNumber && /^-?\d+$/.test(v.text)) return Number(v.text);
      break;
    case 'long':
      if (v instanceof JsonNumber && /^-?\d+$/.test(v.text)) return BigInt(v.text);
      break;
    case 'float':
    case 'double':
      if (v instanceof JsonNumber) return c.kind === 'float' ? Math.fround(Number(v.text)) : Number(v.text);
      if (v === 'NaN') return NaN;
      if (v === 'Infinity') return Infinity;
      if (v === '-Infinity') return -Infinity;
      break;
    case 'decimal': {
      const m = v instanceof JsonNumber ? decimalPattern.exec(v.text) : null;
      if (!m) fail(c, v, `has no Avro decimal(${c.precision},${c.scale}) form (NaN and infinities do not): use format json for this table`);
      const frac = m[3] ?? '';
      if (frac.length > c.scale!) fail(c, v, `has more than ${c.scale} fraction digits`);
      const unscaled = BigInt(m[2]! + frac.padEnd(c.scale!, '0'));
      return decimalBytes(m[1] ? -unscaled : unscaled);
    }
    case 'numeric':
      if (v instanceof JsonNumber) return v.text;
      if (v === 'NaN' || v === 'Infinity' || v === '-Infinity') return v;
      break;
    case 'boolean':
      if (typeof v === 'boolean') return v;
      break;
    case 'date': {
      if (v === 'infinity') return dateInfinity;
      if (v === '-infinity') return dateMinusInfinity;
      const m = typeof v === 'string' ? dateText.exec(v) : null;
      if (!m) break;
      const d = days(m[1]!, m[2]!, m[3]!, m[4]);
      if (d <= dateMinusInfinity || d >= dateInfinity) fail(c, v, 'is beyond the days an Avro int holds');
      return d;
    }
    case 'timestamp': {
      if (v === 'infinity') return timestampInfinity;
      if (v === '-infinity') return timestampMinusInfinity;
      const m = typeof v === 'string' ? timestampText.exec(v) : null;
      if (!m) break;
      const us = BigInt(days(m[1]!, m[2]!, m[3]!, m[8])) * dayMicros + micros(m[4]!, m[5]!, m[6]!, m[7]);
      // PostgreSQL counts from 2000: its last ~30 years (after 294247-01-10) do not fit microseconds since 1970
      if (us <= timestampMinusInfinity || us >= timestampInfinity) fail(c, v, 'is beyond the microseconds since 1970 an Avro long holds');
      return us;
    }
    case 'time': {
      const m = typeof v === 'string' ? timeText.exec(v) : null;
      if (!m) break;
      return micros(m[1]!, m[2]!, m[3]!, m[4]);
    }
    case 'bytes':
      if (typeof v === 'string' && /^\\x(?:[0-9a-f]{2})*$/.test(v)) return Buffer.from(v.slice(2), 'hex');
      break;
    case 'raw':
      if (v instanceof RawJson) return v.text;
      break;
    default:
      if (typeof v === 'string') return v;
  }
  fail(c, v, 'is not in the form row_to_json writes for this type');
}

/** Reads a JSON array exactly: numbers keep their text (JsonNumber), nested arrays recurse. */
function parseArray(text: string): unknown[] {
  const revive = (_k: string, v: unknown, context?: { source?: string }) => (typeof v === 'number' ? new JsonNumber(context!.source!) : v);
  return JSON.parse(text, revive as (k: string, v: unknown) => unknown) as unknown[];
}

function arrayToAvro(c: ColumnType, v: unknown, dims: number): unknown {
  if (v === null) return null;
  if (dims === 0) return toAvroScalar(c, v);
  if (!Array.isArray(v)) fail(c, v, `is not a ${c.dims}-dimensional array as its column declares (use format json for this table)`);
  return v.map((e) => arrayToAvro(c, e, dims - 1));
}

/** A column's value from a row read by readObject → the Avro value of its field. */
export function toAvro(c: ColumnType, v: Scalar): unknown {
  if (v === undefined || v === null) {
    if (!c.nullable) fail(c, v, 'is null in a column the schema says is not');
    return null;
  }
  if (c.dims === 0) return toAvroScalar(c, v);
  if (!(v instanceof RawJson)) fail(c, v, 'is not an array');
  return arrayToAvro(c, parseArray(v.text), c.dims);
}

/** An Avro value (as avsc decodes it) → the JSON text row_to_json writes for it. */
function fromAvroScalar(c: ColumnType, v: unknown): string {
  if (v === null || v === undefined) return 'null';
  switch (c.kind) {
    case 'int':
    case 'long':
      return String(v);
    case 'float':
    case 'double':
      return floatText(v as number, c.kind === 'float');
    case 'decimal':
      return decimalString(decimalFromBytes(v as Buffer), c.scale!);
    case 'numeric': {
      const s = v as string;
      if (s === 'NaN' || s === 'Infinity' || s === '-Infinity') return JSON.stringify(s);
      if (!numericPattern.test(s)) throw new UnencodableError(`column ${c.name}: ${JSON.stringify(s.slice(0, 80))} is not a numeric`);
      return s;
    }
    case 'boolean':
      return v ? 'true' : 'false';
    case 'date': {
      const d = v as number;
      return JSON.stringify(d === dateInfinity ? 'infinity' : d === dateMinusInfinity ? '-infinity' : dateString(d));
    }
    case 'timestamp': {
      const us = v as bigint;
      if (us === timestampInfinity || us === timestampMinusInfinity) return us > 0n ? '"infinity"' : '"-infinity"';
      let day = us / dayMicros;
      let rest = us % dayMicros;
      if (rest < 0n) {
        rest += dayMicros;
        day -= 1n;
      }
      const [date, bc] = dateString(Number(day)).split(' ');
      return JSON.stringify(`${date}T${timeString(rest)}${bc ? ` ${bc}` : ''}`);
    }
    case 'time':
      return JSON.stringify(timeString(v as bigint));
    case 'bytes':
      return JSON.stringify(`\\x${(v as Buffer).toString('hex')}`);
    case 'raw':
      try {
        JSON.parse(v as string);
      } catch {
        throw new UnencodableError(`column ${c.name}: ${JSON.stringify((v as string).slice(0, 80))} is not one JSON value`);
      }
      return v as string;
    default:
      return JSON.stringify(v);
  }
}

function arrayFromAvro(c: ColumnType, v: unknown, dims: number): string {
  if (v === null || v === undefined) return 'null';
  if (dims === 0) return fromAvroScalar(c, v);
  return `[${(v as unknown[]).map((e) => arrayFromAvro(c, e, dims - 1)).join(',')}]`;
}

/** A field's Avro value → the JSON text of the column's value as row_to_json writes it. */
export function fromAvro(c: ColumnType, v: unknown): string {
  return arrayFromAvro(c, v, c.dims);
}
