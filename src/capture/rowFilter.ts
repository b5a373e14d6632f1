import type { FilterCondition } from '../config/schema.js';
import { quoteIdent } from '../pg.js';

/** A row filter as SQL over one alias: the predicate's text and its values, bound as `$n` from `firstParam`. */
export interface FilterSql {
  sql: string;
  values: unknown[];
}

const comparisons: Record<string, string> = { '<': '<', '<=': '<=', '>': '>', '>=': '>=', '=': '=', '!=': '<>' };

/**
 * Pure: the conditions (all must hold) as a predicate over `alias`, identifiers quoted and values as
 * parameters; the column's type decides how PostgreSQL reads each value. NULL counts as "does not hold"
 * (COALESCE), so a row whose column is null is filtered out by `salary > 10`, as the rules read it.
 */
export function filterSql(conditions: FilterCondition[], alias: string, firstParam: number): FilterSql {
  const values: unknown[] = [];
  const param = (v: unknown) => {
    values.push(v);
    return `$${firstParam + values.length - 1}`;
  };
  const parts = conditions.map((c) => {
    const column = `${alias}.${quoteIdent(c.column)}`;
    if (c.op === 'is null') return `${column} IS NULL`;
    if (c.op === 'is not null') return `${column} IS NOT NULL`;
    const list = (Array.isArray(c.value) ? c.value : [c.value]).map(String);
    if (c.op === 'in') return `${column}::text = ANY (${param(list)}::text[])`;
    if (c.op === 'not in') return `NOT (${column}::text = ANY (${param(list)}::text[]))`;
    return `${column} ${comparisons[c.op]} ${param(String(c.value))}`;
  });
  return { sql: `COALESCE((${parts.join(') AND (')}), false)`, values };
}
