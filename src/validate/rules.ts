import type { RuleSpec } from '../config/schema.js';
import { TunnelError } from '../errors.js';
import { compileRuleRegex } from './ruleRegex.js';

type Kind = 'number' | 'date' | 'timestamp' | 'text' | 'boolean';
type Scalar = string | number | boolean;

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
    if (typeof value !== 'number' && !(typeof value === 'string' && value.trim() !== '' && !Number.isNaN(Number(value)))) throw new Error(`${where}: ${JSON.stringify(value)} is not a number`);
    return Number(value);
  }
  if (kind === 'date' || kind === 'timestamp') {
    if (typeof value !== 'string' || Number.isNaN(Date.parse(value)) || (kind === 'date' && !/^\d{4}-\d{2}-\d{2}$/.test(value))) {
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
  if (kind === 'number') return (a as number) - (b as number);
  if (kind === 'timestamp') return Date.parse(a as string) - Date.parse(b as string);
  // ISO dates and text compare as strings (code-point order, not the database's collation)
  return a < b ? -1 : a > b ? 1 : 0;
}

function describe(value: unknown): string {
  return value === null || value === undefined ? 'null' : JSON.stringify(value);
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
        const v = row[column];
        if (v === null || v === undefined) return fail(v);
        const found = set.some((s) => compare(kind, v as Scalar, s) === 0);
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
  return { name, check: (row) => (row[column] !== null && row[column] !== undefined && test(compare(kind, row[column] as Scalar, bound)) ? undefined : fail(row[column])) };
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
