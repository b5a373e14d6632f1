import type { RuleSpec } from '../config/schema.js';
import { TunnelError } from '../errors.js';
import { compileRuleRegex } from '../config/ruleRegex.js';

import { JsonNumber } from '../contracts/json.js';

type Kind = 'number' | 'date' | 'timestamp' | 'text' | 'boolean';
/** Numbers are compared as exact decimal text (an int8 or numeric never goes through a float). */
type Scalar = string | boolean | Decimal;

/** An exact decimal: sign, digits without leading zeros, and the power of ten of the last digit. */
interface Decimal {
  special?: 'NaN' | 'Infinity' | '-Infinity';
  sign: 1 | -1;
  digits: string;
  exp: number;
}

function decimal(text: string): Decimal | undefined {
  if (text === 'NaN' || text === 'Infinity' || text === '-Infinity') return { special: text, sign: text.startsWith('-') ? -1 : 1, digits: '', exp: 0 };
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text.trim());
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) return undefined;
  const frac = m[3] ?? '';
  let digits = (m[2]! + frac).replace(/^0+/, '');
  let exp = Number(m[4] ?? 0) - frac.length;
  const trailing = /0*$/.exec(digits)![0].length;
  if (digits === '') return { sign: 1, digits: '', exp: 0 };
  digits = digits.slice(0, digits.length - trailing);
  exp += trailing;
  return { sign: m[1] === '-' ? -1 : 1, digits, exp };
}

function compareDecimal(a: Decimal, b: Decimal): number {
  // PostgreSQL orders NaN above every number, and ±Infinity beyond every finite one
  const rank = (d: Decimal) => (d.special === 'NaN' ? 2 : d.special === 'Infinity' ? 1 : d.special === '-Infinity' ? -1 : 0);
  if (rank(a) !== 0 || rank(b) !== 0) return rank(a) === rank(b) ? 0 : rank(a) - rank(b);
  const sa = a.digits === '' ? 0 : a.sign;
  const sb = b.digits === '' ? 0 : b.sign;
  if (sa !== sb) return sa - sb;
  if (sa === 0) return 0;
  // same sign: compare magnitudes by their most significant digit's position, then digit by digit
  const ma = a.digits.length + a.exp;
  const mb = b.digits.length + b.exp;
  let c = ma - mb;
  if (c === 0) {
    const len = Math.max(a.digits.length, b.digits.length);
    const da = a.digits.padEnd(len, '0');
    const db = b.digits.padEnd(len, '0');
    c = da < db ? -1 : da > db ? 1 : 0;
  }
  return sa * Math.sign(c);
}

/** Timestamps as [epoch ms, microseconds within the ms]: µs precision, ±infinity at the ends. */
function instant(text: string): [number, number] {
  if (text === 'infinity') return [Infinity, 0];
  if (text === '-infinity') return [-Infinity, 0];
  const micro = /\.\d{3}(\d{1,3})/.exec(text)?.[1]?.padEnd(3, '0') ?? '000';
  return [Date.parse(text), Number(micro)];
}

/** How a column's values look in an envelope (to_jsonb): numbers, ISO dates/timestamps, strings, booleans. */
function kindOf(sqlType: string): Kind | undefined {
  if (/^(smallint|integer|bigint|numeric|real|double precision)/.test(sqlType)) return 'number';
  if (sqlType === 'date') return 'date';
  if (sqlType.startsWith('timestamp')) return 'timestamp';
  if (/^(text|character varying|character|varchar|char|citext|uuid)/.test(sqlType)) return 'text';
  if (sqlType === 'boolean') return 'boolean';
  return undefined;
}

export interface RuleFailure {
  rule: string;
  message: string;
}

/** A rule compiled once against the table's column types; evaluating it is a pure function of the row. */
export interface CompiledRule {
  name: string;
  check(row: Record<string, unknown>): RuleFailure | undefined;
}

function parseValue(kind: Kind, value: unknown, where: string): Scalar {
  if (kind === 'number') {
    const d = typeof value === 'number' || typeof value === 'string' || value instanceof JsonNumber ? decimal(String(value)) : undefined;
    if (!d) throw new Error(`${where}: ${JSON.stringify(value)} is not a number`);
    return d;
  }
  if (kind === 'date' || kind === 'timestamp') {
    const infinite = value === 'infinity' || value === '-infinity';
    if (typeof value !== 'string' || (!infinite && (Number.isNaN(Date.parse(value)) || (kind === 'date' && !/^\d{4}-\d{2}-\d{2}$/.test(value))))) {
      throw new Error(`${where}: ${JSON.stringify(value)} is not a ${kind === 'date' ? 'date like 2007-12-31' : 'timestamp like 2007-12-31T00:00:00'}`);
    }
    return value;
  }
  if (kind === 'boolean') {
    if (typeof value !== 'boolean') throw new Error(`${where}: ${JSON.stringify(value)} is not true or false`);
    return value;
  }
  if (typeof value !== 'string') throw new Error(`${where}: ${JSON.stringify(value)} is not a string`);
  return value;
}

function compare(kind: Kind, a: Scalar, b: Scalar): number {
  if (kind === 'number') return compareDecimal(a as Decimal, b as Decimal);
  if (kind === 'timestamp' || (kind === 'date' && (/infinity/.test(a as string) || /infinity/.test(b as string)))) {
    const [am, au] = instant(a as string);
    const [bm, bu] = instant(b as string);
    return am === bm ? au - bu : am < bm ? -1 : 1;
  }
  // ISO dates and text compare as strings (code-point order, not the database's collation)
  return a < b ? -1 : a > b ? 1 : 0;
}

function describe(value: unknown): string {
  if (value instanceof JsonNumber) return value.text;
  return value === null || value === undefined ? 'null' : typeof value === 'object' ? String(value) : JSON.stringify(value);
}

/** A row's value as the rule's kind; null, or a value not of that kind (a poisoned row), fails the rule. */
function actual(kind: Kind, value: unknown): Scalar | undefined {
  if (value === null || value === undefined) return undefined;
  try {
    return parseValue(kind, value, '');
  } catch {
    return undefined;
  }
}

function compileOne(rule: RuleSpec, types: Record<string, string>, table: string): CompiledRule {
  const where = `rule ${rule.name} on ${table}.${rule.column}`;
  const sqlType = types[rule.column];
  if (sqlType === undefined) throw new Error(`${where}: the table has no column ${rule.column} (it has ${Object.keys(types).join(', ')})`);
  const kind = kindOf(sqlType);
  if (kind === undefined) throw new Error(`${where}: rules cannot check columns of type ${sqlType}`);
  const { op, name, column } = rule;
  const fail = (actual: unknown): RuleFailure => ({
    rule: name,
    message: `${column} ${op}${op.startsWith('is') ? '' : ` ${JSON.stringify(rule.value)}`} failed: ${column} is ${describe(actual)}`,
  });
  if (op === 'is null' || op === 'is not null') {
    if (rule.value !== undefined) throw new Error(`${where}: ${op} takes no value`);
    return { name, check: (row) => ((row[column] === null || row[column] === undefined) === (op === 'is null') ? undefined : fail(row[column])) };
  }
  if (rule.value === undefined) throw new Error(`${where}: ${op} needs a value`);
  if (op === 'in' || op === 'not in') {
    if (!Array.isArray(rule.value)) throw new Error(`${where}: ${op} needs a list value, e.g. [London, Paris]`);
    const set = rule.value.map((v, i) => parseValue(kind, v, `${where} value ${i + 1}`));
    return {
      name,
      check: (row) => {
        const v = actual(kind, row[column]);
        if (v === undefined) return fail(row[column]);
        const found = set.some((s) => compare(kind, v, s) === 0);
        return found === (op === 'in') ? undefined : fail(v);
      },
    };
  }
  if (op === 'matches') {
    if (kind !== 'text') throw new Error(`${where}: matches works on text columns, not ${sqlType}`);
    if (typeof rule.value !== 'string') throw new Error(`${where}: matches needs a regular expression string`);
    let re: { test(text: string): boolean };
    try {
      re = compileRuleRegex(rule.value);
    } catch (err) {
      throw new Error(`${where}: ${(err as Error).message}`);
    }
    return { name, check: (row) => (typeof row[column] === 'string' && re.test(row[column] as string) ? undefined : fail(row[column])) };
  }
  if (Array.isArray(rule.value)) throw new Error(`${where}: ${op} needs a single value`);
  const bound = parseValue(kind, rule.value, where);
  const accept: Record<string, (c: number) => boolean> = {
    '<': (c) => c < 0,
    '<=': (c) => c <= 0,
    '>': (c) => c > 0,
    '>=': (c) => c >= 0,
    '=': (c) => c === 0,
    '!=': (c) => c !== 0,
  };
  const test = accept[op]!;
  // SQL semantics: a comparison with null is not satisfied.
  return {
    name,
    check: (row) => {
      const v = actual(kind, row[column]);
      return v !== undefined && test(compare(kind, v, bound)) ? undefined : fail(row[column]);
    },
  };
}

/** Compiles a table's rules against its column types; every bad rule is reported at once, as a config error. */
export function compileRules(rules: RuleSpec[], types: Record<string, string>, table: string): CompiledRule[] {
  const errors: string[] = [];
  const compiled: CompiledRule[] = [];
  const names = new Set<string>();
  for (const rule of rules) {
    if (names.has(rule.name)) errors.push(`rule ${rule.name} on ${table}: the name is used twice`);
    names.add(rule.name);
    try {
      compiled.push(compileOne(rule, types, table));
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  if (errors.length > 0) {
    throw new TunnelError('PGT_RULES', `invalid rules:\n  - ${errors.join('\n  - ')}`, { errorClass: 'config', hint: 'fix the rules in pgtunnel.yaml (see examples/employees-rules.yaml)' });
  }
  return compiled;
}

/** The first rule a row breaks, if any. */
export function firstFailure(rules: CompiledRule[], row: Record<string, unknown>): RuleFailure | undefined {
  for (const rule of rules) {
    const failure = rule.check(row);
    if (failure) return failure;
  }
  return undefined;
}
