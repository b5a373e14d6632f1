import type pg from 'pg';

/**
 * Pure: the topics in foreign-key order, parents first (Kahn's order; a cycle keeps the configured order
 * for its tables: declare such keys DEFERRABLE). `references`: table id → the table ids it references.
 */
export function parentsFirst(topics: { topic: string; table: string }[], references: Map<string, Set<string>>): string[] {
  const out: string[] = [];
  const done = new Set<string>();
  const tables = new Set(topics.map((t) => t.table));
  let left = [...topics];
  while (left.length > 0) {
    const free = left.filter((t) => [...(references.get(t.table) ?? [])].every((p) => p === t.table || done.has(p) || !tables.has(p)));
    const next = free.length > 0 ? free : [left[0]!];
    for (const t of next) {
      out.push(t.topic);
      done.add(t.table);
    }
    left = left.filter((t) => !next.includes(t));
  }
  return out;
}

/** Which of the target's tables reference which (foreign keys), as table ids. */
export async function foreignKeys(client: pg.Client): Promise<Map<string, Set<string>>> {
  const { rows } = await client.query<{ child: string; parent: string }>(
    `SELECT cn.nspname || '.' || cr.relname AS child, pn.nspname || '.' || pr.relname AS parent
     FROM pg_constraint c
     JOIN pg_class cr ON cr.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cr.relnamespace
     JOIN pg_class pr ON pr.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pr.relnamespace
     WHERE c.contype = 'f'`,
  );
  const out = new Map<string, Set<string>>();
  for (const r of rows) out.set(r.child, (out.get(r.child) ?? new Set()).add(r.parent));
  return out;
}
