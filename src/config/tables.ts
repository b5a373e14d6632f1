import type pg from 'pg';
import { TunnelError } from '../errors.js';
import { withClient } from '../pg.js';
import { defaultChangeTable, dlqTopicOf, tableId, tableTopic, topicPrefixOf } from '../names.js';
import type { TableConfig, TunnelConfig } from './load.js';

/** A glob (`*`, `?`) as a LIKE pattern, with LIKE's own wildcards escaped. */
export function likePattern(glob: string): string {
  return glob.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%').replace(/\?/g, '_');
}

/**
 * The tables a pattern names in the source: ordinary and partitioned tables, never pgtunnel's own schema
 * or a change table pgtunnel created, in name order. Explicitly listed tables keep their own options.
 */
export async function expandTables(source: pg.Client, tables: TableConfig[]): Promise<TableConfig[]> {
  const out: TableConfig[] = [];
  const { rows: registry } = await source.query<{ present: boolean }>("SELECT to_regclass('pgtunnel.captures') IS NOT NULL AS present");
  const ownChangeTables = registry[0]?.present ? 'AND c.oid NOT IN (SELECT change_table FROM pgtunnel.captures)' : '';
  const seen = new Set(tables.filter((t) => !t.pattern).map((t) => tableId(t)));
  for (const t of tables) {
    if (!t.pattern) {
      out.push(t);
      continue;
    }
    const { rows } = await source.query<{ schema: string; name: string }>(
      `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname LIKE $1 AND c.relname LIKE $2
         AND n.nspname NOT IN ('pgtunnel', 'pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
         ${ownChangeTables}
       ORDER BY 1, 2`,
      [likePattern(t.schema), likePattern(t.name)],
    );
    const matched = rows.filter((r) => !seen.has(tableId(r)));
    if (rows.length === 0) {
      throw new TunnelError('PGT_TABLE_MISSING', `the pattern ${tableId(t)} matches no table in the source database`, { errorClass: 'config', hint: 'create the tables, or fix tables in pgtunnel.yaml' });
    }
    for (const r of matched) {
      seen.add(tableId(r));
      const topic = tableTopic(topicPrefixOf(t.topic, t), r);
      out.push({ ...t, schema: r.schema, name: r.name, changeTable: defaultChangeTable(r.name), topic, dlqTopic: dlqTopicOf(topic), pattern: false });
    }
  }
  return out;
}

/** The configuration with every table pattern replaced by the tables it matches (no query when none is a pattern). */
export async function withTables(config: TunnelConfig): Promise<TunnelConfig> {
  if (!config.tables.some((t) => t.pattern)) return config;
  const tables = await withClient(config.sourceUrl, 'source', (source) => expandTables(source, config.tables));
  return { ...config, tables };
}
